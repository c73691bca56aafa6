// One framed connection, shared by the client and server sides: decoding, batched writes,
// write backpressure, keepalive, and teardown. Protocol errors close only this connection.
import type { Socket } from 'node:net';
import type { Logger } from '../common/index.js';
import { FrameDecoder, FrameType, ZERO_COPY_MIN_BYTES, encodeFrame, encodeFrameHead, encodeRequest, encodeRequestHead, type Frame } from './frame.js';
import { RpcUnavailableError } from './errors.js';
import { RCVLOWAT_MIN_BYTES, setRcvLowat } from './socket.js';

export interface ConnectionOptions {
  maxFrameBytes: number;
  /** Above this many bytes queued in the socket, writers wait for 'drain'. */
  writeHighWaterBytes: number;
  /** Send a PING after this long without traffic; 0 disables keepalive. */
  keepaliveIntervalMs: number;
  /** Close when a PING gets no PONG within this long. */
  keepaliveTimeoutMs: number;
  logger: Logger;
  onFrame: (f: Frame) => void;
  /** Called once, with the reason when the close was not clean. */
  onClose: (err: Error | undefined) => void;
  /**
   * The socket reads through `onread` (borrowedReads) into this reused buffer, or straight into
   * a large frame's own buffer (nextReadBuffer); while a frame with at least RCVLOWAT_MIN_BYTES
   * still to come arrives, the kernel is asked (SO_RCVLOWAT) to wake this reader only once
   * min(rest, this buffer's size) bytes are queued. Absent: 'data' events, read as they come.
   */
  readBuffer?: Buffer;
  /** Where a large incoming frame is assembled (FrameDecoder.allocate); absent: fresh buffers. */
  allocateFrame?: (type: number, callId: number, total: number) => Buffer | undefined;
}

const EMPTY = Buffer.alloc(0);
/** A frame's rest below this is read into the reused buffer and copied: a read per small tail would cost more. */
const DIRECT_READ_MIN_BYTES = 64 * 1024;

export class Connection {
  readonly remote: string;
  private readonly decoder: FrameDecoder;
  private corked = false;
  private closed = false;
  private drainWaiters: (() => void)[] = [];
  private lastRecvMs = performance.now();
  private pingOutstanding = false;
  /** The socket's SO_RCVLOWAT as last set (1: the kernel default); undefined: not used. */
  private lowat: number | undefined;
  /** The frame buffer view the socket's next read goes into (nextReadBuffer), if any. */
  private direct: Buffer | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    readonly socket: Socket,
    private readonly opts: ConnectionOptions,
  ) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    socket.setNoDelay(true);
    this.decoder = new FrameDecoder(opts.maxFrameBytes, (f) => this.dispatch(f));
    this.decoder.allocate = opts.allocateFrame;
    if (opts.readBuffer !== undefined && opts.readBuffer.length >= RCVLOWAT_MIN_BYTES) this.lowat = 1;
    socket.on('data', (chunk: Buffer) => this.input(chunk, chunk.length, false));
    socket.on('drain', () => this.flushDrainWaiters());
    socket.on('error', (err) => {
      this.opts.logger.debug({ remote: this.remote, err }, 'rpc: socket error');
      this.destroy(err);
    });
    socket.on('close', () => this.destroy(undefined));
    socket.on('end', () => {
      // Peer half-closed: a partial frame left in the decoder means the stream was truncated.
      const partial = this.decoder.bufferedBytes;
      this.destroy(partial > 0 ? new RpcUnavailableError(`connection closed mid-frame (${partial} bytes pending)`) : undefined);
    });
    if (opts.keepaliveIntervalMs > 0) {
      const every = Math.max(50, Math.min(opts.keepaliveIntervalMs, opts.keepaliveTimeoutMs) / 2);
      this.keepaliveTimer = setInterval(() => this.keepalive(), every);
      this.keepaliveTimer.unref();
    }
  }

  /**
   * Where the socket's next read goes: the rest of the frame being assembled when that is large
   * (no copy), else the reused buffer. Node asks after every read (onread's buffer function).
   */
  nextReadBuffer(): Uint8Array {
    this.direct = this.closed ? undefined : this.decoder.directTarget(DIRECT_READ_MIN_BYTES);
    return this.direct ?? (this.opts.readBuffer as Buffer);
  }

  /**
   * Input of a socket created with `onread` (no 'data' events): `n` bytes in `buf`, the buffer
   * nextReadBuffer answered. Bytes in the reused buffer are valid only during this call (see
   * FrameDecoder.pushBorrowed); bytes read into a frame's own buffer are already in place.
   */
  onBorrowedRead(buf: Uint8Array, n: number): void {
    if (this.direct !== undefined && buf === this.direct) {
      this.direct = undefined;
      this.input(undefined, n);
    } else this.input(Buffer.from(buf.buffer, buf.byteOffset, n), n);
  }

  /** Bytes from the socket: `chunk` to decode, or (undefined) `n` bytes read into the frame under way. */
  private input(chunk: Buffer | undefined, n: number, borrowed = true): void {
    this.lastRecvMs = performance.now();
    try {
      if (chunk === undefined) this.decoder.filledDirect(n);
      else if (borrowed) this.decoder.pushBorrowed(chunk);
      else this.decoder.push(chunk);
    } catch (err) {
      this.opts.logger.warn({ remote: this.remote, err }, 'rpc: bad input from peer, closing connection');
      this.destroy(err as Error);
      return;
    }
    if (this.lowat !== undefined && !this.closed) this.adjustLowat();
  }

  /**
   * Large frame under way: wake when the next buffer-full (or the frame's rest) is queued;
   * otherwise every byte at once. A setsockopt that fails turns this off for the connection.
   */
  private adjustLowat(): void {
    const rest = this.decoder.awaitingBytes;
    const want = rest >= RCVLOWAT_MIN_BYTES ? Math.min(rest, (this.opts.readBuffer as Buffer).length) : 1;
    if (want === this.lowat) return;
    if (setRcvLowat(this.socket, want)) this.lowat = want;
    else if (this.lowat === 1) this.lowat = undefined;
    // Stuck above 1, small frames would wait for bytes that may never come.
    else this.destroy(new RpcUnavailableError(`cannot reset SO_RCVLOWAT on the connection to ${this.remote}`));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** True when the socket has room: callers that can wait should wait for drain otherwise. */
  get writable(): boolean {
    return this.socket.writableLength < this.opts.writeHighWaterBytes;
  }

  /**
   * Stops reading and dispatching: frames already received stay buffered (at most one socket
   * read's worth) and TCP pushes back on the peer.
   */
  pause(): void {
    this.decoder.paused = true;
    this.socket.pause();
  }

  resume(): void {
    if (!this.decoder.paused || this.closed) return;
    this.decoder.paused = false;
    try {
      this.decoder.push(EMPTY);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    if (!this.decoder.paused) this.socket.resume();
  }

  /** Queues bytes (whole frames, or a header then its body). Frames sent before the loop turns go out in one writev. */
  send(buf: Uint8Array, onWritten?: () => void): void {
    if (this.closed) {
      onWritten?.();
      return;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      // Flushed once the event loop turns (setImmediate), not at the next tick: a caller that
      // writes in steps with awaits between them (a stream's header, its chunks, its end) runs
      // those steps as promise jobs, after nextTick callbacks, so with nextTick each step left
      // in a write of its own and woke the peer again.
      setImmediate(this.uncork);
    }
    // The callback runs once the kernel has the bytes, or with an error once it never will
    // (the socket was destroyed); either way the buffer is no longer referenced by the write.
    if (onWritten) this.socket.write(buf, () => onWritten());
    else this.socket.write(buf);
  }

  /**
   * Queues a frame. A large body is not copied: it is written by reference after its header
   * (one writev), so the caller must not change it until the socket has sent it; every body
   * here is a fresh encoding or bytes their owner no longer writes to (see rawCodec).
   */
  sendFrame(type: FrameType, flags: number, callId: number, body?: Uint8Array, onSent?: () => void): void {
    if (!body || body.length < ZERO_COPY_MIN_BYTES) {
      this.send(encodeFrame(type, flags, callId, body));
      onSent?.(); // the body was copied
      return;
    }
    this.send(encodeFrameHead(type, flags, callId, body.length));
    this.send(body, onSent);
  }

  /** Queues a frame whose body is `parts` laid end to end, each sent by reference as in sendFrame. */
  sendFrameParts(type: FrameType, flags: number, callId: number, parts: readonly Uint8Array[], bodyLength: number): void {
    this.send(encodeFrameHead(type, flags, callId, bodyLength));
    for (const b of parts) if (b.length > 0) this.send(b);
  }

  /** Queues a REQUEST frame, its large payload by reference as in sendFrame; `onWritten` as in send. */
  sendRequest(callId: number, flags: number, deadlineMs: number, methodBytes: Buffer, payload?: Uint8Array, onWritten?: () => void): void {
    if (!payload || payload.length < ZERO_COPY_MIN_BYTES) {
      this.send(encodeRequest(callId, flags, deadlineMs, methodBytes, payload), onWritten);
      return;
    }
    this.send(encodeRequestHead(callId, flags, deadlineMs, methodBytes, payload.length));
    this.send(payload, onWritten);
  }

  /** Resolves when the socket has drained below the high-water mark (or closed). */
  waitWritable(): Promise<void> {
    if (this.closed || this.writable) return Promise.resolve();
    return new Promise((resolve) => {
      this.drainWaiters.push(resolve);
    });
  }

  private flushDrainWaiters(): void {
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) w();
  }

  private dispatch(f: Frame): void {
    if (f.type === FrameType.Ping) {
      this.send(encodeFrame(FrameType.Pong, 0, f.callId));
      return;
    }
    if (f.type === FrameType.Pong) {
      this.pingOutstanding = false;
      return;
    }
    this.opts.onFrame(f);
  }

  private keepalive(): void {
    if (this.closed) return;
    const idleMs = performance.now() - this.lastRecvMs;
    if (this.pingOutstanding && idleMs > this.opts.keepaliveTimeoutMs) {
      this.opts.logger.warn({ remote: this.remote, idleMs }, 'rpc: keepalive timed out, closing connection');
      this.destroy(new RpcUnavailableError(`peer ${this.remote} did not answer keepalive within ${this.opts.keepaliveTimeoutMs}ms`));
      return;
    }
    if (!this.pingOutstanding && idleMs > this.opts.keepaliveIntervalMs) {
      this.pingOutstanding = true;
      this.send(encodeFrame(FrameType.Ping, 0, 0));
    }
  }

  /** A frame of call `callId` being assembled in a buffer its caller gave stops using it (FrameDecoder.divert). */
  divertFrame(callId: number): void {
    this.decoder.divert(callId);
  }

  /** Closes the connection; pending work is failed by onClose. Idempotent. */
  destroy(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.socket.destroy();
    this.flushDrainWaiters();
    this.opts.onClose(err);
  }

  /** Ends gracefully after queued frames are written. */
  end(): void {
    if (this.closed) return;
    this.socket.end();
  }
}
