// Keeping freed memory for reuse in processes that move bulk data (datanodes, FUSE mounts).
//
// Why: glibc serves a block above its mmap threshold (128 KiB, raised on the fly up to 32 MiB)
// with fresh mmap'd pages and unmaps it on free, and hands free heap tops back to the kernel.
// A process moving MiB-sized buffers then faults in new pages all the time: a datanode took ~80
// minor faults per MiB written, ~5 once glibc was told to keep what it has. On a VM whose host
// backs guest memory lazily (or takes freed pages back) a fault on new memory costs ~10x one on
// a reused page. The price is resident memory: the process keeps its peak (bounded by the
// data path's own limits) instead of shrinking after a burst.
import { nativeAddonOnce } from './native.js';

type MemoryAddon = { retain(mmapThreshold: number, trimThreshold: number): number; misalignment(buf: Uint8Array, align: number): number };

const memoryAddon = nativeAddonOnce<MemoryAddon>({ from: import.meta.url, source: 'native/malloc.c', platforms: ['linux'] });

/** Blocks up to this size come from the heap (reused after free) rather than from mmap. */
export const RETAIN_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024;
/** Free memory at the heap's top is handed back only beyond this much. */
export const RETAIN_TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024;

/**
 * Tells the C allocator to keep and reuse freed memory (process-wide; call once at daemon
 * start). Answers whether it took effect and why not (no addon, not glibc).
 */
export function retainFreedMemory(): { ok: boolean; reason: string } {
  const l = memoryAddon();
  if ('error' in l) return { ok: false, reason: l.error };
  const r = l.addon.retain(RETAIN_MMAP_THRESHOLD_BYTES, RETAIN_TRIM_THRESHOLD_BYTES);
  if (r === 1) return { ok: true, reason: 'glibc mallopt: freed blocks up to 32 MiB are reused, up to 1 GiB kept' };
  return { ok: false, reason: r === 0 ? 'mallopt refused the thresholds' : 'the C library is not glibc (no mallopt thresholds)' };
}

/** O_DIRECT's alignment of buffer addresses, file offsets and lengths (a safe bound for 512 B and 4 KiB devices). */
export const IO_ALIGN = 4096;

/** Whether `buf` starts at a multiple of `align` (a power of two) in memory; false when that cannot be told. */
export function isAligned(buf: Uint8Array, align = IO_ALIGN): boolean {
  const l = memoryAddon();
  return !('error' in l) && l.addon.misalignment(buf, align) === 0;
}

/**
 * A buffer of `length` bytes whose byte `at` sits at a multiple of IO_ALIGN in memory (one unit
 * of slack allocated to find it): `at` 0 for O_DIRECT reads into it, the offset of a payload
 * inside a received frame for writing that payload with O_DIRECT. Without the addon, an
 * ordinary buffer.
 */
export function alignedBuffer(length: number, at = 0): Buffer {
  const raw = Buffer.allocUnsafeSlow(length + IO_ALIGN);
  const l = memoryAddon();
  if ('error' in l) return raw.subarray(0, length);
  const mis = (l.addon.misalignment(raw, IO_ALIGN) + at) % IO_ALIGN;
  const skip = mis === 0 ? 0 : IO_ALIGN - mis;
  return raw.subarray(skip, skip + length);
}
