// One extent of a block-group replica on local disk: an append-only data file `<id>.dat`, its
// checksum file `<id>.crc` (per block: u32 crc32c, u32 bytes covered; the last block may be
// partial and its entry is rewritten as it fills), and `<id>.dead` (freed ranges, for the
// compactor). Writes land at offsets the caller reserved, complete in any order, and are made
// durable by one fdatasync of both files per batch (group commit). Reads verify every block
// they touch. Compaction rewrites live blocks into a sparse copy at the same offsets and renames
// it over the data file; readers hold a reference to the file handle they started with, so the
// swap never blocks or breaks them.
import { constants as fsConstants, writeSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { alignedBuffer, assert, IO_ALIGN, isAligned } from '../common/index.js';
import { crc32c, crc32cCombine } from './crc32c.js';
import { BufferPool } from './bufferpool.js';
import { dropFromPageCache } from './pagecache.js';
import {
  BlockGroupBadRequestError, BlockGroupChecksumError, BlockGroupIoError, BlockGroupLimitError, BlockGroupOutOfRangeError, fromFsError,
} from './errors.js';

const CRC_ENTRY_BYTES = 8;
const DEAD_RECORD_BYTES = 16;
/** Longest the checksum file trails the data on disk (a crash window, not an ack window). */
export const CRC_SYNC_INTERVAL_MS = 1000;
/** Pieces of one pwritev (the kernel takes at most IOV_MAX, 1024). */
const MAX_WRITE_PIECES = 256;
/**
 * Largest single pwritev: queued writes are joined up to it and larger ones split at it.
 * Larger pwritevs cost more kernel time per byte, not less (page-cache copies into larger runs
 * took ~1.5x the system CPU per MiB in an A/B here, and one 4 MiB pwritev ~7x the time of four
 * 1 MiB ones), so runs stop at the size of a typical append.
 */
const MAX_WRITE_RUN_BYTES = 1024 * 1024;
/** Largest single O_DIRECT pwritev (a whole default-sized append from a mount, 4 MiB, and more). */
const MAX_DIRECT_RUN_BYTES = 8 * 1024 * 1024;

/**
 * Drop behind: synced bytes leave the page cache (see pagecache.ts). One switch per process,
 * as the crc32c implementation is: it changes what stays cached, never what is written.
 */
let dropBehindWrites = false;
export function setDropBehindWrites(on: boolean): void {
  dropBehindWrites = on;
}

/**
 * Large reads (DIRECT_MIN_BYTES and up) bypass the page cache (O_DIRECT) where the filesystem
 * allows it: on by default, process-wide (a daemon setting; tests turn it off to run the
 * page-cache path). Why: a read through the page cache first allocates and fills cache pages,
 * then copies them out; on the test VM a cold 1 MiB buffered read cost ~1.6 ms of system time
 * (fio: 0.24 once the guest's pages were warm), an O_DIRECT one ~0.07 ms, straight into the
 * pooled read buffer. Large readers keep no use for those pages: clients cache what they read,
 * and the datanode's own read-ahead (DataNode.readAhead) overlaps the disk with the wire.
 */
let directReads = true;
export function setDirectReads(on: boolean): void {
  directReads = on;
}
/**
 * Reads shorter than this stay buffered: small random reads (a mount fetching the 128 KiB
 * around a 4 KiB read) are what the page cache is good at, and with O_DIRECT each went to the
 * disk: bench:fuse's 4 KiB random reads fell from ~5000 to ~1600 IOPS.
 */
const DIRECT_MIN_BYTES = 512 * 1024;

/**
 * Writes whose page-aligned part is DIRECT_WRITE_MIN_BYTES or more write that part with O_DIRECT
 * (on by default, process-wide, like directReads). Why: a buffered write first allocates page-
 * cache pages and copies into them, and fdatasync then writes them back; on the test VM fio's
 * 1 MiB writes with an fdatasync each cost ~0.2-0.55 ms of system time per MiB buffered and
 * ~0.15 with O_DIRECT, at a higher rate (1140-1200 MiB/s against 720-1000), and three replicas
 * on one machine pay that three times. Nothing reads back what was just written except a
 * lagging peer or a client, which the disk serves as well. Group commit is unchanged: the
 * fdatasync after the writes still makes them (and the file's new length) durable.
 */
let directWrites = true;
export function setDirectWrites(on: boolean): void {
  directWrites = on;
}
/** Shorter aligned parts stay buffered: small appends are where the page cache batches best. */
const DIRECT_WRITE_MIN_BYTES = 64 * 1024;
/**
 * Bytes written per path, process-wide (metrics; tests check that streamed appends reach the
 * disk without a copy): O_DIRECT as received, O_DIRECT after a copy into scratch, page cache.
 */
const writePaths = { direct: 0, directCopied: 0, buffered: 0 };
export function writePathBytes(): { direct: number; directCopied: number; buffered: number } {
  return { ...writePaths };
}
/** Aligned buffers for the O_DIRECT part of writes whose pieces are not aligned in memory. */
const directScratch = new BufferPool(64 * 1024, 1024 * 1024, 8 * 1024 * 1024);

/** Writes queued on one extent (appends in flight are bounded upstream; this is the backstop). */
const MAX_QUEUED_WRITES = 4096;

interface QueuedWrite {
  offset: number;
  pieces: Buffer[];
  /** Per piece, the checksums of its block pieces (appendCrcs), taken when it was queued. */
  crcs: number[][];
  bytes: number;
  resolve: (end: number) => void;
  reject: (e: unknown) => void;
}
/** Freed ranges one extent remembers (merged); past this, freeing is refused. */
export const MAX_DEAD_RANGES = 65_536;

interface Handle {
  fh: FileHandle;
  refs: number;
  retired: boolean;
  /** The same file opened O_DIRECT, read-write (undefined: not tried yet; null: not possible here). */
  direct?: FileHandle | null;
}

interface Waiter {
  end: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** The covering blocks of a read and their checksums as they were when it began (coverOf). */
export interface ReadCover {
  start: number;
  total: number;
  crcs: Uint32Array;
  lens: Uint32Array;
}

export interface BlocksCopy {
  data: Buffer;
  crcs: number[];
  lengths: number[];
  dead: boolean[];
}

export class ExtentFile {
  private cur: Handle;
  private readonly crcFh: FileHandle;
  private deadFh: FileHandle | undefined;
  private crcs: Uint32Array;
  private lens: Uint32Array;
  /** Freed [start, end) ranges, sorted and merged. */
  private dead: [number, number][] = [];
  // invariant: syncedEnd <= writtenEnd <= reservedEnd
  /** Next append offset handed out by reserve(). */
  reservedEnd: number;
  /** Every byte below it has been written (not necessarily synced); block crcs cover exactly it. */
  writtenEnd: number;
  /** Every byte below it is durable, with its checksums. */
  syncedEnd: number;
  private readonly doneOutOfOrder = new Map<number, { data: Buffer; crcs: number[] }>();
  private crcDirtyFrom = 0;
  private waiters: Waiter[] = [];
  private syncing = false;
  private failed: Error | undefined;
  private writeQueue: QueuedWrite[] = [];
  private writing = false;
  private lock: Promise<unknown> = Promise.resolve();
  private closed = false;
  private crcSyncedAtMs = 0;
  /** Count of fdatasync batches and of writes they covered (group-commit metrics). */
  syncs = 0;
  /** Bytes went through the page cache since the last sync began (what drop-behind has to drop). */
  private wroteBuffered = false;
  /** pwritev calls the write queue made (tests: how well it joins writes). */
  pwrites = 0;

  private constructor(
    readonly dir: string,
    readonly extentId: number,
    readonly blockSizeBytes: number,
    dataFh: FileHandle,
    crcFh: FileHandle,
    length: number,
    crcs: Uint32Array,
    lens: Uint32Array,
  ) {
    this.cur = { fh: dataFh, refs: 0, retired: false };
    this.crcFh = crcFh;
    this.crcs = crcs;
    this.lens = lens;
    this.reservedEnd = this.writtenEnd = this.syncedEnd = length;
    this.crcDirtyFrom = Math.floor(length / blockSizeBytes);
  }

  static paths(dir: string, extentId: number): { data: string; crc: string; dead: string; compact: string } {
    const base = join(dir, String(extentId));
    return { data: `${base}.dat`, crc: `${base}.crc`, dead: `${base}.dead`, compact: `${base}.dat.compact` };
  }

  /**
   * Opens (or creates) the extent. Acknowledged bytes are durable in the data file (its
   * fdatasync is what an ack waits for); the checksum file is synced lazily (at most every
   * crcSyncIntervalMs), so after a crash its entries may trail the data. Entries for whole
   * blocks are trusted (a whole block never changes); the blocks past them, written since the
   * last checksum sync, get their checksums recomputed from the data.
   */
  static async open(dir: string, extentId: number, blockSizeBytes: number, create: boolean): Promise<ExtentFile> {
    const p = ExtentFile.paths(dir, extentId);
    let dataFh: FileHandle | undefined;
    let crcFh: FileHandle | undefined;
    try {
      await unlink(p.compact).catch(() => undefined); // a compaction that did not finish
      // 'a+' creates; reopen r+ so positional writes are honoured (O_APPEND ignores position on Linux).
      if (create) await (await open(p.data, 'a+')).close();
      dataFh = await open(p.data, 'r+');
      if (create) await (await open(p.crc, 'a+')).close();
      crcFh = await open(p.crc, 'r+');
      const size = (await dataFh.stat()).size;
      const crcRaw = await crcFh.readFile();
      const nBlocks = Math.ceil(size / blockSizeBytes);
      const cap = Math.max(16, nBlocks * 2);
      const crcs = new Uint32Array(cap);
      const lens = new Uint32Array(cap);
      const stored = Math.min(Math.floor(crcRaw.length / CRC_ENTRY_BYTES), Math.floor(size / blockSizeBytes));
      let trusted = 0;
      for (; trusted < stored; trusted++) {
        const l = crcRaw.readUInt32LE(trusted * CRC_ENTRY_BYTES + 4);
        if (l !== blockSizeBytes) break;
        crcs[trusted] = crcRaw.readUInt32LE(trusted * CRC_ENTRY_BYTES);
        lens[trusted] = l;
      }
      if (trusted < nBlocks) {
        const from = trusted * blockSizeBytes;
        const buf = Buffer.allocUnsafe(size - from);
        const { bytesRead } = await dataFh.read(buf, 0, buf.length, from);
        for (let k = trusted; k < nBlocks; k++) {
          const s = (k - trusted) * blockSizeBytes;
          const e = Math.min(bytesRead, s + blockSizeBytes);
          crcs[k] = crc32c(buf, 0, s, e);
          lens[k] = e - s;
        }
      }
      const ext = new ExtentFile(dir, extentId, blockSizeBytes, dataFh, crcFh, size, crcs, lens);
      ext.crcDirtyFrom = trusted;
      if (crcRaw.length > nBlocks * CRC_ENTRY_BYTES) await crcFh.truncate(nBlocks * CRC_ENTRY_BYTES);
      await ext.loadDead();
      return ext;
    } catch (err) {
      await dataFh?.close().catch(() => undefined);
      await crcFh?.close().catch(() => undefined);
      throw fromFsError(err, `open extent ${extentId} in ${dir}`);
    }
  }

  get length(): number {
    return this.syncedEnd;
  }

  get deadBytes(): number {
    let n = 0;
    for (const [s, e] of this.dead) n += e - s;
    return n;
  }

  get error(): Error | undefined {
    return this.failed;
  }

  /** Notes that the group placed bytes up to `end` here (placement is the group's job). */
  noteReserved(end: number): void {
    if (end > this.reservedEnd) this.reservedEnd = end;
  }

  /**
   * Forgets reservations that will never be written (a write failed, or its forward never
   * came): afterwards the extent is quiescent at writtenEnd. Only once no write is in flight.
   */
  settle(): void {
    this.reservedEnd = this.writtenEnd;
    this.doneOutOfOrder.clear();
  }

  /**
   * Writes reserved bytes (one buffer, or pieces laid end to end: one pwritev) and resolves
   * once they and everything before them are durable.
   */
  async write(offset: number, data: Buffer | Buffer[], crcs?: number[][]): Promise<void> {
    const end = await this.writeAt(offset, data, crcs);
    await this.durable(end);
  }

  /**
   * Writes reserved bytes without waiting for durability (cut-through: pieces of one append
   * are written as they arrive, then durable() is awaited once). Answers the end offset.
   * Writes are queued and issued one pwritev at a time per extent, each taking the queued
   * writes that continue it up to MAX_WRITE_RUN_BYTES: a backup's cut-through chunks and
   * concurrent appends become fewer writes instead of many small ones racing for the inode lock
   * on the thread pool (kernel threads spinning on it were ~3% of the datanodes' CPU).
   *
   * The block checksums of the bytes are taken here, while they are still in the CPU's cache
   * from the socket read that just filled them, and joined into the extent's once the write
   * lands: checksumming them after the pwrite read them cold, ~3x slower (0.16 against 0.05 ms
   * per MiB on the test VM). `crcs` are those checksums when the caller already has them
   * (appendCrcs of the same pieces at the same offset: the primary takes its key from them).
   */
  writeAt(offset: number, data: Buffer | Buffer[], crcs?: number[][]): Promise<number> {
    if (this.failed) return Promise.reject(this.failed);
    const all = Array.isArray(data) ? data : [data];
    const pieces: Buffer[] = [];
    const pieceCrcs: number[][] = [];
    const given = crcs && crcs.length === all.length ? crcs : appendCrcs(all, offset, this.blockSizeBytes, false).perPiece;
    let total = 0;
    for (let i = 0; i < all.length; i++) {
      const b = all[i] as Buffer;
      if (b.length === 0) continue;
      pieces.push(b);
      pieceCrcs.push(given[i] as number[]);
      total += b.length;
    }
    this.noteReserved(offset + total);
    if (total === 0) return Promise.resolve(offset);
    return new Promise<number>((resolve, reject) => {
      if (this.writeQueue.length >= MAX_QUEUED_WRITES) {
        // A refused write is a hole in reserved bytes: fail the extent, as a failed pwrite does,
        // so nothing waits behind it for a sync that cannot cover it (the group gets sealed).
        this.fail(new BlockGroupLimitError(`extent ${this.extentId}: more than ${MAX_QUEUED_WRITES} writes queued`));
        reject(this.failed);
        return;
      }
      this.writeQueue.push({ offset, pieces, crcs: pieceCrcs, bytes: total, resolve, reject });
      if (!this.writing) void this.writeLoop();
    });
  }

  /** Issues queued writes, contiguous ones joined into one pwritev (see writeAt). */
  private async writeLoop(): Promise<void> {
    this.writing = true;
    try {
      while (this.writeQueue.length > 0) {
        const batch = this.writeQueue.sort((a, b) => a.offset - b.offset);
        this.writeQueue = [];
        if (this.failed) {
          for (const w of batch) w.reject(this.failed);
          continue;
        }
        for (let i = 0; i < batch.length; ) {
          if (this.failed) {
            // Given up on meanwhile (abandon, a failed sync): nothing after it may land.
            for (const w of batch.slice(i)) w.reject(this.failed);
            break;
          }
          // One run: writes laid end to end, within the iovec and size caps.
          const first = batch[i] as QueuedWrite;
          const iov: Buffer[] = [...first.pieces];
          let end = first.offset + first.bytes;
          let j = i + 1;
          for (; j < batch.length; j++) {
            const w = batch[j] as QueuedWrite;
            if (w.offset !== end || iov.length + w.pieces.length > MAX_WRITE_PIECES || end - first.offset + w.bytes > MAX_WRITE_RUN_BYTES) break;
            for (const b of w.pieces) iov.push(b);
            end += w.bytes;
          }
          const run = batch.slice(i, j);
          i = j;
          try {
            await this.pwriteAll(first.offset, iov.length > MAX_WRITE_PIECES ? [Buffer.concat(iov)] : iov, end - first.offset);
          } catch (err) {
            this.fail(err instanceof BlockGroupIoError ? err : fromFsError(err, `write extent ${this.extentId}`));
            for (const w of batch.slice(i - run.length)) w.reject(this.failed);
            break;
          }
          for (const w of run) {
            let at = w.offset;
            for (let k = 0; k < w.pieces.length; k++) {
              const b = w.pieces[k] as Buffer;
              this.onWritten(at, b, w.crcs[k] as number[]);
              at += b.length;
            }
            w.resolve(w.offset + w.bytes);
          }
        }
      }
    } finally {
      this.writing = false;
    }
  }

  /**
   * Writes `pieces` (`total` bytes) at `offset`. With direct writes on and a run long enough,
   * its page-aligned middle goes through the O_DIRECT twin and only the partial pages at either
   * end through the page cache; the two never share a page, so neither waits on the other's.
   */
  private async pwriteAll(offset: number, pieces: Buffer[], total: number): Promise<void> {
    const h = this.cur;
    const a = Math.ceil(offset / IO_ALIGN) * IO_ALIGN;
    const b = Math.floor((offset + total) / IO_ALIGN) * IO_ALIGN;
    const d = directWrites && b - a >= DIRECT_WRITE_MIN_BYTES ? await this.directOf(h) : undefined;
    if (!d) {
      this.wroteBuffered = true;
      writePaths.buffered += await this.pwriteRuns(h.fh, offset, pieces, total, 1);
      return;
    }
    if (a > offset || b < offset + total) this.wroteBuffered = true;
    if (a > offset) writePaths.buffered += await this.pwriteRuns(h.fh, offset, sliceRange(pieces, 0, a - offset), a - offset, 1);
    const done = await this.pwriteDirect(h, d, a, sliceRange(pieces, a - offset, b - offset), b - a);
    const end = offset + total;
    if (a + done < end) writePaths.buffered += await this.pwriteRuns(h.fh, a + done, sliceRange(pieces, a + done - offset, total), end - a - done, 1);
  }

  /**
   * The O_DIRECT part of a write: `total` bytes, a multiple of IO_ALIGN, at an aligned offset.
   * Pieces that are aligned in memory and in length go as they are (lib/rpc reads large frame
   * bodies into aligned buffers, so a streamed append's chunks usually are); otherwise they are
   * copied, a run at a time, into an aligned scratch buffer (a memcpy still costs far less than
   * the page cache: see DIRECT_WRITE_MIN_BYTES). Answers how many bytes it wrote: fewer than
   * `total` when the device refused the alignment (the twin is dropped, the caller writes the
   * rest through the page cache) or wrote short of a unit.
   */
  private async pwriteDirect(h: Handle, d: FileHandle, offset: number, pieces: Buffer[], total: number): Promise<number> {
    let done = 0;
    try {
      // Pieces usable as they are, from the first; past the first that is not, everything is copied.
      let i = 0;
      let good = 0;
      for (; i < pieces.length && (pieces[i] as Buffer).length % IO_ALIGN === 0 && isAligned(pieces[i] as Buffer); i++) good += (pieces[i] as Buffer).length;
      if (good > 0) {
        done = await this.pwriteRuns(d, offset, i === pieces.length ? pieces : pieces.slice(0, i), good, IO_ALIGN);
        writePaths.direct += done;
        if (done < good || done === total) return done;
      }
      const scratch = directScratch.take(Math.min(total - done, MAX_WRITE_RUN_BYTES));
      try {
        let skip = 0;
        while (done < total) {
          const n = Math.min(total - done, scratch.length);
          for (let got = 0; got < n; ) {
            const p = pieces[i] as Buffer;
            const c = p.copy(scratch, got, skip, Math.min(p.length, skip + n - got));
            got += c;
            skip += c;
            if (skip === p.length) {
              i++;
              skip = 0;
            }
          }
          const w = await this.pwriteRuns(d, offset + done, [scratch.subarray(0, n)], n, IO_ALIGN);
          writePaths.directCopied += w;
          done += w;
          if (w < n) break;
        }
      } finally {
        directScratch.release(scratch);
      }
      return done;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      // An alignment this device does not take: the page cache from now on, for this file.
      if (h.direct === d) h.direct = null;
      void d.close().catch(() => undefined);
      return done;
    }
  }

  /**
   * pwritev of `pieces` at `offset`, resuming after short writes; answers the bytes written.
   * With `unit` above 1 (O_DIRECT) it stops at a short write that ends inside a unit and
   * answers what got written.
   */
  private async pwriteRuns(fh: FileHandle, offset: number, pieces: Buffer[], total: number, unit: number): Promise<number> {
    // At most MAX_WRITE_RUN_BYTES per pwritev, also for one large write: a 4 MiB pwritev into
    // new page-cache pages took ~7x as long as four 1 MiB ones on the test VM (12.6 vs 1.8 ms
    // per 4 MiB, each followed by an fdatasync; fio shows the same at bs=4M against bs=1M), and
    // a primary writes a whole streamed append (4 MiB from a mount) at once.
    // O_DIRECT has no page-cache copy to grow with the run: one call for a whole append.
    const maxRun = unit > 1 ? MAX_DIRECT_RUN_BYTES : MAX_WRITE_RUN_BYTES;
    let done = 0;
    let i = 0;
    let skip = 0; // bytes of pieces[i] already written
    while (done < total) {
      const iov: Buffer[] = [];
      let n = 0;
      for (let j = i, s = skip; j < pieces.length && n < maxRun; j++, s = 0) {
        const p = pieces[j] as Buffer;
        const take = Math.min(p.length - s, maxRun - n);
        iov.push(s === 0 && take === p.length ? p : p.subarray(s, s + take));
        n += take;
      }
      this.pwrites++;
      const bytesWritten = iov.length === 1 ? (await fh.write(iov[0] as Buffer, 0, (iov[0] as Buffer).length, offset + done)).bytesWritten : (await fh.writev(iov, offset + done)).bytesWritten;
      if (bytesWritten <= 0) throw new BlockGroupIoError('extent: short write');
      done += bytesWritten;
      if (unit > 1 && bytesWritten % unit !== 0) return done;
      // Next run starts where this one stopped (inside a piece after a run cap or a short write).
      let adv = bytesWritten + skip;
      while (i < pieces.length && adv >= (pieces[i] as Buffer).length) {
        adv -= (pieces[i] as Buffer).length;
        i++;
      }
      skip = adv;
    }
    return done;
  }

  /**
   * Gives up on reserved bytes that will never be written (a forward cut off mid-stream): every
   * write waiting behind them fails now instead of waiting for a sync that cannot cover it. The
   * group is sealed by the caller; recovery settles the extent at its final length.
   */
  abandon(err: Error): void {
    this.fail(err);
  }

  private onWritten(offset: number, data: Buffer, crcs: number[]): void {
    if (offset !== this.writtenEnd) {
      this.doneOutOfOrder.set(offset, { data, crcs });
      return;
    }
    this.feed(data, crcs);
    for (;;) {
      const next = this.doneOutOfOrder.get(this.writtenEnd);
      if (!next) break;
      this.doneOutOfOrder.delete(this.writtenEnd);
      this.feed(next.data, next.crcs);
    }
  }

  /**
   * Extends block checksums over bytes just written at writtenEnd, joining the checksums of
   * their block pieces (taken when they were queued: writeAt) into the blocks'.
   */
  private feed(data: Buffer, crcs: number[]): void {
    const B = this.blockSizeBytes;
    let pos = this.writtenEnd;
    let off = 0;
    let i = 0;
    while (off < data.length) {
      const k = Math.floor(pos / B);
      const inBlock = pos - k * B;
      const n = Math.min(B - inBlock, data.length - off);
      this.ensureEntries(k + 1);
      const c = crcs[i++] as number;
      this.crcs[k] = inBlock === 0 ? c : crc32cCombine(this.crcs[k] as number, c, n);
      this.lens[k] = inBlock + n;
      pos += n;
      off += n;
    }
    this.writtenEnd = pos;
  }

  private ensureEntries(n: number): void {
    if (n <= this.crcs.length) return;
    let cap = this.crcs.length;
    while (cap < n) cap *= 2;
    const c = new Uint32Array(cap);
    c.set(this.crcs);
    const l = new Uint32Array(cap);
    l.set(this.lens);
    this.crcs = c;
    this.lens = l;
  }

  /** Resolves once every byte below `end` is durable (group commit with other writers). */
  durable(end: number): Promise<void> {
    if (end <= this.syncedEnd) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ end, resolve, reject });
      void this.syncLoop();
    });
  }

  /** Group commit: one crc write + two fdatasyncs cover every write finished before it began. */
  private async syncLoop(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    try {
      while (this.waiters.length > 0 && !this.failed) {
        const target = this.writtenEnd;
        if (target <= this.syncedEnd) break; // the rest wait for writes still in flight
        const entries = this.encodeEntries(this.crcDirtyFrom, Math.ceil(target / this.blockSizeBytes));
        const at = this.crcDirtyFrom * CRC_ENTRY_BYTES;
        // A few bytes into the page cache: written in place (microseconds) rather than through
        // the thread pool, whose hand-off and wake-up back cost more than the write on a busy
        // machine (each is two context switches; a datanode made ~18 futex calls per append).
        for (let w = 0; w < entries.length; ) w += writeSync(this.crcFh.fd, entries, w, entries.length - w, at + w);
        this.crcDirtyFrom = Math.floor(target / this.blockSizeBytes);
        // Acks wait for the data only; the checksum file is synced at most every
        // CRC_SYNC_INTERVAL_MS (see open() for how a trailing checksum file is recovered).
        const now = performance.now();
        const syncCrc = now - this.crcSyncedAtMs >= CRC_SYNC_INTERVAL_MS;
        if (syncCrc) this.crcSyncedAtMs = now;
        // Only bytes written through the page cache have pages to drop (taken before the sync:
        // a buffered write finishing meanwhile lies past target and is dropped next time).
        const drop = dropBehindWrites && this.wroteBuffered;
        this.wroteBuffered = false;
        await Promise.all([this.cur.fh.datasync(), syncCrc ? this.crcFh.datasync() : undefined]);
        this.syncs++;
        if (drop && target > this.syncedEnd) dropFromPageCache(this.cur.fh.fd, this.syncedEnd, target - this.syncedEnd);
        this.syncedEnd = Math.max(this.syncedEnd, target);
        const still: Waiter[] = [];
        for (const w of this.waiters) {
          if (w.end <= this.syncedEnd) w.resolve();
          else still.push(w);
        }
        this.waiters = still;
      }
    } catch (err) {
      this.fail(fromFsError(err, `sync extent ${this.extentId}`));
    } finally {
      this.syncing = false;
    }
    // A write may have finished while the last sync ran; make sure its waiter is served.
    if (!this.failed && this.waiters.some((w) => w.end <= this.writtenEnd)) void this.syncLoop();
  }

  private encodeEntries(from: number, to: number): Buffer {
    const buf = Buffer.allocUnsafe(Math.max(0, to - from) * CRC_ENTRY_BYTES);
    for (let k = from; k < to; k++) {
      buf.writeUInt32LE(this.crcs[k] as number, (k - from) * CRC_ENTRY_BYTES);
      buf.writeUInt32LE(this.lens[k] as number, (k - from) * CRC_ENTRY_BYTES + 4);
    }
    return buf;
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(err);
  }

  private acquire(): Handle {
    const h = this.cur;
    h.refs++;
    return h;
  }

  private release(h: Handle): void {
    h.refs--;
    if (h.retired && h.refs === 0) void closeHandle(h);
  }

  /**
   * The handle's O_DIRECT twin, opened on first use. Only for the current file (a retired
   * handle's path now names its replacement), and checked to be the same inode as `h.fh`
   * (a compaction may rename over the path while the open runs).
   */
  private async directOf(h: Handle): Promise<FileHandle | undefined> {
    if (h.direct !== undefined) return h.direct ?? undefined;
    if (h.retired) return undefined;
    h.direct = null;
    let d: FileHandle | undefined;
    try {
      d = await open(ExtentFile.paths(this.dir, this.extentId).data, fsConstants.O_RDWR | fsConstants.O_DIRECT);
      const [a, b] = await Promise.all([d.stat(), h.fh.stat()]);
      if (a.ino !== b.ino || a.dev !== b.dev || h.retired || this.closed) throw new Error('not the same file');
      h.direct = d;
      return d;
    } catch {
      // O_DIRECT refused (tmpfs, some FUSE or network filesystems) or the file moved: page cache.
      await d?.close().catch(() => undefined);
      return undefined;
    }
  }

  overlapsDead(offset: number, length: number): boolean {
    const end = offset + length;
    for (const [s, e] of this.dead) if (s < end && offset < e) return true;
    return false;
  }

  private blockDead(k: number): boolean {
    const s = k * this.blockSizeBytes;
    const e = s + (this.lens[k] as number);
    for (const [ds, de] of this.dead) if (ds <= s && de >= e) return true;
    return false;
  }

  /**
   * Verified read of durable bytes. Throws BlockGroupChecksumError naming the bad block.
   * `alloc` supplies the buffer the covering blocks are read into (default: a fresh one).
   * `verify` false skips the block checks, for a caller that checks the bytes end to end
   * itself and reports what fails (see DataNode.read).
   */
  async read(offset: number, length: number, alloc?: (n: number) => Buffer, verify = true): Promise<Buffer> {
    const c = this.coverOf(offset, length);
    return this.finishRead(offset, length, c, await this.pread(c.start, c.total, alloc), verify);
  }

  /**
   * The covering blocks of a read, [start, start + total), with a snapshot of their checksums
   * taken now: whole blocks never change (append-only), and the tail block's entry, which grows
   * with later appends, is kept as it is for the bytes read. Throws as read() does for a range
   * past the durable length or freed.
   */
  coverOf(offset: number, length: number): ReadCover {
    if (!(length > 0) || offset < 0 || offset + length > this.syncedEnd) {
      throw new BlockGroupOutOfRangeError(`extent ${this.extentId}: range [${offset}, ${offset + length}) is past the durable length ${this.syncedEnd}`);
    }
    if (this.overlapsDead(offset, length)) throw new BlockGroupBadRequestError(`extent ${this.extentId}: range [${offset}, ${offset + length}) was freed`);
    const B = this.blockSizeBytes;
    const b0 = Math.floor(offset / B);
    const b1 = Math.floor((offset + length - 1) / B);
    const crcs = this.crcs.slice(b0, b1 + 1);
    const lens = this.lens.slice(b0, b1 + 1);
    return { start: b0 * B, total: (b1 - b0) * B + (lens[b1 - b0] as number), crcs, lens };
  }

  /** Reads raw bytes [start, start + total) (a read-ahead of a cover; finishRead checks them). */
  readRaw(start: number, total: number, alloc?: (n: number) => Buffer): Promise<Buffer> {
    return this.pread(start, total, alloc);
  }

  /**
   * The answer of read(offset, length) from `buf`, which holds the covering blocks of `cover`
   * (coverOf of this range or of one containing it at the same start): checked against the
   * cover's checksums (unless `verify` is false) and cut to the range. The range must still be
   * durable and live (a sealed extent may have been cut back since the cover was taken).
   */
  finishRead(offset: number, length: number, cover: ReadCover, buf: Buffer, verify = true): Buffer {
    const now = this.coverOf(offset, length);
    if (now.start !== cover.start || offset + length > cover.start + cover.total || buf.length < cover.total) {
      throw new BlockGroupOutOfRangeError(`extent ${this.extentId}: read buffer does not hold the covering blocks of [${offset}, ${offset + length})`);
    }
    const B = this.blockSizeBytes;
    for (let i = 0; verify && i < cover.crcs.length; i++) {
      const s = i * B;
      if (crc32c(buf, 0, s, s + (cover.lens[i] as number)) !== cover.crcs[i]) {
        throw new BlockGroupChecksumError(`extent ${this.extentId}: block ${cover.start / B + i} does not match its checksum`);
      }
    }
    return buf.subarray(offset - cover.start, offset - cover.start + length);
  }

  /**
   * Reads [position, position + length) into a buffer from `alloc` (default: a fresh one).
   * Through the O_DIRECT handle when the position is aligned and the buffer `alloc` gives is
   * (BufferPool's are): whole units, so `alloc` is asked for the length rounded up to one.
   */
  private async pread(position: number, length: number, alloc?: (n: number) => Buffer): Promise<Buffer> {
    const h = this.acquire();
    try {
      const d = directReads && position % IO_ALIGN === 0 && length >= DIRECT_MIN_BYTES ? await this.directOf(h) : undefined;
      const span = d ? Math.ceil(length / IO_ALIGN) * IO_ALIGN : length;
      const buf = alloc ? alloc(span) : d ? alignedBuffer(span) : Buffer.allocUnsafe(length);
      if (d && buf.length >= span && isAligned(buf)) {
        try {
          return await this.readInto(d, buf, position, length, span, IO_ALIGN);
        } catch (err) {
          if (err instanceof BlockGroupChecksumError) throw err;
          // Refused at read time (an alignment this device does not take): page cache from now on.
          if (h.direct === d) h.direct = null;
          void d.close().catch(() => undefined);
        }
      }
      return await this.readInto(h.fh, buf, position, length, length, 1);
    } catch (err) {
      if (err instanceof BlockGroupChecksumError) throw err;
      throw fromFsError(err, `read extent ${this.extentId}`);
    } finally {
      this.release(h);
    }
  }

  /**
   * Reads `length` bytes at `position` into `buf`, asking for up to `span` (O_DIRECT: whole
   * `unit`s); a read short of a whole unit, or of nothing, is the end of the file. Answers the
   * `length` bytes; a file that ends sooner has lost bytes its checksums cover.
   */
  private async readInto(fh: FileHandle, buf: Buffer, position: number, length: number, span: number, unit: number): Promise<Buffer> {
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, span - got, position + got);
      got += bytesRead;
      if (bytesRead === 0 || bytesRead % unit !== 0) break;
    }
    if (got < length) throw new BlockGroupChecksumError(`extent ${this.extentId}: file is shorter than its checksums (${position + got} < ${position + length})`);
    return buf.length === length ? buf : buf.subarray(0, length);
  }

  /** Durable blocks [first, first+count) with their checksums, for a peer's catch-up or repair. */
  async readBlocks(first: number, count: number): Promise<BlocksCopy> {
    const B = this.blockSizeBytes;
    const nBlocks = Math.ceil(this.syncedEnd / B);
    if (first < 0 || count <= 0 || first >= nBlocks) throw new BlockGroupOutOfRangeError(`extent ${this.extentId}: block ${first} is past the durable length`);
    const last = Math.min(nBlocks, first + count) - 1;
    const crcs: number[] = [];
    const lengths: number[] = [];
    const dead: boolean[] = [];
    for (let k = first; k <= last; k++) {
      crcs.push(this.crcs[k] as number);
      lengths.push(k === nBlocks - 1 ? this.syncedEnd - k * B : B);
      dead.push(this.blockDead(k));
    }
    // The tail entry may already cover unsynced bytes; copy only what is durable.
    if (last === nBlocks - 1 && (this.lens[last] as number) !== lengths[last - first]) {
      throw new BlockGroupOutOfRangeError(`extent ${this.extentId}: tail block ${last} is being written; retry`);
    }
    const total = (last - first) * B + (lengths[last - first] as number);
    const data = await this.pread(first * B, total);
    for (let i = 0; i < crcs.length; i++) {
      if (dead[i]) {
        data.fill(0, i * B, i * B + (lengths[i] as number));
        continue;
      }
      if (crc32c(data, 0, i * B, i * B + (lengths[i] as number)) !== crcs[i]) {
        throw new BlockGroupChecksumError(`extent ${this.extentId}: block ${first + i} does not match its checksum`);
      }
    }
    return { data, crcs, lengths, dead };
  }

  /** Runs fn with repair, catch-up, truncation and compaction excluded from each other. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Catch-up: replaces everything from block `first` on with a peer's verified copy. Only for
   * a quiescent (sealed) extent: the caller guarantees no appends run.
   */
  async replaceFrom(first: number, copy: BlocksCopy): Promise<void> {
    const B = this.blockSizeBytes;
    assert(this.reservedEnd === this.writtenEnd, 'extent: replaceFrom while appends are in flight');
    if (first * B > this.syncedEnd) throw new BlockGroupOutOfRangeError(`extent ${this.extentId}: catch-up from block ${first} leaves a gap`);
    for (let i = 0; i < copy.crcs.length; i++) {
      const l = copy.lengths[i] as number;
      if (!(l > 0 && l <= B) || (i < copy.crcs.length - 1 && l !== B)) throw new BlockGroupBadRequestError('extent: malformed block copy');
      if (!copy.dead[i] && crc32c(copy.data, 0, i * B, i * B + l) !== copy.crcs[i]) throw new BlockGroupChecksumError(`extent ${this.extentId}: copied block ${first + i} fails its checksum`);
    }
    const start = first * B;
    try {
      await this.cur.fh.truncate(start);
      let done = 0;
      while (done < copy.data.length) {
        const { bytesWritten } = await this.cur.fh.write(copy.data, done, copy.data.length - done, start + done);
        done += bytesWritten;
      }
      this.ensureEntries(first + copy.crcs.length);
      for (let i = 0; i < copy.crcs.length; i++) {
        this.crcs[first + i] = copy.crcs[i] as number;
        this.lens[first + i] = copy.lengths[i] as number;
      }
      const end = start + copy.data.length;
      const nBlocks = first + copy.crcs.length;
      this.crcs.fill(0, nBlocks);
      this.lens.fill(0, nBlocks);
      const entries = this.encodeEntries(first, nBlocks);
      await this.crcFh.write(entries, 0, entries.length, first * CRC_ENTRY_BYTES);
      await this.crcFh.truncate(nBlocks * CRC_ENTRY_BYTES);
      await Promise.all([this.cur.fh.datasync(), this.crcFh.datasync()]);
      this.reservedEnd = this.writtenEnd = this.syncedEnd = end;
      this.crcDirtyFrom = Math.floor(end / B);
    } catch (err) {
      throw fromFsError(err, `catch up extent ${this.extentId}`);
    }
  }

  /** Cuts a quiescent extent to `length` (bytes past a sealed length were never acknowledged). */
  async truncateTo(length: number): Promise<void> {
    assert(this.reservedEnd === this.writtenEnd, 'extent: truncate while appends are in flight');
    if (length >= this.syncedEnd) return;
    const B = this.blockSizeBytes;
    const k = Math.floor(length / B);
    const inBlock = length - k * B;
    let tailCrc = 0;
    if (inBlock > 0) {
      const buf = await this.pread(k * B, inBlock);
      tailCrc = crc32c(buf);
    }
    const nBlocks = Math.ceil(length / B);
    try {
      await this.cur.fh.truncate(length);
      if (inBlock > 0) {
        this.crcs[k] = tailCrc;
        this.lens[k] = inBlock;
      }
      this.crcs.fill(0, nBlocks);
      this.lens.fill(0, nBlocks);
      if (inBlock > 0) {
        const e = this.encodeEntries(k, k + 1);
        await this.crcFh.write(e, 0, e.length, k * CRC_ENTRY_BYTES);
      }
      await this.crcFh.truncate(nBlocks * CRC_ENTRY_BYTES);
      await Promise.all([this.cur.fh.datasync(), this.crcFh.datasync()]);
      this.reservedEnd = this.writtenEnd = this.syncedEnd = length;
      this.crcDirtyFrom = k;
    } catch (err) {
      throw fromFsError(err, `truncate extent ${this.extentId}`);
    }
  }

  /** Rewrites block k from a peer's verified copy (a corrupt block, or a corrupt checksum). */
  async repairBlock(k: number, copy: BlocksCopy): Promise<void> {
    const B = this.blockSizeBytes;
    const l = copy.lengths[0];
    if (copy.crcs.length !== 1 || l === undefined || copy.dead[0]) throw new BlockGroupBadRequestError('extent: repair needs one live block');
    if (k >= Math.ceil(this.syncedEnd / B) || l !== Math.min(B, this.syncedEnd - k * B)) throw new BlockGroupOutOfRangeError(`extent ${this.extentId}: repair of block ${k} does not match the local length`);
    if (crc32c(copy.data, 0, 0, l) !== copy.crcs[0]) throw new BlockGroupChecksumError(`extent ${this.extentId}: repair copy of block ${k} fails its checksum`);
    try {
      const h = this.acquire();
      try {
        await h.fh.write(copy.data, 0, l, k * B);
        await h.fh.datasync();
      } finally {
        this.release(h);
      }
      this.crcs[k] = copy.crcs[0] as number;
      this.lens[k] = l;
      const e = this.encodeEntries(k, k + 1);
      await this.crcFh.write(e, 0, e.length, k * CRC_ENTRY_BYTES);
      await this.crcFh.datasync();
    } catch (err) {
      throw fromFsError(err, `repair extent ${this.extentId}`);
    }
  }

  /** Which blocks fail their checksum (scrub); bounded by the extent's size. */
  async scrub(): Promise<number[]> {
    const B = this.blockSizeBytes;
    const bad: number[] = [];
    const nBlocks = Math.ceil(this.syncedEnd / B);
    for (let k = 0; k < nBlocks; k++) {
      if (this.blockDead(k)) continue;
      const l = Math.min(B, this.syncedEnd - k * B);
      if ((this.lens[k] as number) !== l) continue; // tail being written
      const buf = await this.pread(k * B, l).catch(() => undefined);
      if (!buf || crc32c(buf) !== this.crcs[k]) bad.push(k);
    }
    return bad;
  }

  private async loadDead(): Promise<void> {
    const p = ExtentFile.paths(this.dir, this.extentId).dead;
    let raw: Buffer;
    try {
      const fh = await open(p, 'r');
      try {
        raw = await fh.readFile();
      } finally {
        await fh.close();
      }
    } catch {
      return;
    }
    const n = Math.floor(raw.length / DEAD_RECORD_BYTES);
    for (let i = 0; i < n && i < MAX_DEAD_RANGES; i++) {
      const o = i * DEAD_RECORD_BYTES;
      // A torn or corrupt record ends the list: freeing is idempotent, the caller can repeat it.
      if (crc32c(raw, 0, o, o + 12) !== raw.readUInt32LE(o + 12)) break;
      const start = raw.readUInt32LE(o) + raw.readUInt32LE(o + 4) * 2 ** 32;
      const len = raw.readUInt32LE(o + 8);
      this.addDead(start, start + len);
    }
  }

  private addDead(s: number, e: number): void {
    const out: [number, number][] = [];
    let placed = false;
    for (const [a, b] of this.dead) {
      if (b < s) out.push([a, b]);
      else if (e < a) {
        if (!placed) {
          out.push([s, e]);
          placed = true;
        }
        out.push([a, b]);
      } else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    if (!placed) out.push([s, e]);
    this.dead = out;
  }

  /** Records a freed range durably. Idempotent. */
  async markDead(offset: number, length: number): Promise<void> {
    if (!(length > 0) || length > 0xffffffff || offset < 0 || offset + length > this.syncedEnd) {
      throw new BlockGroupBadRequestError(`extent ${this.extentId}: cannot free [${offset}, ${offset + length}) (durable length ${this.syncedEnd})`);
    }
    if (this.dead.length >= MAX_DEAD_RANGES) throw new BlockGroupLimitError(`extent ${this.extentId}: more than ${MAX_DEAD_RANGES} freed ranges`);
    const rec = Buffer.allocUnsafe(DEAD_RECORD_BYTES);
    rec.writeUInt32LE(offset % 2 ** 32, 0);
    rec.writeUInt32LE(Math.floor(offset / 2 ** 32), 4);
    rec.writeUInt32LE(length, 8);
    rec.writeUInt32LE(crc32c(rec, 0, 0, 12), 12);
    try {
      this.deadFh ??= await open(ExtentFile.paths(this.dir, this.extentId).dead, 'a');
      await this.deadFh.write(rec);
      await this.deadFh.datasync();
    } catch (err) {
      throw fromFsError(err, `free range in extent ${this.extentId}`);
    }
    this.addDead(offset, offset + length);
  }

  /** Bytes the data file occupies on disk (holes excluded). */
  async allocatedBytes(): Promise<number> {
    const h = this.acquire();
    try {
      return (await h.fh.stat()).blocks * 512;
    } catch {
      return 0;
    } finally {
      this.release(h);
    }
  }

  /**
   * Copies live blocks into a sparse file at the same offsets and renames it over the data
   * file. Fully freed blocks become holes (their bytes are returned to the filesystem); their
   * checksum entries stay, and reads of freed ranges are refused, so nothing checks them.
   * The caller holds exclusive() and guarantees no appends run (sealed or rolled-over extent).
   */
  async compact(): Promise<number> {
    assert(this.reservedEnd === this.writtenEnd, 'extent: compaction while appends are in flight');
    const before = await this.allocatedBytes();
    const B = this.blockSizeBytes;
    const p = ExtentFile.paths(this.dir, this.extentId);
    const nBlocks = Math.ceil(this.syncedEnd / B);
    let out: FileHandle | undefined;
    try {
      out = await open(p.compact, 'w');
      for (let k = 0; k < nBlocks; k++) {
        if (this.blockDead(k)) continue;
        const l = Math.min(B, this.syncedEnd - k * B);
        const buf = await this.pread(k * B, l);
        // Never copy a corrupt block into the new file as if it were good.
        if (crc32c(buf) !== this.crcs[k]) throw new BlockGroupChecksumError(`extent ${this.extentId}: block ${k} fails its checksum during compaction`);
        await out.write(buf, 0, l, k * B);
      }
      await out.truncate(this.syncedEnd);
      await out.datasync();
      await out.close();
      out = undefined;
      await rename(p.compact, p.data);
      const dirFh = await open(this.dir, 'r');
      await dirFh.sync().finally(() => dirFh.close());
      const fresh = await open(p.data, 'r+');
      const old = this.cur;
      this.cur = { fh: fresh, refs: 0, retired: false };
      // Readers that started on the old file finish on it; it closes with the last of them.
      old.retired = true;
      if (old.refs === 0) await closeHandle(old);
    } catch (err) {
      await out?.close().catch(() => undefined);
      await unlink(p.compact).catch(() => undefined);
      if (err instanceof BlockGroupChecksumError) throw err;
      throw fromFsError(err, `compact extent ${this.extentId}`);
    }
    return Math.max(0, before - (await this.allocatedBytes()));
  }

  /** Waits for syncs in flight, then closes the files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (let i = 0; i < 1000 && (this.syncing || this.writing); i++) await new Promise((r) => setTimeout(r, 5));
    this.fail(new BlockGroupIoError(`extent ${this.extentId} is closed`));
    // A clean stop leaves the checksum file complete, so the next open trusts all of it.
    const entries = this.encodeEntries(this.crcDirtyFrom, Math.ceil(this.syncedEnd / this.blockSizeBytes));
    await this.crcFh.write(entries, 0, entries.length, this.crcDirtyFrom * CRC_ENTRY_BYTES).then(() => this.crcFh.datasync()).catch(() => undefined);
    this.cur.retired = true;
    if (this.cur.refs === 0) await closeHandle(this.cur);
    await this.crcFh.close().catch(() => undefined);
    await this.deadFh?.close().catch(() => undefined);
  }
}

/** Closes a data file handle and its O_DIRECT twin. */
async function closeHandle(h: Handle): Promise<void> {
  await Promise.all([h.fh.close().catch(() => undefined), h.direct?.close().catch(() => undefined)]);
}

/** Views of bytes [from, to) of `pieces` laid end to end (no copy). */
function sliceRange(pieces: Buffer[], from: number, to: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const p of pieces) {
    const s = Math.max(from, at);
    const e = Math.min(to, at + p.length);
    if (s < e) out.push(s === at && e === at + p.length ? p : p.subarray(s - at, e - at));
    at += p.length;
    if (at >= to) break;
  }
  return out;
}

/**
 * Checksums of bytes about to be written at `offset` of an extent with blocks of `B` bytes: per
 * piece, one checksum for each block it touches, over that piece's bytes in the block only
 * (what ExtentFile joins into its block checksums), and, with `withKey`, the checksum of all
 * the bytes joined from those without reading them again (an append's key). Only the primary
 * needs the key: a backup's write skips the joins.
 */
export function appendCrcs(pieces: readonly Buffer[], offset: number, B: number, withKey = true): { perPiece: number[][]; crc: number } {
  const perPiece: number[][] = [];
  let crc = 0;
  let pos = offset;
  for (const data of pieces) {
    const list: number[] = [];
    let off = 0;
    while (off < data.length) {
      const n = Math.min(B - (pos % B), data.length - off);
      const c = crc32c(data, 0, off, off + n);
      list.push(c);
      if (withKey) crc = crc32cCombine(crc, c, n);
      pos += n;
      off += n;
    }
    perPiece.push(list);
  }
  return { perPiece, crc };
}
