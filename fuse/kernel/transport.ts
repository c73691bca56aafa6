// The /dev/fuse transport: reads requests from the fd, writes replies to it. A read of /dev/fuse
// blocks until the kernel has a request, so reads run off the event loop. Two readers:
// - 'native' (fuse/native/fusereader.c, built at first use through lib/common/native.ts): its
//   own threads block in read(2) and hand each request to JS, leaving libuv's threadpool (which
//   the volume's file I/O needs) alone;
// - 'threadpool' (pure TypeScript, the fallback): fs.read on libuv's threadpool, at most
//   `readers` outstanding. Each outstanding read holds one of the pool's threads (4 by default)
//   for as long as the kernel has nothing to say, so this stays small (2): the rest of the pool
//   stays free for the volume.
// Each reader owns slot buffers of max_write + a page. A request that fits in `copyBelowBytes`
// is copied out and its slot reused at once; a larger one (a WRITE's data) keeps its slot until
// the session releases it, so memory is bounded by slots x slot size.
// Read errors: ENOENT (the request was interrupted before we read it), EINTR and EAGAIN retry;
// ENODEV means unmounted: the session ends cleanly.
import { read as fsRead, writeSync, closeSync } from 'node:fs';
import { loadNativeAddon } from '../../lib/common/index.js';
import type { Transport } from './session.js';

const ENOENT = 2;
const EINTR = 4;
const EAGAIN = 11;
const ENODEV = 19;

export interface FdTransportOptions {
  /** Bytes per read buffer: at least max_write + 4096 (the kernel refuses smaller reads). */
  bufferBytes: number;
  /** Outstanding reads (threadpool) or reader threads (native). */
  readers?: number;
  /** Slots (buffers) in all; a request larger than copyBelowBytes holds one until released. */
  slots?: number;
  copyBelowBytes?: number;
  reader?: 'native' | 'threadpool' | 'auto';
}

interface NativeReader {
  start(fd: number, slots: Buffer[], threads: number, cb: (slot: number, n: number, errno: number) => void): unknown;
  release(handle: unknown, slot: number): void;
  stop(handle: unknown): void;
}

let nativeLoad: { addon: NativeReader } | { error: string } | undefined;

/** The native reader addon, or why not. */
export function loadNativeReader(): { addon: NativeReader } | { error: string } {
  nativeLoad ??= loadNativeAddon<NativeReader>({ from: import.meta.url, source: '../native/fusereader.c', platforms: ['linux'], cflags: ['-pthread'] });
  return nativeLoad;
}

function errnoOf(err: NodeJS.ErrnoException): number {
  return typeof err.errno === 'number' ? Math.abs(err.errno) : -1;
}

export class FdTransport implements Transport {
  readonly kind: 'native' | 'threadpool';
  private readonly slots: Buffer[];
  private readonly free: number[] = [];
  private readonly copyBelow: number;
  private readonly readers: number;
  private outstanding = 0; // threadpool reads in flight; invariant: <= readers
  private paused = false;
  private ended = false;
  private closed = false;
  private onRequest!: (buf: Buffer, n: number, release: () => void) => void;
  private onEnd!: (err?: Error) => void;
  private native: NativeReader | undefined;
  private handle: unknown;
  /** Slots copied out while paused: given back to the native reader on resume (that is what pauses it). */
  private readonly deferred: number[] = [];
  /** Why the native reader is not used, when it is not. */
  readonly nativeError: string | undefined;

  constructor(
    readonly fd: number,
    o: FdTransportOptions,
  ) {
    const want = o.reader ?? 'auto';
    let nativeError: string | undefined;
    if (want !== 'threadpool') {
      const l = loadNativeReader();
      if ('addon' in l) this.native = l.addon;
      else {
        nativeError = l.error;
        if (want === 'native') throw new Error(`fuse: native /dev/fuse reader unavailable: ${l.error}`);
      }
    }
    this.nativeError = nativeError;
    this.kind = this.native ? 'native' : 'threadpool';
    this.readers = Math.max(1, o.readers ?? 2);
    const n = Math.max(this.readers + 1, o.slots ?? 16);
    this.slots = Array.from({ length: n }, () => Buffer.allocUnsafeSlow(o.bufferBytes));
    for (let i = 0; i < n; i++) this.free.push(i);
    this.copyBelow = o.copyBelowBytes ?? 64 * 1024;
  }

  start(onRequest: (buf: Buffer, n: number, release: () => void) => void, onEnd: (err?: Error) => void): void {
    this.onRequest = onRequest;
    this.onEnd = onEnd;
    if (this.native) {
      this.free.length = 0; // the native side owns the free list from here
      this.handle = this.native.start(this.fd, this.slots, this.readers, (slot, n, errno) => this.nativeDelivered(slot, n, errno));
    } else this.pump();
  }

  private end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd(err);
  }

  // ---- native reader: the C threads read into free slots; JS says when a slot is free again.

  private nativeDelivered(slot: number, n: number, errno: number): void {
    if (this.ended) return;
    if (errno !== 0) {
      if (errno === ENODEV) this.end();
      else this.end(new Error(`fuse: read /dev/fuse: errno ${errno}`));
      return;
    }
    const buf = this.slots[slot] as Buffer;
    if (n <= this.copyBelow) {
      const copy = Buffer.allocUnsafe(n);
      buf.copy(copy, 0, 0, n);
      this.onRequest(copy, n, noop);
      this.nativeRelease(slot);
    } else {
      let once = false;
      this.onRequest(buf, n, () => {
        if (once) return;
        once = true;
        this.nativeRelease(slot);
      });
    }
  }

  private nativeRelease(slot: number): void {
    if (this.closed) return;
    if (this.paused) this.deferred.push(slot);
    else (this.native as NativeReader).release(this.handle, slot);
  }

  // ---- threadpool reader

  private pump(): void {
    while (!this.ended && !this.paused && this.outstanding < this.readers && this.free.length > 0) {
      const slot = this.free.pop() as number;
      this.outstanding++;
      this.readInto(slot);
    }
  }

  private readInto(slot: number): void {
    const buf = this.slots[slot] as Buffer;
    fsRead(this.fd, buf, 0, buf.length, null, (err, n) => {
      this.outstanding--;
      if (this.ended) return;
      if (err) {
        const e = errnoOf(err);
        if (e === ENOENT || e === EINTR || e === EAGAIN) {
          this.free.push(slot);
          return this.pump();
        }
        if (e === ENODEV) return this.end();
        return this.end(err);
      }
      if (n <= this.copyBelow) {
        const copy = Buffer.allocUnsafe(n);
        buf.copy(copy, 0, 0, n);
        this.free.push(slot);
        this.onRequest(copy, n, noop);
      } else {
        let once = false;
        this.onRequest(buf, n, () => {
          if (once) return;
          once = true;
          this.free.push(slot);
          this.pump();
        });
      }
      this.pump();
    });
  }

  write(reply: Buffer): number {
    if (this.closed) return ENODEV;
    try {
      writeSync(this.fd, reply);
      return 0;
    } catch (err) {
      return errnoOf(err as NodeJS.ErrnoException);
    }
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    if (!this.native) return this.pump();
    for (const slot of this.deferred.splice(0)) this.nativeRelease(slot);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ended = true;
    if (this.native) this.native.stop(this.handle);
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

function noop(): void {}
