// Socket read plumbing for connections on plain TCP: reads through Node's `onread` (for
// accepted sockets too) into one reused buffer per connection, or straight into the buffer of
// a large frame under way, and SO_RCVLOWAT while such a frame arrives. All of it only changes
// how bytes reach the frame decoder, never which bytes.
//
// Why: on the data path (block-group appends, forwards and reads of 1 MiB) the owned read path
// costs one fresh 64 KiB buffer per socket read, the Readable machinery per read, a join per
// frame and one wake-up per 64 KiB segment. Reads into the frame's own buffer take the
// allocations and copies away; SO_RCVLOWAT lets the kernel wake the reader once per quarter
// MiB instead of per segment.
import { Socket } from 'node:net';
import { nativeAddonOnce } from '../common/native.js';

/** Size of a plain-TCP connection's reused read buffer (client and server side). */
export const READ_BUFFER_BYTES = 256 * 1024;

/** Below this many bytes still to come in a frame, reads are not delayed (acks, headers, small calls). */
export const RCVLOWAT_MIN_BYTES = 128 * 1024;

type SockoptAddon = { rcvlowat(fd: number, bytes: number): number };
const sockopt = nativeAddonOnce<SockoptAddon>({ from: import.meta.url, source: 'native/sockopt.c', platforms: ['linux'] });

/** Whether setRcvLowat can work here, and why not. */
export function rcvLowatSupport(): { ok: boolean; reason: string } {
  const l = sockopt();
  return 'error' in l ? { ok: false, reason: l.error } : { ok: true, reason: 'native setsockopt' };
}

/** The socket's file descriptor, when Node exposes one (plain TCP on Unix). */
function fdOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Sets SO_RCVLOWAT: readable only once `bytes` are queued (or the peer closed, or the receive
 * window is nearly shut, so a sender is never stalled by it). Answers false when it could not
 * be set (no addon, no fd, closed socket); the caller then simply reads as before.
 */
export function setRcvLowat(socket: Socket, bytes: number): boolean {
  const l = sockopt();
  if ('error' in l) return false;
  const fd = fdOf(socket);
  if (fd === undefined) return false;
  return l.addon.rcvlowat(fd, Math.max(1, Math.min(0x7fffffff, Math.floor(bytes)))) === 0;
}

/** Node's `onread` socket option with a buffer function (asked where each next read goes). */
export interface OnRead {
  buffer: () => Uint8Array;
  callback: (n: number, buf: Uint8Array) => boolean;
}

/** What a connection reading from a socket through `onread` provides (see Connection). */
export interface BorrowedReader {
  /** Where the next read lands: the connection's reused buffer, or the rest of a large frame. */
  nextReadBuffer(): Uint8Array;
  /** `n` bytes were read into `buf` (the buffer nextReadBuffer last answered). */
  onBorrowedRead(buf: Uint8Array, n: number): void;
}

/**
 * Node's `onread` option for a socket whose connection is made after the socket (so reads
 * are routed through `target`, set once it exists). Node asks `buffer()` where each next read
 * goes, which lets a large frame's body be read straight into its own buffer, no copy.
 */
export function borrowedReads(fallback: Buffer): { target: BorrowedReader | undefined; onread: OnRead } {
  const r: { target: BorrowedReader | undefined; onread: OnRead } = {
    target: undefined,
    onread: {
      buffer: () => r.target?.nextReadBuffer() ?? fallback,
      callback: (n, buf) => {
        r.target?.onBorrowedRead(buf, n);
        return true;
      },
    },
  };
  return r;
}

/**
 * Moves an accepted socket's handle into a new Socket that reads through `onread` (see
 * borrowedReads). Node offers `onread` to sockets it connects, not to ones a server accepts,
 * so the handle is taken over: the accepted socket must come from a server with
 * pauseOnConnect (no read started yet). The emptied socket is destroyed at once, so the
 * net.Server stops counting it (the caller bounds connections itself). Answers undefined,
 * leaving the socket as it was, when the handle is not there to take (TLS, or a Node without
 * `_handle`): the caller then uses the socket's own reads.
 */
export function adoptForBorrowedReads(socket: Socket, onread: OnRead): Socket | undefined {
  const s = socket as unknown as { _handle?: unknown; encrypted?: boolean };
  const handle = s._handle;
  if (!handle || s.encrypted || typeof (handle as { readStart?: unknown }).readStart !== 'function') return undefined;
  s._handle = null;
  socket.destroy();
  return new Socket({ handle: handle as never, readable: true, writable: true, pauseOnCreate: true, onread } as never);
}
