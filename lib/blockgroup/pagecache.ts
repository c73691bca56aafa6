// Dropping extent bytes from the page cache once they are durable ("drop behind", as HDFS's
// dfs.datanode.drop.cache.behind.writes). Off by default: a datanode on its own machine keeps
// what it wrote cached for readers. On for the embedded stack (LocalCluster, `containerstack
// up`), where three replicas of every byte share one machine's page cache: keeping all three
// only grows the cache into memory never touched before, and on the test VM a first touch
// costs ~10x a reused page (dd wrote its first GiB at ~5 GB/s, the next ones at ~0.4-0.5).
// posix_fadvise has no Node binding: a small addon (native/fadvise.c) built on first use;
// without it (no compiler, not Linux) nothing is dropped and the reason is kept.
import { nativeAddonOnce } from '../common/native.js';

type FadviseAddon = { fadvise(fd: number, offset: number, length: number, advice: number): number; misalignment(buf: Uint8Array, align: number): number; DONTNEED: number };

const fadvise = nativeAddonOnce<FadviseAddon>({ from: import.meta.url, source: 'native/fadvise.c', platforms: ['linux'] });

/** Whether dropping works here, and why not. */
export function pageCacheDropSupport(): { ok: boolean; reason: string } {
  const l = fadvise();
  return 'error' in l ? { ok: false, reason: l.error } : { ok: true, reason: 'native posix_fadvise' };
}

/**
 * Asks the kernel to drop [offset, offset + length) of `fd` from the page cache. Only clean
 * pages go (call it after fdatasync); whole pages inside the range, so partial ones at either
 * end stay. Answers whether the call was made and succeeded; a failure changes nothing else.
 */
export function dropFromPageCache(fd: number, offset: number, length: number): boolean {
  const l = fadvise();
  if ('error' in l || !(length > 0) || !(offset >= 0)) return false;
  try {
    return l.addon.fadvise(fd, offset, length, l.addon.DONTNEED) === 0;
  } catch {
    return false;
  }
}

/** O_DIRECT's alignment of buffer addresses, file offsets and lengths (a safe bound for 512 B and 4 KiB devices). */
export const IO_ALIGN = 4096;

/** Whether `buf` starts at a multiple of IO_ALIGN in memory (false when that cannot be told). */
export function isAligned(buf: Uint8Array): boolean {
  const l = fadvise();
  return !('error' in l) && l.addon.misalignment(buf, IO_ALIGN) === 0;
}

/**
 * A buffer of `length` bytes starting at a multiple of IO_ALIGN in memory, for O_DIRECT reads
 * (one unit of slack allocated to find it). Without the addon, an ordinary buffer.
 */
export function alignedBuffer(length: number): Buffer {
  const raw = Buffer.allocUnsafeSlow(length + IO_ALIGN);
  const l = fadvise();
  if ('error' in l) return raw.subarray(0, length);
  const mis = l.addon.misalignment(raw, IO_ALIGN);
  const skip = mis === 0 ? 0 : IO_ALIGN - mis;
  return raw.subarray(skip, skip + length);
}
