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
// owns a buffer of at most blockBytes (a copy, so a cached block never pins a larger buffer);
// at most maxFetches block fetches in flight (more are read without the cache).
import { LruMap } from '../common/index.js';

interface Block {
  /** Cached bytes: [lo, lo + buf.length) of the extent address space, inside this block. */
  lo: number;
  buf: Buffer;
}

export interface ExtentCacheStats {
  hits: number;
  misses: number;
  blocks: number;
  bytes: number;
}

const MAX_FETCHES = 256;

export class ExtentCache {
  private readonly blocks: LruMap<string, Block>;
  private readonly fetches = new Map<string, Promise<Buffer>>();
  private bytesHeld = 0;
  private hits = 0;
  private misses = 0;

  constructor(
    readonly maxBytes: number,
    readonly blockBytes = 128 * 1024,
  ) {
    if (!(blockBytes > 0)) throw new RangeError(`ExtentCache: blockBytes must be > 0, got ${blockBytes}`);
    this.blocks = new LruMap(Math.max(1, Math.floor(maxBytes / blockBytes)), (_k, b) => (this.bytesHeld -= b.buf.length));
  }

  get stats(): ExtentCacheStats {
    return { hits: this.hits, misses: this.misses, blocks: this.blocks.size, bytes: this.bytesHeld };
  }

  private key(groupId: number, extentId: number, index: number): string {
    return `${groupId}:${extentId}:${index}`;
  }

  /**
   * Copies extent bytes [abs, abs + len) into dst at dstOff when every one of them is cached;
   * false (and dst untouched past what was copied) when any is not.
   */
  copyOut(groupId: number, extentId: number, abs: number, len: number, dst: Buffer, dstOff: number): boolean {
    if (len <= 0) return true;
    const B = this.blockBytes;
    // Check first, so a miss costs no copy.
    const found: Block[] = [];
    for (let i = Math.floor(abs / B); i * B < abs + len; i++) {
      const b = this.blocks.get(this.key(groupId, extentId, i));
      const from = Math.max(abs, i * B);
      const to = Math.min(abs + len, (i + 1) * B);
      if (!b || b.lo > from || b.lo + b.buf.length < to) {
        this.misses++;
        return false;
      }
      found.push(b);
    }
    for (const b of found) {
      const from = Math.max(abs, b.lo);
      const to = Math.min(abs + len, b.lo + b.buf.length);
      b.buf.copy(dst, dstOff + (from - abs), from - b.lo, to - b.lo);
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
    if (this.bytesHeld + data.length <= this.maxBytes && this.blocks.size + blocksNeeded <= this.blocks.maxEntries) this.put(groupId, extentId, abs, data);
  }

  /** Remembers that extent bytes [abs, abs + data.length) are `data` (acknowledged or read back verified). */
  put(groupId: number, extentId: number, abs: number, data: Uint8Array): void {
    const B = this.blockBytes;
    const end = abs + data.length;
    for (let i = Math.floor(abs / B); i * B < end; i++) {
      const from = Math.max(abs, i * B);
      const to = Math.min(end, (i + 1) * B);
      const k = this.key(groupId, extentId, i);
      const old = this.blocks.peek(k);
      let lo = from;
      let hi = to;
      // Touching or overlapping what the block holds: keep the union (the bytes at an address
      // never change, so either copy of an overlap is right). A gap: the newer range wins.
      if (old && old.lo <= to && old.lo + old.buf.length >= from) {
        lo = Math.min(lo, old.lo);
        hi = Math.max(hi, old.lo + old.buf.length);
      }
      if (old && lo === old.lo && hi === old.lo + old.buf.length) {
        this.blocks.get(k); // already held: refresh its recency
        continue;
      }
      const buf = Buffer.allocUnsafe(hi - lo);
      if (old && lo <= old.lo && old.lo + old.buf.length <= hi) old.buf.copy(buf, old.lo - lo);
      buf.set(data.subarray(from - abs, to - abs), from - lo);
      if (old) this.bytesHeld -= old.buf.length;
      this.bytesHeld += buf.length;
      this.blocks.set(k, { lo, buf });
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
