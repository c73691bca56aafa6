// Page-cache hints for extent files: start reading a range ahead of a sequential reader
// (posix_fadvise WILLNEED). Node's fs has no fadvise, so it comes
// from native/fileio.c (built at first use by lib/common/native.ts, like the crc32c addon) and run
// on libuv's thread pool. They are hints: without the addon (no compiler, not Linux, or
// useFileHints('off')) every call resolves at once and does nothing, and no result of the data
// path depends on them. Errors are swallowed for the same reason (an EBADF from a handle that
// closed meanwhile changes nothing); callers hold the file open while a hint runs.
import { loadNativeAddon } from '../common/native.js';

type Cb = (errno: number) => void;
interface FileIoAddon {
  supported: boolean;
  willNeed(fd: number, offset: number, length: number, cb: Cb): void;
  dontNeed(fd: number, offset: number, length: number, cb: Cb): void;
  resident(fd: number, offset: number, length: number): number;
}

let addon: FileIoAddon | null | undefined;
let mode: 'auto' | 'off' = 'auto';
let why = 'not loaded yet';

function resolve(): FileIoAddon | null {
  if (addon !== undefined) return addon;
  if (mode === 'off') {
    why = 'file hints turned off by configuration';
    return (addon = null);
  }
  const l = loadNativeAddon<FileIoAddon>({ from: import.meta.url, source: 'native/fileio.c', platforms: ['linux'] });
  if ('error' in l) {
    why = l.error;
    return (addon = null);
  }
  if (!l.addon.supported) {
    why = 'fileio addon built without Linux support';
    return (addon = null);
  }
  why = 'fileio addon';
  return (addon = l.addon);
}

/** 'auto': the addon when it builds; 'off': every hint is a no-op. Process-wide. */
export function useFileHints(kind: 'auto' | 'off'): void {
  mode = kind;
  addon = undefined;
}

/** Whether hints do anything here, and why (loads the addon if not done yet). */
export function fileHintsImplementation(): { kind: 'native' | 'off'; reason: string } {
  const a = resolve();
  return { kind: a ? 'native' : 'off', reason: why };
}

function run(op: 'willNeed' | 'dontNeed', fd: number, offset: number, length: number): Promise<number> {
  const a = resolve();
  if (!a || !(fd >= 0) || !(offset >= 0) || !(length > 0)) return Promise.resolve(0);
  return new Promise((done) => {
    try {
      a[op](fd, offset, length, done);
    } catch {
      done(22); // EINVAL: bad arguments never reach the kernel
    }
  });
}

/** Starts reading [offset, offset+length) of fd into the page cache; resolves once submitted (errno, 0 = ok). */
export function willNeed(fd: number, offset: number, length: number): Promise<number> {
  return run('willNeed', fd, offset, length);
}

/** Drops clean cached pages of the range (tests: a cold file without dropping every cache). */
export function dontNeed(fd: number, offset: number, length: number): Promise<number> {
  return run('dontNeed', fd, offset, length);
}

/** Bytes of the range in the page cache, or undefined without the addon (tests). */
export function residentBytes(fd: number, offset: number, length: number): number | undefined {
  const a = resolve();
  return a ? a.resident(fd, offset, length) : undefined;
}
