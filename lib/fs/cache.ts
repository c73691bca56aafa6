// The client's data cache: bytes of extents, by their address in the block group (group,
// extent, offset), in fixed blocks of that address space.
//
// Why by address and not by file offset: an extent is append-only. Bytes at an acknowledged
// address never change (compaction rewrites live blocks at the same offsets; a failed append is
// never acknowledged, so never cached). A cached block therefore cannot go stale: when another
// client overwrites a file, the new bytes land at new addresses and reach this client through
// the inode's extent map, which close-to-open fetches fresh on every open. No invalidation
// protocol is needed, and a file's data survives a close and reopen (the kernel drops its own
// page cache of a FUSE file on open).
//
// What fills it: every acknowledged append (the client has the bytes: the read right after a
// write is served from memory, as a local filesystem serves it from the page cache), reads that
// went to a datanode (sequential ones only while there is room: putIfRoom), and for small reads
// the whole block around them (random reads near each other then cost one datanode read per
// block).
//
// Bounds: at most floor(maxBytes / blockBytes) blocks, least recently used evicted; each block
// owns blockBytes of storage (a copy, so a cached block never pins a larger buffer), reused
// after eviction; at most MAX_FETCHES shared block fetches in flight (more read unshared).
import { LruMap } from '../common/index.js';

interface Block {
  /** Cached bytes: extent addresses [lo, hi), inside this block. */
  lo: number;
  hi: number;
  /** blockBytes of storage; the byte at extent address x is at buf[x - blockStart]. */
  buf: Buffer;
}

export interface ExtentCacheStats {
  hits: number;
  misses: number;
  blocks: number;
  bytes: number;
}

const MAX_FETCHES = 256;
/** Block buffers are carved from arenas of this many blocks. */
const ARENA_BLOCKS = 64;

export class ExtentCache {
  private readonly blocks: LruMap<string, Block>;
  private readonly fetches = new Map<string, Promise<Buffer>>();
  /**
   * Storage of evicted blocks, reused by the next ones: fixed-size buffers from arenas, never
   * freed while the cache lives (at most maxEntries + 1 of them exist). Allocating each block
   * anew cost several times the copy into it (fresh memory faults in page by page: ~1 ms of
   * CPU per MiB on this kind of VM, ~0.15 ms to refill reused memory). Huge pages (an mmap +
   * MADV_HUGEPAGE addon) were tried and filled slower here: 2.1 vs 0.7 ms of CPU per MiB.
   */
  private readonly spare: Buffer[] = [];
  private bytesHeld = 0;
  private hits = 0;
  private misses = 0;

  constructor(
    readonly maxBytes: number,
    readonly blockBytes = 128 * 1024,
  ) {
    if (!(blockBytes > 0)) throw new RangeError(`ExtentCache: blockBytes must be > 0, got ${blockBytes}`);
    this.blocks = new LruMap(Math.max(1, Math.floor(maxBytes / blockBytes)), (_k, b) => {
      this.bytesHeld -= b.hi - b.lo;
      this.spare.push(b.buf);
    });
  }

  get stats(): ExtentCacheStats {
    return { hits: this.hits, misses: this.misses, blocks: this.blocks.size, bytes: this.bytesHeld };
  }

  private key(groupId: number, extentId: number, index: number): string {
    return `${groupId}:${extentId}:${index}`;
  }

  private storage(): Buffer {
    const b = this.spare.pop();
    if (b) return b;
    // An arena no larger than the cache may grow to (a small cache gets a small arena).
    const n = Math.max(1, Math.min(ARENA_BLOCKS, this.blocks.maxEntries + 1 - this.blocks.size));
    const arena = new ArrayBuffer(n * this.blockBytes);
    for (let i = 1; i < n; i++) this.spare.push(Buffer.from(arena, i * this.blockBytes, this.blockBytes));
    return Buffer.from(arena, 0, this.blockBytes);
  }

  /** Whether [abs, abs+len) of the extent is all here (no copy, no LRU or hit/miss change). */
  covers(groupId: number, extentId: number, abs: number, len: number): boolean {
    const B = this.blockBytes;
    for (let i = Math.floor(abs / B); i * B < abs + len; i++) {
      const b = this.blocks.peek(this.key(groupId, extentId, i));
      if (!b || b.lo > Math.max(abs, i * B) || b.hi < Math.min(abs + len, (i + 1) * B)) return false;
    }
    return true;
  }

  /**
   * Copies extent bytes [abs, abs + len) into dst at dstOff when every one of them is cached;
   * false (and dst untouched) when any is not.
   */
  copyOut(groupId: number, extentId: number, abs: number, len: number, dst: Buffer, dstOff: number): boolean {
    if (len <= 0) return true;
    // Check first, so a miss costs no copy.
    if (!this.covers(groupId, extentId, abs, len)) {
      this.misses++;
      return false;
    }
    const B = this.blockBytes;
    for (let i = Math.floor(abs / B); i * B < abs + len; i++) {
      const b = this.blocks.get(this.key(groupId, extentId, i)) as Block; // present: covers() just saw it
      const from = Math.max(abs, i * B);
      const to = Math.min(abs + len, (i + 1) * B);
      b.buf.copy(dst, dstOff + (from - abs), from - i * B, to - i * B);
    }
    this.hits++;
    return true;
  }

  /**
   * put() only while the cache has room: what a sequential read fetched does not evict. A file
   * read through once that is larger than the cache would otherwise evict each block just
   * before it is wanted again (LRU's flooding), losing what was written or read at random.
   */
  putIfRoom(groupId: number, extentId: number, abs: number, data: Uint8Array): void {
    const blocksNeeded = data.length === 0 ? 0 : Math.floor((abs + data.length - 1) / this.blockBytes) - Math.floor(abs / this.blockBytes) + 1;
    if (this.blocks.size + blocksNeeded <= this.blocks.maxEntries) this.put(groupId, extentId, abs, data);
  }

  /** Remembers that extent bytes [abs, abs + data.length) are `data` (acknowledged or read back verified). */
  put(groupId: number, extentId: number, abs: number, data: Uint8Array): void {
    const B = this.blockBytes;
    const end = abs + data.length;
    for (let i = Math.floor(abs / B); i * B < end; i++) {
      const from = Math.max(abs, i * B);
      const to = Math.min(end, (i + 1) * B);
      const k = this.key(groupId, extentId, i);
      let b = this.blocks.get(k); // refreshes its recency
      if (!b) {
        b = { lo: from, hi: from, buf: this.storage() };
        this.blocks.set(k, b);
      } else if (b.lo > to || b.hi < from) {
        // A gap to what the block holds: the newer range wins.
        this.bytesHeld -= b.hi - b.lo;
        b.lo = b.hi = from;
      }
      // Touching or overlapping: the union (the bytes at an address never change, so either
      // copy of an overlap is right).
      b.buf.set(data.subarray(from - abs, to - abs), from - i * B);
      const lo = Math.min(b.lo, from);
      const hi = Math.max(b.hi, to);
      this.bytesHeld += hi - lo - (b.hi - b.lo);
      b.lo = lo;
      b.hi = hi;
    }
  }

  /**
   * Reads extent bytes [lo, hi) once, however many readers ask for them at the same time (small
   * reads fetch the whole block around them), and caches them.
   */
  fetch(groupId: number, extentId: number, lo: number, hi: number, read: () => Promise<Buffer>): Promise<Buffer> {
    const k = `${groupId}:${extentId}:${lo}:${hi}`;
    let p = this.fetches.get(k);
    if (p) return p;
    p = read().then((buf) => {
      this.put(groupId, extentId, lo, buf);
      return buf;
    });
    // Past the bound the read still happens, just not shared.
    if (this.fetches.size >= MAX_FETCHES) return p;
    this.fetches.set(k, p);
    const forget = (): void => void this.fetches.delete(k);
    p.then(forget, forget);
    return p;
  }
}
