// The /dev/fuse transport: reads requests from the fd, writes replies to it. Three readers:
// - 'poll' (the default when fuse/native/fusereader.c builds, through lib/common/native.ts):
//   the fd is non-blocking and watched by the event loop (uv_poll); when it is readable the
//   main thread reads requests with readSync until EAGAIN. One wake-up per batch of requests,
//   on the thread that serves them, as in a C FUSE server.
// - 'threads' (same addon): threads of its own block in read(2) and hand each request to JS
//   (one thread hand-off more per request).
// - 'threadpool' (pure TypeScript, the fallback): fs.read on libuv's threadpool, at most
//   `readers` outstanding. Each outstanding read holds one of the pool's threads (4 by default)
//   for as long as the kernel has nothing to say, so this stays small (2): the rest of the pool
//   stays free for the volume.
// Each reader reads into slot buffers of max_write + a page. A request that fits in
// `copyBelowBytes` is copied out and its slot reused at once; a larger one (a WRITE's data)
// keeps its slot until the session releases it, so memory is bounded by slots x slot size, and
// reading stops while no slot is free.
// Read errors: ENOENT (the request was interrupted before we read it), EINTR and EAGAIN retry;
// ENODEV means unmounted: the session ends cleanly.
import { read as fsRead, readSync, writeSync, closeSync } from 'node:fs';
import { defineError, loadNativeAddon } from '../../lib/common/index.js';
import type { Transport } from './session.js';

const ENOENT = 2;
const EINTR = 4;
const EAGAIN = 11;
const ENODEV = 19;

/** A reader was asked for by name ('poll', 'threads') and the native addon is not there. */
export class FuseReaderUnavailableError extends defineError('fuse', 'FUSE_READER_UNAVAILABLE') {}

export type ReaderKind = 'poll' | 'threads' | 'threadpool';

export interface FdTransportOptions {
  /** Bytes per read buffer: at least max_write + 4096 (the kernel refuses smaller reads). */
  bufferBytes: number;
  /** Outstanding reads (threadpool) or reader threads (threads). */
  readers?: number;
  /** Slots (buffers) in all; a request larger than copyBelowBytes holds one until released. */
  slots?: number;
  copyBelowBytes?: number;
  /** 'auto': poll when the addon builds, else threadpool. */
  reader?: ReaderKind | 'auto';
  /** Requests read per poll wake-up before the event loop gets a turn. */
  pollBatch?: number;
}

interface NativeReader {
  start(fd: number, slots: Buffer[], threads: number, cb: (slot: number, n: number, errno: number) => void): unknown;
  release(handle: unknown, slot: number): void;
  stop(handle: unknown): void;
  pollStart(fd: number, cb: (status: number) => void): unknown;
  pollActive(handle: unknown, on: boolean): void;
  pollStop(handle: unknown): void;
  /** Runs fusermount (`path`) to mount `dir` with `opts`; answers the /dev/fuse fd it passes back. */
  fusermount(path: string, dir: string, opts: string): number;
}

let nativeLoad: { addon: NativeReader } | { error: string } | undefined;

/** The native reader addon, or why not. */
export function loadNativeReader(): { addon: NativeReader } | { error: string } {
  nativeLoad ??= loadNativeAddon<NativeReader>({ from: import.meta.url, source: '../native/fusereader.c', headers: ['uv.h'], platforms: ['linux'], cflags: ['-pthread'] });
  return nativeLoad;
}

function errnoOf(err: unknown): number {
  const e = (err as NodeJS.ErrnoException | null)?.errno;
  return typeof e === 'number' ? Math.abs(e) : -1;
}

export class FdTransport implements Transport {
  readonly kind: ReaderKind;
  private readonly slots: Buffer[];
  private readonly free: number[] = []; // slots JS may read into (poll, threadpool)
  private readonly copyBelow: number;
  private readonly readers: number;
  private readonly pollBatch: number;
  private outstanding = 0; // threadpool reads in flight; invariant: <= readers
  private paused = false;
  private ended = false;
  private closed = false;
  private onRequest!: (buf: Buffer, n: number, release: () => void) => void;
  private onEnd!: (err?: Error) => void;
  private native: NativeReader | undefined;
  private handle: unknown;
  private pollOn = false;
  /** Threads mode: slots copied out while paused, given back on resume (that is what pauses the threads). */
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
        if (want !== 'auto') throw new FuseReaderUnavailableError(`the native /dev/fuse reader is unavailable: ${l.error}`);
      }
    }
    this.nativeError = nativeError;
    this.kind = !this.native ? 'threadpool' : want === 'threads' ? 'threads' : 'poll';
    this.readers = Math.max(1, o.readers ?? 2);
    this.pollBatch = Math.max(1, o.pollBatch ?? 64);
    const n = Math.max(this.readers + 1, o.slots ?? 16);
    this.slots = Array.from({ length: n }, () => Buffer.allocUnsafeSlow(o.bufferBytes));
    for (let i = 0; i < n; i++) this.free.push(i);
    this.copyBelow = o.copyBelowBytes ?? 64 * 1024;
  }

  start(onRequest: (buf: Buffer, n: number, release: () => void) => void, onEnd: (err?: Error) => void): void {
    this.onRequest = onRequest;
    this.onEnd = onEnd;
    const native = this.native;
    if (this.kind === 'threads' && native) {
      this.free.length = 0; // the native side owns the free list from here
      this.handle = native.start(this.fd, this.slots, this.readers, (slot, n, errno) => this.threadDelivered(slot, n, errno));
    } else if (this.kind === 'poll' && native) {
      this.handle = native.pollStart(this.fd, () => this.pollReadable());
      this.pollOn = true;
    } else this.pump();
  }

  private end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.updatePoll();
    this.onEnd(err);
  }

  /** Hands request bytes in `slot` to the session; `giveBack` returns the slot to its reader. */
  private deliver(slot: number, n: number, giveBack: (slot: number) => void): void {
    const buf = this.slots[slot] as Buffer;
    if (n <= this.copyBelow) {
      const copy = Buffer.allocUnsafe(n);
      buf.copy(copy, 0, 0, n);
      giveBack(slot);
      this.onRequest(copy, n, noop);
      return;
    }
    let once = false;
    this.onRequest(buf, n, () => {
      if (once) return;
      once = true;
      giveBack(slot);
    });
  }

  // ---- poll: the main thread reads while the fd is readable.

  private readonly pollGiveBack = (slot: number): void => {
    this.free.push(slot);
    this.updatePoll();
  };

  private pollReadable(): void {
    for (let i = 0; i < this.pollBatch && !this.ended && !this.paused && this.free.length > 0; i++) {
      const slot = this.free.pop() as number;
      const buf = this.slots[slot] as Buffer;
      let n: number;
      try {
        n = readSync(this.fd, buf, 0, buf.length, null);
      } catch (err) {
        this.free.push(slot);
        const e = errnoOf(err);
        if (e === EAGAIN) break;
        if (e === ENOENT || e === EINTR) continue;
        if (e === ENODEV) return this.end();
        return this.end(err as Error);
      }
      this.deliver(slot, n, this.pollGiveBack);
    }
    this.updatePoll();
  }

  /** Watch the fd only while a request could be taken (not paused, a slot free). */
  private updatePoll(): void {
    if (this.kind !== 'poll' || this.closed || this.handle === undefined) return;
    const on = !this.ended && !this.paused && this.free.length > 0;
    if (on !== this.pollOn) {
      this.pollOn = on;
      (this.native as NativeReader).pollActive(this.handle, on);
    }
  }

  // ---- threads: the C threads read into free slots; JS says when a slot is free again.

  private readonly threadGiveBack = (slot: number): void => {
    if (this.closed) return;
    if (this.paused) this.deferred.push(slot);
    else (this.native as NativeReader).release(this.handle, slot);
  };

  private threadDelivered(slot: number, n: number, errno: number): void {
    if (this.ended) return;
    if (errno !== 0) {
      if (errno === ENODEV) this.end();
      else this.end(new Error(`fuse: read /dev/fuse: errno ${errno}`));
      return;
    }
    this.deliver(slot, n, this.threadGiveBack);
  }

  // ---- threadpool reader

  private readonly poolGiveBack = (slot: number): void => {
    this.free.push(slot);
    this.pump();
  };

  private pump(): void {
    while (this.kind === 'threadpool' && !this.ended && !this.paused && this.outstanding < this.readers && this.free.length > 0) {
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
        if (e === ENOENT || e === EINTR || e === EAGAIN) return this.poolGiveBack(slot);
        if (e === ENODEV) return this.end();
        return this.end(err);
      }
      this.deliver(slot, n, this.poolGiveBack);
      this.pump();
    });
  }

  write(reply: Buffer): number {
    if (this.closed) return ENODEV;
    try {
      writeSync(this.fd, reply);
      return 0;
    } catch (err) {
      return errnoOf(err);
    }
  }

  pause(): void {
    this.paused = true;
    this.updatePoll();
  }

  resume(): void {
    this.paused = false;
    if (this.kind === 'threadpool') return this.pump();
    if (this.kind === 'poll') return this.updatePoll();
    for (const slot of this.deferred.splice(0)) this.threadGiveBack(slot);
  }

  close(): void {
    if (this.closed) return;
    this.ended = true;
    if (this.native && this.handle !== undefined) {
      if (this.kind === 'poll') this.native.pollStop(this.handle);
      else this.native.stop(this.handle);
    }
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}

function noop(): void {}
