// Keeping freed memory for reuse in processes that move bulk data (datanodes, FUSE mounts).
//
// Why: glibc serves a block above its mmap threshold (128 KiB, raised on the fly up to 32 MiB)
// with fresh mmap'd pages and unmaps it on free, and hands free heap tops back to the kernel.
// A process moving MiB-sized buffers then faults in new pages all the time: a datanode took ~80
// minor faults per MiB written, ~5 once glibc was told to keep what it has. On a VM whose host
// backs guest memory lazily (or takes freed pages back) a fault on new memory costs ~10x one on
// a reused page. The price is resident memory: the process keeps its peak (bounded by the
// data path's own limits) instead of shrinking after a burst.
import { loadNativeAddon } from './native.js';

/** Blocks up to this size come from the heap (reused after free) rather than from mmap. */
export const RETAIN_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024;
/** Free memory at the heap's top is handed back only beyond this much. */
export const RETAIN_TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024;

/**
 * Tells the C allocator to keep and reuse freed memory (process-wide; call once at daemon
 * start). Answers whether it took effect and why not (no addon, not glibc).
 */
export function retainFreedMemory(): { ok: boolean; reason: string } {
  const l = loadNativeAddon<{ retain(mmapThreshold: number, trimThreshold: number): number }>({ from: import.meta.url, source: 'native/malloc.c', platforms: ['linux'] });
  if ('error' in l) return { ok: false, reason: l.error };
  const r = l.addon.retain(RETAIN_MMAP_THRESHOLD_BYTES, RETAIN_TRIM_THRESHOLD_BYTES);
  if (r === 1) return { ok: true, reason: 'glibc mallopt: freed blocks up to 32 MiB are reused, up to 1 GiB kept' };
  return { ok: false, reason: r === 0 ? 'mallopt refused the thresholds' : 'the C library is not glibc (no mallopt thresholds)' };
}
