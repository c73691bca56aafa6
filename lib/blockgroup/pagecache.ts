// Dropping extent bytes from the page cache once they are durable ("drop behind", as HDFS's
// dfs.datanode.drop.cache.behind.writes). Off by default: a datanode on its own machine keeps
// what it wrote cached for readers. On for the embedded stack (LocalCluster, `containerstack
// up`), where three replicas of every byte share one machine's page cache: keeping all three
// only grows the cache into memory never touched before, and on the test VM a first touch
// costs ~10x a reused page (dd wrote its first GiB at ~5 GB/s, the next ones at ~0.4-0.5).
// posix_fadvise has no Node binding: a small addon (native/fadvise.c) built on first use;
// without it (no compiler, not Linux) nothing is dropped and the reason is kept.
import { nativeAddonOnce } from '../common/native.js';

type FadviseAddon = { fadvise(fd: number, offset: number, length: number, advice: number): number; DONTNEED: number };

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
