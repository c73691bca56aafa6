// Dropping extent bytes from the page cache once they are durable ("drop behind", as HDFS's
// dfs.datanode.drop.cache.behind.writes). Off by default: a datanode on its own machine keeps
// what it wrote cached for readers. On for the embedded stack (LocalCluster, `containerstack
// up`), where three replicas of every byte share one machine's page cache: keeping all three
// only grows the cache into memory never touched before, and on the test VM a first touch
// costs ~10x a reused page (dd wrote its first GiB at ~5 GB/s, the next ones at ~0.4-0.5).
// posix_fadvise has no Node binding: a small addon (native/fadvise.c) built on first use;
// without it (no compiler, not Linux) nothing is dropped and the reason is kept.
import { loadNativeAddon } from '../common/native.js';

type FadviseAddon = { fadvise(fd: number, offset: number, length: number, advice: number): number; DONTNEED: number };

/** undefined: not looked up yet; null: unavailable (see reason). */
let addon: FadviseAddon | null | undefined;
let reason = 'not loaded yet';

function load(): FadviseAddon | null {
  if (addon !== undefined) return addon;
  if (process.platform !== 'linux') {
    reason = `posix_fadvise is used on Linux only (this is ${process.platform})`;
    addon = null;
    return null;
  }
  const l = loadNativeAddon<FadviseAddon>({ from: import.meta.url, source: 'native/fadvise.c', platforms: ['linux'] });
  if ('error' in l) {
    reason = l.error;
    addon = null;
  } else {
    reason = 'native posix_fadvise';
    addon = l.addon;
  }
  return addon;
}

/** Whether dropping works here, and why not. */
export function pageCacheDropSupport(): { ok: boolean; reason: string } {
  return { ok: load() !== null, reason };
}

/**
 * Asks the kernel to drop [offset, offset + length) of `fd` from the page cache. Only clean
 * pages go (call it after fdatasync); whole pages inside the range, so partial ones at either
 * end stay. Answers whether the call was made and succeeded; a failure changes nothing else.
 */
export function dropFromPageCache(fd: number, offset: number, length: number): boolean {
  const a = load();
  if (!a || !(length > 0) || !(offset >= 0)) return false;
  try {
    return a.fadvise(fd, offset, length, a.DONTNEED) === 0;
  } catch {
    return false;
  }
}
