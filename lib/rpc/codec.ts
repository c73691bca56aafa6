// A codec turns a message into bytes and back. Generated protobufjs static classes fit
// `protoCodec`; `rawCodec` passes bytes through (block data, snapshots), so bulk data is not
// copied into a protobuf wrapper.
import { INITIAL_STREAM_WINDOW_BYTES } from './frame.js';

export interface Codec<T> {
  encode(message: T): Uint8Array;
  decode(bytes: Uint8Array): T;
  /** Optional: a message as several pieces sent as one frame, each by reference (no join). */
  encodeParts?(message: T): Uint8Array[] | undefined;
  /** Optional: decodes a body that arrived in pieces (Frame.parts) without joining them. */
  decodeParts?(parts: Buffer[]): T;
}

/** The shape of a protobufjs static-module message class. */
export interface ProtoType<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(bytes: Uint8Array): T;
}

export function protoCodec<T>(type: ProtoType<T>): Codec<T> {
  return {
    encode: (m) => type.encode(m).finish(),
    decode: (b) => type.decode(b),
  };
}

/**
 * Bytes as they are. Large raw messages are sent by reference (no copy into the frame), so a
 * sender must not change a buffer it passed until the call (or stream write's call) completes.
 */
export const rawCodec: Codec<Uint8Array> = {
  encode: (m) => m,
  decode: (b) => b,
};

/**
 * Raw bytes as one buffer or as pieces: a frame that arrived over several socket reads is
 * decoded as its pieces (no join), and pieces sent go out as one frame without a join. For
 * bulk data that is written to disk or passed on as it is (block-group appends and forwards).
 */
export const rawPartsCodec: Codec<Uint8Array | Uint8Array[]> = {
  encode: (m) => (Array.isArray(m) ? Buffer.concat(m) : (m as Uint8Array)),
  decode: (b) => b,
  encodeParts: (m) => (Array.isArray(m) ? m : undefined),
  decodeParts: (parts) => parts,
};

const utf8 = new TextDecoder();
export const jsonCodec: Codec<unknown> = {
  encode: (m) => Buffer.from(JSON.stringify(m)),
  decode: (b) => JSON.parse(utf8.decode(b)) as unknown,
};

export type MethodKind = 'unary' | 'serverStream' | 'clientStream';

/** A method's contract, shared by client and server. */
export interface MethodDef<Req, Res> {
  /** Unique on a server, e.g. `table.Put`. At most 255 bytes. */
  readonly name: string;
  readonly kind: MethodKind;
  readonly request: Codec<Req>;
  readonly response: Codec<Res>;
  /**
   * Client streams: the server's receive window for this method, in bytes (default and minimum
   * INITIAL_STREAM_WINDOW_BYTES, at most MAX_STREAM_WINDOW_BYTES). The protocol starts every
   * stream at the initial window; a server granting more sends the difference as credit when the
   * stream opens, so a sender that knows nothing of it still works. A stream of large messages
   * otherwise waits a round trip for credit every initial window.
   */
  readonly streamWindowBytes?: number;
}

/** Largest per-method receive window (it bounds what one stream may leave unconsumed). */
export const MAX_STREAM_WINDOW_BYTES = 64 * 1024 * 1024;

export function unaryMethod<Req, Res>(name: string, request: Codec<Req>, response: Codec<Res>): MethodDef<Req, Res> {
  return { name, kind: 'unary', request, response };
}
export function serverStreamMethod<Req, Res>(name: string, request: Codec<Req>, response: Codec<Res>): MethodDef<Req, Res> {
  return { name, kind: 'serverStream', request, response };
}
export function clientStreamMethod<Req, Res>(name: string, request: Codec<Req>, response: Codec<Res>, opts: { windowBytes?: number } = {}): MethodDef<Req, Res> {
  const w = opts.windowBytes;
  if (w !== undefined && !(Number.isSafeInteger(w) && w >= INITIAL_STREAM_WINDOW_BYTES && w <= MAX_STREAM_WINDOW_BYTES)) {
    throw new RangeError(`rpc: stream window of ${name} must be ${INITIAL_STREAM_WINDOW_BYTES}..${MAX_STREAM_WINDOW_BYTES} bytes`);
  }
  return { name, kind: 'clientStream', request, response, ...(w !== undefined ? { streamWindowBytes: w } : {}) };
}
