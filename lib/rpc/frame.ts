// The frame envelope of lib/rpc. Every frame is
//
//   u32 BE  length of the rest of the frame (header + body), at most maxFrameBytes
//   u8      type (FrameType)
//   u8      flags
//   u32 BE  call id (0 for connection-level frames)
//   ...     body: REQUEST has u32 BE deadline ms (0 = none), u8 method length, method, payload;
//           WINDOW has u32 BE credit bytes; the others carry a protobuf message or raw payload.
//
// The envelope is a fixed layout rather than a protobuf message so the hot path reads it
// with a few integer loads (as gRPC does with its 5-byte prefix); payloads are protobuf.
import { RpcFrameTooLargeError, RpcProtocolError } from './errors.js';
import { alignedBuffer } from '../common/index.js';

export const enum FrameType {
  Hello = 1,
  HelloAck = 2,
  Request = 3,
  Response = 4,
  Error = 5,
  Data = 6,
  End = 7,
  Cancel = 8,
  Window = 9,
  Ping = 10,
  Pong = 11,
  GoAway = 12,
}
const MAX_FRAME_TYPE = 12;

export const enum RequestFlags {
  None = 0,
  /** The client sends the request as DATA frames followed by END. */
  ClientStream = 1,
  /** The server answers with DATA frames followed by END. */
  ServerStream = 2,
  /**
   * A one-way request to a unary method (call id 0): the server runs the handler and sends
   * nothing back, not even an error. A server that predates the flag sees flags that do not
   * match the method and answers an RPC_PROTOCOL error on call id 0 without running it; the
   * client takes that as "this peer cannot take notifications" (see RpcClient.notify).
   */
  Notify = 4,
}

export const LENGTH_BYTES = 4;
export const HEADER_BYTES = 6; // type + flags + call id
export const PROTOCOL_VERSION = 1;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Credit each side of a stream starts with; the receiver returns credit as it consumes. */
export const INITIAL_STREAM_WINDOW_BYTES = 1024 * 1024;
export const MAX_METHOD_BYTES = 255;

export interface Frame {
  type: FrameType;
  flags: number;
  callId: number;
  /** REQUEST only. */
  deadlineMs: number;
  /** REQUEST only. */
  method: string;
  /** WINDOW only. */
  credit: number;
  /** View into the receive buffer: copy it if it must outlive the current tick's processing. */
  body: Buffer;
  /**
   * A large frame that arrived over several socket reads: its body as views of those reads, in
   * order, not joined (`body` joins them on first use). Consumers that can take pieces (see
   * Codec.decodeParts) read these and the frame is never copied.
   */
  parts?: Buffer[];
  /** Body length, without joining parts. */
  bodyLength: number;
}

/** Frames at least this long that span socket reads are handed out as parts. */
export const PARTS_MIN_BYTES = 64 * 1024;
/** Frames assembled from this size up get a page-aligned body (see pushBorrowed). */
const ALIGNED_FRAME_MIN_BYTES = 64 * 1024;
/** Longest frame header (prefix, type, flags, call id, deadline, method): parts need it in one piece. */
const HEAD_MAX_BYTES = LENGTH_BYTES + HEADER_BYTES + 5 + MAX_METHOD_BYTES;

/** Encodes a frame header + body into one buffer; REQUEST frames use encodeRequest. */
export function encodeFrame(type: FrameType, flags: number, callId: number, body?: Uint8Array): Buffer {
  const bodyLen = body ? body.length : 0;
  const buf = Buffer.allocUnsafe(LENGTH_BYTES + HEADER_BYTES + bodyLen);
  buf.writeUInt32BE(HEADER_BYTES + bodyLen, 0);
  buf[4] = type;
  buf[5] = flags;
  buf.writeUInt32BE(callId, 6);
  if (body && bodyLen > 0) buf.set(body, LENGTH_BYTES + HEADER_BYTES);
  return buf;
}

/**
 * Bodies at least this long are not copied into the frame: the header goes out as its own
 * buffer and the body by reference, in the same writev (Connection.sendFrame). Below it, one
 * small copy is cheaper than a second iovec.
 */
export const ZERO_COPY_MIN_BYTES = 16 * 1024;

/** The length prefix and header of a frame whose body is sent separately. */
export function encodeFrameHead(type: FrameType, flags: number, callId: number, bodyLen: number): Buffer {
  const buf = Buffer.allocUnsafe(LENGTH_BYTES + HEADER_BYTES);
  buf.writeUInt32BE(HEADER_BYTES + bodyLen, 0);
  buf[4] = type;
  buf[5] = flags;
  buf.writeUInt32BE(callId, 6);
  return buf;
}

/** Writes a REQUEST frame's prefix, header, deadline and method into `buf`; answers where the payload goes. */
function writeRequestHead(buf: Buffer, callId: number, flags: number, deadlineMs: number, methodBytes: Buffer, payloadLen: number): number {
  const fixed = HEADER_BYTES + 4 + 1 + methodBytes.length;
  buf.writeUInt32BE(fixed + payloadLen, 0);
  buf[4] = FrameType.Request;
  buf[5] = flags;
  buf.writeUInt32BE(callId, 6);
  buf.writeUInt32BE(deadlineMs > 0xffffffff ? 0xffffffff : deadlineMs, 10);
  buf[14] = methodBytes.length;
  methodBytes.copy(buf, 15);
  return LENGTH_BYTES + fixed;
}

/** A REQUEST frame's prefix, header, deadline and method; the payload follows separately. */
export function encodeRequestHead(callId: number, flags: number, deadlineMs: number, methodBytes: Buffer, payloadLen: number): Buffer {
  const buf = Buffer.allocUnsafe(LENGTH_BYTES + HEADER_BYTES + 4 + 1 + methodBytes.length);
  writeRequestHead(buf, callId, flags, deadlineMs, methodBytes, payloadLen);
  return buf;
}

export function encodeRequest(callId: number, flags: number, deadlineMs: number, methodBytes: Buffer, payload?: Uint8Array): Buffer {
  const payloadLen = payload ? payload.length : 0;
  const buf = Buffer.allocUnsafe(LENGTH_BYTES + HEADER_BYTES + 4 + 1 + methodBytes.length + payloadLen);
  const at = writeRequestHead(buf, callId, flags, deadlineMs, methodBytes, payloadLen);
  if (payload && payloadLen > 0) buf.set(payload, at);
  return buf;
}

export function encodeWindow(callId: number, credit: number): Buffer {
  const buf = Buffer.allocUnsafe(LENGTH_BYTES + HEADER_BYTES + 4);
  buf.writeUInt32BE(HEADER_BYTES + 4, 0);
  buf[4] = FrameType.Window;
  buf[5] = 0;
  buf.writeUInt32BE(callId, 6);
  buf.writeUInt32BE(Math.min(credit, 0xffffffff), 10);
  return buf;
}

/**
 * Incremental frame decoder. Feed it socket chunks; it calls onFrame for each whole frame and
 * throws RpcProtocolError / RpcFrameTooLargeError on bad input, after which the connection
 * must be closed (the stream position is lost).
 */
export class FrameDecoder {
  // Bytes of an incomplete frame, kept as the chunks they arrived in and joined once the frame
  // is whole: joining on every chunk would copy a large frame O(chunks) times.
  // invariant: pendingBytes === sum of pending chunk lengths
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Total length (prefix included) of the frame at the head of `pending`, once known. */
  private need = 0;
  private readonly methodCache = new Map<string, string>();

  /** While true, whole frames stay buffered instead of being dispatched (see Connection.pause). */
  paused = false;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly onFrame: (f: Frame) => void,
  ) {}

  /**
   * Where a large frame read from borrowed chunks is assembled, when its reader has a buffer
   * for it (a client call asked for its answer in a buffer it reuses: CallOptions.bodyBuffer).
   * Given the frame's type, call id and total length (prefix included); answers a buffer of
   * exactly that length, or undefined for a fresh one.
   */
  allocate: ((type: number, callId: number, total: number) => Buffer | undefined) | undefined;

  /** A frame that began in an earlier borrowed chunk, assembled in its own buffer. */
  private asm: Buffer | undefined;
  private asmAt = 0;
  /** The call whose given buffer (allocate) `asm` is, if it is one. */
  private asmGivenFor: number | undefined;

  /**
   * If the frame under way is being assembled in a buffer given for call `callId`, moves it (the
   * bytes so far) to a fresh buffer: the giver may reuse its own at once (the call failed).
   */
  divert(callId: number): void {
    if (!this.asm || this.asmGivenFor !== callId) return;
    const fresh = Buffer.allocUnsafe(this.asm.length);
    this.asm.copy(fresh, 0, 0, this.asmAt);
    this.asm = fresh;
    this.asmGivenFor = undefined;
  }

  /**
   * The reader's buffer for the large frame of `total` bytes starting at chunk[off] (allocate),
   * with the call it was given for; undefined when the reader gives none (or its head is not
   * in this chunk yet).
   */
  private given(chunk: Buffer, off: number, end: number, total: number): { buf: Buffer; callId: number } | undefined {
    if (total < ALIGNED_FRAME_MIN_BYTES || !this.allocate || end - off < LENGTH_BYTES + HEADER_BYTES) return undefined;
    const callId = chunk.readUInt32BE(off + LENGTH_BYTES + 2);
    const buf = this.allocate(chunk[off + LENGTH_BYTES] as number, callId, total);
    return buf !== undefined && buf.length === total ? { buf, callId } : undefined;
  }

  /** Bytes held waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.pendingBytes + (this.asm ? this.asmAt : 0);
  }

  /**
   * Where the next bytes of the frame being assembled may be read straight in (the rest of its
   * buffer), when at least minBytes are missing; the reader then calls filledDirect.
   */
  directTarget(minBytes: number): Buffer | undefined {
    if (!this.asm) return undefined;
    return this.asm.length - this.asmAt >= minBytes ? this.asm.subarray(this.asmAt) : undefined;
  }

  /** `n` bytes were read into directTarget()'s buffer: once the frame is whole it is dispatched. */
  filledDirect(n: number): void {
    const asm = this.asm;
    if (!asm || !(n > 0) || this.asmAt + n > asm.length) throw new RpcProtocolError('rpc: bytes read into a frame that is not being assembled');
    this.asmAt += n;
    if (this.asmAt < asm.length) return;
    this.completeAssembly(asm);
  }

  /** The frame being assembled is whole: the decoder forgets it and dispatches it. */
  private completeAssembly(asm: Buffer): void {
    this.asm = undefined;
    this.asmAt = 0;
    this.asmGivenFor = undefined;
    this.push(asm); // exactly one whole frame, now owned
  }

  /** Bytes still to come before the frame under way is whole (0 between frames or while its length is unread). */
  get awaitingBytes(): number {
    if (this.asm) return this.asm.length - this.asmAt;
    return this.need > this.pendingBytes ? this.need - this.pendingBytes : 0;
  }

  /**
   * Feeds bytes the caller overwrites as soon as this returns (a socket reading into one
   * reused buffer). Nothing handed out or kept may point into them, so each frame is copied
   * once: a frame inside the chunk into a buffer of its own size, a frame spanning reads into
   * one buffer allocated when its length is known. The socket's own reads then allocate
   * nothing, where the owned path (push) takes a fresh buffer per read plus a join per frame.
   */
  pushBorrowed(chunk: Buffer): void {
    const end = chunk.length;
    let off = 0;
    if (this.asm) {
      const asm = this.asm;
      const n = Math.min(end, asm.length - this.asmAt);
      chunk.copy(asm, this.asmAt, 0, n);
      this.asmAt += n;
      off = n;
      if (this.asmAt < asm.length) return;
      this.completeAssembly(asm);
    }
    while (off < end) {
      // Bytes already buffered go first (and a paused decoder dispatches nothing): copy the
      // rest and take the owned path.
      if (this.pendingBytes > 0 || this.paused || end - off < LENGTH_BYTES) {
        this.push(Buffer.from(chunk.subarray(off)));
        return;
      }
      const total = LENGTH_BYTES + this.checkLength(chunk.readUInt32BE(off));
      const given = this.given(chunk, off, end, total);
      if (end - off < total) {
        // A large frame's body starts page-aligned in memory, so a datanode can hand a streamed
        // chunk (a DATA body) to an O_DIRECT write as it is, without copying it again.
        this.asm = given ? given.buf : total >= ALIGNED_FRAME_MIN_BYTES ? alignedBuffer(total, LENGTH_BYTES + HEADER_BYTES) : Buffer.allocUnsafe(total);
        this.asmGivenFor = given?.callId;
        chunk.copy(this.asm, 0, off, end);
        this.asmAt = end - off;
        return;
      }
      // Whole in this chunk: copied out, into the reader's buffer for it if it has one.
      let f: Frame;
      if (given) {
        chunk.copy(given.buf, 0, off, off + total);
        f = this.parse(given.buf, LENGTH_BYTES, total);
      } else {
        f = this.parse(chunk, off + LENGTH_BYTES, off + total);
        f.body = Buffer.from(f.body);
      }
      off += total;
      this.onFrame(f);
    }
  }

  push(chunk: Buffer): void {
    if (this.pendingBytes > 0) {
      if (chunk.length > 0) {
        this.pending.push(chunk);
        this.pendingBytes += chunk.length;
      }
      if (this.need === 0 && this.pendingBytes >= LENGTH_BYTES) {
        const head = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
        this.need = LENGTH_BYTES + this.checkLength(head.readUInt32BE(0));
      }
      // Still short of a whole frame (and not resuming after a pause): wait for more.
      if ((this.need === 0 || this.pendingBytes < this.need) && chunk.length > 0) return;
      // Large frames whole in pending go out as parts, unjoined (the reads are ours to keep).
      while (!this.paused && this.need >= PARTS_MIN_BYTES && this.pendingBytes >= this.need && (this.pending[0] as Buffer).length >= Math.min(this.need, HEAD_MAX_BYTES)) {
        this.dispatchParts();
        if (this.pendingBytes === 0) return;
        if (this.pendingBytes >= LENGTH_BYTES) {
          const head = (this.pending[0] as Buffer).length >= LENGTH_BYTES ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
          this.need = LENGTH_BYTES + this.checkLength(head.readUInt32BE(0));
        }
        if (this.need === 0 || this.pendingBytes < this.need) return;
      }
      chunk = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      this.need = 0;
    }
    const buf = chunk;
    let off = 0;
    const end = buf.length;
    while (end - off >= LENGTH_BYTES && !this.paused) {
      const len = this.checkLength(buf.readUInt32BE(off));
      if (end - off - LENGTH_BYTES < len) break;
      const start = off + LENGTH_BYTES;
      const frameEnd = start + len;
      off = frameEnd;
      this.onFrame(this.parse(buf, start, frameEnd));
    }
    if (off < end) {
      // Copy the tail so the (possibly large) chunk it came from is not retained. When paused,
      // the tail may hold whole frames: at most what one socket read delivered.
      const tail = Buffer.from(buf.subarray(off, end));
      this.pending = [tail];
      this.pendingBytes = tail.length;
      this.need = tail.length >= LENGTH_BYTES ? LENGTH_BYTES + this.checkLength(tail.readUInt32BE(0)) : 0;
    }
  }

  /** Takes the whole frame at the head of pending out as parts (views, no copy) and dispatches it. */
  private dispatchParts(): void {
    const need = this.need;
    const pieces: Buffer[] = [];
    let left = need;
    let used = 0;
    while (left > 0) {
      const c = this.pending[used] as Buffer;
      if (c.length <= left) {
        pieces.push(c);
        left -= c.length;
        used++;
      } else {
        pieces.push(c.subarray(0, left));
        this.pending[used] = c.subarray(left);
        left = 0;
      }
    }
    this.pending.splice(0, used);
    this.pendingBytes -= need;
    this.need = 0;
    const first = pieces[0] as Buffer;
    const f = this.parse(first, LENGTH_BYTES, first.length);
    const parts = [f.body, ...pieces.slice(1)].filter((b) => b.length > 0);
    const bodyLength = need - (first.length - f.body.length);
    let joined: Buffer | undefined;
    const frame: Frame = { ...f, parts, bodyLength };
    Object.defineProperty(frame, 'body', { enumerable: true, configurable: true, get: () => (joined ??= Buffer.concat(parts, bodyLength)) });
    this.onFrame(frame);
  }

  private checkLength(len: number): number {
    if (len > this.maxFrameBytes) throw new RpcFrameTooLargeError(`frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes}`);
    if (len < HEADER_BYTES) throw new RpcProtocolError(`frame length ${len} is shorter than the header`);
    return len;
  }

  private parse(buf: Buffer, start: number, end: number): Frame {
    const type = buf[start] as number;
    if (type < 1 || type > MAX_FRAME_TYPE) throw new RpcProtocolError(`unknown frame type ${type}`);
    const flags = buf[start + 1] as number;
    const callId = buf.readUInt32BE(start + 2);
    let p = start + HEADER_BYTES;
    let deadlineMs = 0;
    let method = '';
    let credit = 0;
    if (type === FrameType.Request) {
      if (end - p < 5) throw new RpcProtocolError('truncated request header');
      deadlineMs = buf.readUInt32BE(p);
      const mlen = buf[p + 4] as number;
      p += 5;
      if (mlen === 0 || end - p < mlen) throw new RpcProtocolError('bad method name length');
      method = this.methodName(buf, p, mlen);
      p += mlen;
    } else if (type === FrameType.Window) {
      if (end - p !== 4) throw new RpcProtocolError('bad window frame');
      credit = buf.readUInt32BE(p);
      p += 4;
    }
    return { type, flags, callId, deadlineMs, method, credit, body: buf.subarray(p, end), bodyLength: end - p };
  }

  // Method names repeat on every call; decoding once per distinct name saves a string alloc.
  private methodName(buf: Buffer, p: number, len: number): string {
    const key = buf.toString('latin1', p, p + len);
    let name = this.methodCache.get(key);
    if (name === undefined) {
      name = buf.toString('utf8', p, p + len);
      if (this.methodCache.size < 1024) this.methodCache.set(key, name);
    }
    return name;
  }
}
