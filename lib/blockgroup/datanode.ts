// DataNode: the datanode's block-group service. Holds replicas of many groups across one or
// more data directories, serves the blockgroup RPC methods, and runs three background workers:
// recovery (settle final lengths of sealed groups and catch up by length from a peer), repair
// (rewrite blocks that failed a checksum from a peer's verified copy), and compaction (reclaim
// freed ranges of extents no append can reach any more).
import { mkdir, readdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import {
  BoundedQueue, Counter, Gauge, errorMessage, parseHostPort, silentLogger, type HealthReport, type Logger, type Registry,
} from '../common/index.js';
import type { CallContext, RpcPool, RpcServer } from '../rpc/index.js';
import { BufferPool } from './bufferpool.js';
import { crc32cImplementation } from './crc32c.js';
import {
  BlockGroupBadRequestError, BlockGroupChecksumError, BlockGroupExistsError, BlockGroupLimitError, BlockGroupNoSpaceError,
  BlockGroupNotFoundError, BlockGroupNotPrimaryError, BlockGroupOutOfRangeError, BlockGroupSealedError, fromRemote,
} from './errors.js';
import { appendCrcs, setDirectReads, setDirectWrites, setDropBehindWrites, writePathBytes, type BlocksCopy, type ExtentFile, type ReadCover } from './extentfile.js';
import { pageCacheDropSupport } from './pagecache.js';
import { GroupReplica, type GroupMeta, type Placement } from './group.js';
import { sealGroup, toList, toRecord } from './seal.js';
import {
  appendHeaderCodec, blockGroupService as svc, forwardHeaderCodec, STREAM_CHUNK_BYTES, UNARY_MAX_BYTES, type Codec, type GroupStatus, type HeartbeatMsg, type HeartbeatAck,
} from './service.js';

/**
 * Node.js flags for the processes that move block data: datanodes, and clients reading and
 * writing through BlockGroupClient (the FUSE mount). Launchers put them before the script.
 * Such a process keeps a ~10 MB heap while moving hundreds of MiB through buffers V8 counts
 * as external memory, and V8 sizes its collections by the heap: a datanode ran a full
 * mark-compact every ~13 MiB of traffic (~20% of its CPU), a reading client spent ~40% of its
 * CPU in GC. A larger initial old space (64 MiB) cut the collections ~5x: write-path CPU
 * ~20% lower, client read CPU about halved in A/B runs. It cannot be set from inside a
 * running process (v8.setFlagsFromString has no effect on heap sizing), hence a launch flag.
 */
export const DATA_PATH_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

export interface DataNodeOptions {
  /** Directories holding group replicas; a new group goes to the one with most free space. */
  dataDirs: string[];
  /** This node's address exactly as replica chains name it (host:port). */
  advertise: string;
  /** Used to reach peers (forwards, catch-up, repair, sealing). */
  pool: RpcPool;
  logger?: Logger;
  registry?: Registry;
  maxGroups?: number;
  maxAppendBytes?: number;
  maxReadBytes?: number;
  defaultBlockSizeBytes?: number;
  defaultExtentMaxBytes?: number;
  forwardDeadlineMs?: number;
  reorderWaitMs?: number;
  recoveryIntervalMs?: number;
  repairQueueMax?: number;
  /**
   * Drop what was written from the page cache once it is durable (pagecache.ts): for machines
   * where several replicas share one page cache (the embedded stack). Process-wide.
   */
  dropBehindWrites?: boolean;
  /**
   * Read extents with O_DIRECT where the filesystem takes it (default true; extentfile.ts says
   * why). Process-wide, as dropBehindWrites.
   */
  directReads?: boolean;
  /** Write the aligned middle of large writes with O_DIRECT (default true; extentfile.ts says why). Process-wide. */
  directWrites?: boolean;
  /** 0 turns periodic compaction off (the Compact RPC still works). */
  compactIntervalMs?: number;
  /** Compact an extent when at least this fraction of it is freed. */
  compactDeadRatio?: number;
  catchUpChunkBlocks?: number;
  /** How often to verify every block on this node and queue repairs (0: off). */
  scrubIntervalMs?: number;
}

// dropBehindWrites, directReads and directWrites are not kept: they are applied process-wide at open.
type Resolved = Required<Omit<DataNodeOptions, 'logger' | 'registry' | 'pool' | 'dropBehindWrites' | 'directReads' | 'directWrites'>>;

const MAX_REPLICAS = 16;
const MAX_BLOCKS_PER_COPY = 256;
const MAX_COPY_BYTES = 4 * 1024 * 1024;

interface RepairItem {
  groupId: number;
  extentId: number;
  block: number;
}

/** Reads ahead per sequential reader, of at most this size each, for at most this many extents (see DataNode.readAhead). */
const READ_AHEAD_UNITS = 4;
const READ_AHEAD_MAX_UNIT_BYTES = 1024 * 1024;
const READ_AHEAD_EXTENTS = 8;
/** How far behind the furthest read a read may start and still count as sequential (reads in flight arrive out of order). */
const READ_AHEAD_SLACK_UNITS = 8;

interface AheadUnit {
  offset: number;
  length: number;
  cover: ReadCover;
  /** The cover's blocks (`data`) and the pooled buffer they lie in (`held`), or undefined when the read failed. */
  done: Promise<{ held: Buffer; data: Buffer } | undefined>;
}

interface AheadState {
  ext: ExtentFile;
  unit: number;
  /** End of the furthest read asked for, and where the next read-ahead unit starts. */
  hi: number;
  next: number;
  units: AheadUnit[];
  seen: number;
}

/** A stream chunk: one buffer, or the pieces of a frame that spanned socket reads (rawPartsCodec). */
type Chunk = Uint8Array | Uint8Array[];

function chunkLength(c: Chunk): number {
  if (!Array.isArray(c)) return c.length;
  let n = 0;
  for (const b of c) n += b.length;
  return n;
}

function chunkPieces(c: Chunk): Buffer[] {
  return Array.isArray(c) ? c.filter((b) => b.length > 0).map(asBuffer) : c.length > 0 ? [asBuffer(c)] : [];
}

/** Chunks shorter than this are copied together instead of kept as pieces. */
const SMALL_PIECE_BYTES = 4096;
const STAGE_BYTES = 64 * 1024;

/**
 * Received chunks kept as pieces for one pwritev and one forward, without copying the large
 * ones. Small chunks (a peer may send 1-byte chunks) are copied into a staging buffer, so the
 * piece count stays bounded (~2 per 4 KiB at worst) and each byte is copied at most once.
 */
class Pieces {
  private list: Buffer[] = [];
  private stage: Buffer | undefined;
  private stageAt = 0;
  bytes = 0;

  add(c: Chunk): void {
    for (const b of chunkPieces(c)) {
      this.bytes += b.length;
      if (b.length >= SMALL_PIECE_BYTES) {
        this.closeStage();
        this.list.push(b);
        continue;
      }
      if (!this.stage || this.stageAt + b.length > this.stage.length) {
        this.closeStage();
        this.stage = Buffer.allocUnsafe(STAGE_BYTES);
      }
      b.copy(this.stage, this.stageAt);
      this.stageAt += b.length;
    }
  }

  private closeStage(): void {
    if (this.stage && this.stageAt > 0) this.list.push(this.stage.subarray(0, this.stageAt));
    this.stage = undefined;
    this.stageAt = 0;
  }

  /** Everything added since the last take, in order. */
  take(): Buffer[] {
    this.closeStage();
    const l = this.list;
    this.list = [];
    this.bytes = 0;
    return l;
  }
}

function joinChunk(c: Chunk): Uint8Array {
  return Array.isArray(c) ? Buffer.concat(c) : c;
}

function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

function isSafe(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

export class DataNode {
  readonly o: Resolved;
  private readonly log: Logger;
  private readonly pool: RpcPool;
  private readonly groups = new Map<number, GroupReplica>();
  private readonly creating = new Set<number>();
  private readonly sealing = new Set<number>();
  private readonly repairQueue: BoundedQueue<RepairItem>;
  private readonly repairQueued = new Set<string>();
  private repairRunning = false;
  private timers: NodeJS.Timeout[] = [];
  private closed = false;
  private compacting = false;
  private readonly m: ReturnType<typeof makeMetrics> | undefined;
  private readonly readPool = new BufferPool();

  private constructor(options: DataNodeOptions) {
    this.log = options.logger ?? silentLogger;
    this.pool = options.pool;
    this.o = {
      dataDirs: options.dataDirs,
      advertise: options.advertise,
      maxGroups: options.maxGroups ?? 10_000,
      maxAppendBytes: options.maxAppendBytes ?? 8 * 1024 * 1024,
      maxReadBytes: options.maxReadBytes ?? 8 * 1024 * 1024,
      defaultBlockSizeBytes: options.defaultBlockSizeBytes ?? 64 * 1024,
      defaultExtentMaxBytes: options.defaultExtentMaxBytes ?? 256 * 1024 * 1024,
      forwardDeadlineMs: options.forwardDeadlineMs ?? 10_000,
      reorderWaitMs: options.reorderWaitMs ?? 5_000,
      recoveryIntervalMs: options.recoveryIntervalMs ?? 1_000,
      repairQueueMax: options.repairQueueMax ?? 4096,
      compactIntervalMs: options.compactIntervalMs ?? 60_000,
      compactDeadRatio: options.compactDeadRatio ?? 0.5,
      catchUpChunkBlocks: Math.min(MAX_BLOCKS_PER_COPY, options.catchUpChunkBlocks ?? 64),
      scrubIntervalMs: options.scrubIntervalMs ?? 0,
    };
    if (this.o.dataDirs.length === 0) throw new BlockGroupBadRequestError('datanode: at least one data directory is required');
    parseHostPort(this.o.advertise, 'advertise');
    this.repairQueue = new BoundedQueue(this.o.repairQueueMax, 'repair queue');
    this.m = options.registry ? makeMetrics(options.registry, this) : undefined;
  }

  /** Opens every group found in the data directories (they come back sealed; see GroupReplica.load). */
  static async open(options: DataNodeOptions): Promise<DataNode> {
    const node = new DataNode(options);
    if (options.dropBehindWrites !== undefined) setDropBehindWrites(options.dropBehindWrites);
    if (options.directReads !== undefined) setDirectReads(options.directReads);
    if (options.directWrites !== undefined) setDirectWrites(options.directWrites);
    if (options.dropBehindWrites) {
      const s = pageCacheDropSupport();
      if (!s.ok) node.log.warn({ reason: s.reason }, 'blockgroup: drop-behind asked for but unavailable; written data stays cached');
    }
    for (const d of node.o.dataDirs) {
      const root = join(d, 'groups');
      await mkdir(root, { recursive: true });
      for (const name of await readdir(root)) {
        if (!/^\d+$/.test(name)) continue;
        try {
          const g = await GroupReplica.load(join(root, name), node.o.advertise);
          if (node.groups.has(g.groupId)) throw new BlockGroupExistsError(`group ${g.groupId} is in two data directories`);
          node.groups.set(g.groupId, g);
        } catch (err) {
          // One unreadable group must not keep the node's other groups offline.
          node.log.error({ err, dir: join(root, name) }, 'blockgroup: cannot load group; skipping it');
        }
      }
    }
    const crc = crc32cImplementation();
    node.log.info({ groups: node.groups.size, dataDirs: node.o.dataDirs, crc32c: crc.kind }, 'blockgroup: datanode opened');
    // Once per node: the TypeScript checksum costs ~20x the CPU of the addon on this path.
    if (crc.kind === 'ts') node.log.warn({ reason: crc.reason }, 'blockgroup: crc32c addon unavailable; using the TypeScript checksum');
    return node;
  }

  /** Starts the background workers. */
  start(): void {
    const every = (ms: number, fn: () => Promise<void>): void => {
      let running = false;
      const t = setInterval(() => {
        if (running || this.closed) return;
        running = true;
        fn().catch((err: unknown) => this.log.warn({ err }, 'blockgroup: background task failed')).finally(() => (running = false));
      }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.o.recoveryIntervalMs, () => this.recoverAll());
    if (this.o.compactIntervalMs > 0) every(this.o.compactIntervalMs, () => this.compactAll().then(() => undefined));
    if (this.o.scrubIntervalMs > 0) every(this.o.scrubIntervalMs, () => this.scrubAll());
  }

  register(server: RpcServer): void {
    server.unary(svc.createGroup, (req) => this.createGroup(req));
    server.unary(svc.append, (req) => this.append(req.groupId ?? 0, req.data ?? new Uint8Array(0)));
    server.unary(svc.forward, async (req) => {
      await this.forward(req.groupId ?? 0, { seq: req.seq ?? 0, extentId: req.extentId ?? 0, offset: req.offset ?? 0 }, req.data ?? new Uint8Array(0));
      return {};
    });
    server.clientStream(svc.appendStream, async (chunks) => {
      const { header, data } = await this.collect(chunks, appendHeaderCodec);
      return this.append(header.groupId ?? 0, data);
    });
    server.clientStream(svc.forwardStream, (chunks) => this.forwardStream(chunks));
    server.unary(svc.read, (req, ctx) => this.read(req.groupId ?? 0, req.extentId ?? 0, req.offset ?? 0, req.length ?? 0, ctx, req.callerVerifies !== true));
    server.unary(svc.readBlocks, async (req) => {
      const count = req.blockCount ?? 0;
      if (!(count > 0 && count <= MAX_BLOCKS_PER_COPY)) throw new BlockGroupBadRequestError(`readBlocks: block count must be 1..${MAX_BLOCKS_PER_COPY}`);
      const ext = this.extentOf(req.groupId ?? 0, req.extentId ?? 0);
      // Keep an answer well under the frame limit whatever the block size.
      const capped = Math.min(count, Math.max(1, Math.floor(MAX_COPY_BYTES / ext.blockSizeBytes)));
      const copy = await ext.readBlocks(req.firstBlock ?? 0, capped);
      return { data: copy.data, crcs: copy.crcs, lengths: copy.lengths, dead: copy.dead };
    });
    server.unary(svc.seal, async (req) => {
      const g = this.group(req.groupId ?? 0);
      const lengths = await g.sealLocal();
      const sl = g.meta.sealedLengths;
      return { lengths: toList(lengths), sealedLengths: sl ? toList(sl) : [], hasSealedLengths: sl !== null };
    });
    server.unary(svc.setSealedLengths, async (req) => {
      const g = this.group(req.groupId ?? 0);
      const list = req.sealedLengths ?? [];
      if (list.length > 1_000_000 || !list.every((e) => isSafe(e.extentId) && isSafe(e.length))) throw new BlockGroupBadRequestError('setSealedLengths: bad lengths');
      await g.sealLocal();
      const held = await g.setSealedLengths(toRecord(list));
      this.kickRecovery(g);
      return { lengths: toList(g.lengths()), sealedLengths: toList(held), hasSealedLengths: true };
    });
    server.unary(svc.status, async (req) => this.status(req.groupId ?? 0));
    server.unary(svc.markDead, async (req) => {
      const ext = this.extentOf(req.groupId ?? 0, req.extentId ?? 0);
      await ext.markDead(req.offset ?? 0, req.length ?? 0);
      return {};
    });
    server.unary(svc.reportBad, async (req) => {
      const ext = this.extentOf(req.groupId ?? 0, req.extentId ?? 0);
      const off = req.offset ?? 0;
      const len = req.length ?? 0;
      if (!(len > 0) || off + len > ext.length) throw new BlockGroupBadRequestError('reportBad: range outside the extent');
      this.enqueueRange(req.groupId ?? 0, ext, off, len);
      return {};
    });
    server.unary(svc.compact, async (req) => {
      const g = this.group(req.groupId ?? 0);
      return this.compactGroup(g, 0);
    });
  }

  /**
   * Gathers a chunked append: a header naming the exact total (bounded by maxAppendBytes), then
   * raw data. The chunks are kept as they arrived (views of the receive buffers, no copy); the
   * local write takes them as one pwritev and the forward sends them on as they are.
   */
  private async collect<H extends { totalLength?: number | null }>(chunks: AsyncIterable<Chunk>, headerCodec: Codec<H>): Promise<{ header: H; data: Buffer[] }> {
    let header: H | undefined;
    let total = 0;
    let at = 0;
    const data = new Pieces();
    for await (const c of chunks) {
      if (!header) {
        header = this.decodeStreamHeader(joinChunk(c), headerCodec);
        total = header.totalLength ?? 0;
        continue;
      }
      const n = chunkLength(c);
      if (at + n > total) throw new BlockGroupBadRequestError('append: chunks exceed the declared total');
      data.add(c);
      at += n;
    }
    if (!header || at !== total) throw new BlockGroupBadRequestError('append: chunks do not add up to the declared total');
    return { header, data: data.take() };
  }

  private decodeStreamHeader<H extends { totalLength?: number | null }>(c: Uint8Array, headerCodec: Codec<H>): H {
    let header: H;
    try {
      header = headerCodec.decode(c);
    } catch (err) {
      throw new BlockGroupBadRequestError('append: malformed stream header', { cause: err });
    }
    const total = header.totalLength ?? 0;
    if (!isSafe(total) || !(total > 0) || total > this.o.maxAppendBytes) throw new BlockGroupBadRequestError(`append: size must be 1..${this.o.maxAppendBytes} bytes`);
    return header;
  }

  private group(groupId: number): GroupReplica {
    const g = this.groups.get(groupId);
    if (!g) throw new BlockGroupNotFoundError(`group ${groupId} is not on this node`);
    return g;
  }

  private extentOf(groupId: number, extentId: number): ExtentFile {
    const ext = this.group(groupId).extent(extentId);
    if (!ext) throw new BlockGroupOutOfRangeError(`group ${groupId} has no extent ${extentId} on this node`);
    return ext;
  }

  async createGroup(req: { groupId?: number | null; replicas?: string[] | null; blockSizeBytes?: number | null; extentMaxBytes?: number | null }): Promise<{ replicaIndex: number }> {
    const groupId = req.groupId ?? 0;
    const replicas = req.replicas ?? [];
    if (!isSafe(groupId)) throw new BlockGroupBadRequestError('createGroup: bad group id');
    if (replicas.length === 0 || replicas.length > MAX_REPLICAS || new Set(replicas).size !== replicas.length) {
      throw new BlockGroupBadRequestError(`createGroup: need 1..${MAX_REPLICAS} distinct replica addresses`);
    }
    for (const r of replicas) {
      try {
        parseHostPort(r, 'replica');
      } catch {
        throw new BlockGroupBadRequestError(`createGroup: bad replica address ${JSON.stringify(r).slice(0, 80)}`);
      }
    }
    const blockSizeBytes = req.blockSizeBytes || this.o.defaultBlockSizeBytes;
    if (blockSizeBytes < 512 || blockSizeBytes > 4 * 1024 * 1024 || (blockSizeBytes & (blockSizeBytes - 1)) !== 0) {
      throw new BlockGroupBadRequestError('createGroup: block size must be a power of two in 512B..4MiB');
    }
    const extentMaxBytes = req.extentMaxBytes || this.o.defaultExtentMaxBytes;
    if (!isSafe(extentMaxBytes) || extentMaxBytes < blockSizeBytes || extentMaxBytes > 2 ** 40) throw new BlockGroupBadRequestError('createGroup: bad extent size');
    const existing = this.groups.get(groupId);
    if (existing) {
      // Idempotent for a retried create of the same chain.
      if (existing.meta.replicas.join(',') === replicas.join(',')) return { replicaIndex: existing.index };
      throw new BlockGroupExistsError(`group ${groupId} already exists with another chain`);
    }
    if (this.creating.has(groupId)) throw new BlockGroupExistsError(`group ${groupId} is being created`);
    if (this.groups.size + this.creating.size >= this.o.maxGroups) throw new BlockGroupLimitError(`datanode holds its limit of ${this.o.maxGroups} groups`);
    this.creating.add(groupId);
    try {
      const dir = join(await this.pickDir(), 'groups', String(groupId));
      const meta: GroupMeta = { groupId, replicas: [...replicas], blockSizeBytes, extentMaxBytes, sealed: false, sealedLengths: null };
      const g = await GroupReplica.create(dir, meta, this.o.advertise);
      this.groups.set(groupId, g);
      this.log.info({ groupId, replicas, index: g.index }, 'blockgroup: group created');
      return { replicaIndex: g.index };
    } finally {
      this.creating.delete(groupId);
    }
  }

  private async pickDir(): Promise<string> {
    let best = this.o.dataDirs[0] as string;
    let bestFree = -1;
    for (const d of this.o.dataDirs) {
      try {
        const s = await statfs(d);
        const free = s.bavail * s.bsize;
        if (free > bestFree) {
          best = d;
          bestFree = free;
        }
      } catch {
        // an unreadable dir is skipped
      }
    }
    return best;
  }

  /**
   * Primary: places, writes and forwards an append; answers once every replica has it durable.
   * The primary takes a streamed append whole before placing it (collect), so a client that
   * fails mid-stream leaves nothing placed and never seals the group; from the primary on,
   * forwards are cut-through (see forwardStream).
   */
  async append(groupId: number, data: Uint8Array | readonly Uint8Array[]): Promise<{ groupId: number; extentId: number; offset: number; length: number; crc: number }> {
    const g = this.group(groupId);
    if (!g.isPrimary) throw new BlockGroupNotPrimaryError(`group ${groupId}: this node is replica ${g.index}; append to ${g.meta.replicas[0]}`);
    const pieces = (Array.isArray(data) ? (data as readonly Uint8Array[]) : [data as Uint8Array]).map(asBuffer);
    let len = 0;
    for (const b of pieces) len += b.length;
    if (!(len > 0) || len > this.o.maxAppendBytes) throw new BlockGroupBadRequestError(`append: size must be 1..${this.o.maxAppendBytes} bytes`);
    const p = g.place(len);
    // One pass over the bytes gives both the block checksums the extent keeps and the key's
    // (end to end, checked by whole-extent reads), joined from them: a second pass cost as
    // much again, reading the append cold.
    const sums = appendCrcs(pieces, p.offset, g.meta.blockSizeBytes);
    const crc = sums.crc;
    await g.track(this.replicate(g, p, pieces, len, sums.perPiece));
    this.m?.appendBytes.inc(len);
    return { groupId, extentId: p.extentId, offset: p.offset, length: len, crc };
  }

  /** Backup: applies a (small, unary) forward in sequence order, passes it on, answers once durable downstream. */
  async forward(groupId: number, p: Placement, data: Uint8Array): Promise<void> {
    const g = this.group(groupId);
    await this.acceptForward(g, p, data.length);
    await g.track(this.replicate(g, p, [asBuffer(data)], data.length));
  }

  private async acceptForward(g: GroupReplica, p: Placement, len: number): Promise<void> {
    if (g.isPrimary) throw new BlockGroupBadRequestError(`group ${g.groupId}: the primary takes appends, not forwards`);
    if (!isSafe(p.seq) || !isSafe(p.extentId) || !isSafe(p.offset) || !(len > 0) || len > this.o.maxAppendBytes) {
      throw new BlockGroupBadRequestError('forward: bad placement or size');
    }
    try {
      await g.accept(p, len, this.o.reorderWaitMs);
    } catch (err) {
      if (!(err instanceof BlockGroupSealedError)) this.onWriteFailure(g, err);
      throw err;
    }
  }

  /**
   * Backup, cut-through: once the header is accepted in sequence, each chunk is written locally
   * and passed down the chain as it arrives, instead of after the whole append; the answer
   * still waits for local durability and the downstream answer. A forward cut off mid-stream
   * (upstream killed, bad sizes, downstream or disk failure) leaves a hole no sync can cover:
   * the extent gives up on it and the group is sealed (recovery settles what was durable
   * everywhere; nothing past the hole was acknowledged).
   */
  private async forwardStream(chunks: AsyncIterable<Chunk>): Promise<Record<string, never>> {
    const it = chunks[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done) throw new BlockGroupBadRequestError('forward: empty stream');
    const h = this.decodeStreamHeader(joinChunk(first.value), forwardHeaderCodec);
    const g = this.group(h.groupId ?? 0);
    const p: Placement = { seq: h.seq ?? 0, extentId: h.extentId ?? 0, offset: h.offset ?? 0 };
    const total = h.totalLength ?? 0;
    await this.acceptForward(g, p, total);
    await g.track(this.relay(g, p, total, it));
    return {};
  }

  private async relay(g: GroupReplica, p: Placement, total: number, it: AsyncIterator<Chunk>): Promise<void> {
    const next = g.next;
    const down = next ? this.pool.get(next).clientStream(svc.forwardStream, { deadlineMs: this.o.forwardDeadlineMs }) : undefined;
    let ext: ExtentFile | undefined;
    const writes: Promise<number>[] = [];
    let at = 0;
    let localErr: unknown;
    let downErr: unknown;
    try {
      ext = await g.ensureExtent(p.extentId);
      if (down) await down.write(forwardHeaderCodec.encode({ groupId: g.groupId, seq: p.seq, extentId: p.extentId, offset: p.offset, totalLength: total })).catch((e: unknown) => {
        downErr = e;
        throw e;
      });
      // Written and passed on per received chunk (small ones batched up to STAGE_BYTES), so
      // writes and forwards in flight stay bounded whatever chunk sizes the upstream uses.
      const pending = new Pieces();
      let written = 0;
      const emit = async (): Promise<void> => {
        const n = pending.bytes;
        const c = pending.take();
        if (c.length === 0) return;
        const w = (ext as ExtentFile).writeAt(p.offset + written, c);
        w.catch(() => undefined); // awaited below
        writes.push(w);
        written += n;
        // One chunk downstream, its pieces sent by reference.
        if (down) await down.write(c.length === 1 ? (c[0] as Buffer) : c).catch((e: unknown) => {
          downErr = e;
          throw e;
        });
      };
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        const n = chunkLength(r.value);
        if (n === 0) continue;
        if (at + n > total) throw new BlockGroupBadRequestError('forward: chunks exceed the declared total');
        pending.add(r.value);
        at += n;
        if (pending.bytes >= STAGE_BYTES) await emit();
      }
      if (at !== total) throw new BlockGroupBadRequestError('forward: chunks do not add up to the declared total');
      await emit();
    } catch (err) {
      if (downErr === undefined && down) down.cancel();
      const why = downErr !== undefined ? await down?.end().then(() => downErr, (e: unknown) => fromRemote(e)) : err;
      ext?.abandon(new BlockGroupSealedError(`group ${g.groupId}: forward seq ${p.seq} was cut off after ${at} of ${total} bytes`));
      this.onWriteFailure(g, why);
      if (why instanceof BlockGroupNoSpaceError || why instanceof BlockGroupBadRequestError) throw why;
      throw new BlockGroupSealedError(`group ${g.groupId} sealed: ${errorMessage(why)}`, { cause: why });
    }
    const local = Promise.all(writes).then(() => (ext as ExtentFile).durable(p.offset + total));
    const [l, f] = await Promise.allSettled([local, down ? down.end() : Promise.resolve({})]);
    if (l.status === 'rejected') localErr = l.reason;
    if (l.status === 'fulfilled' && f.status === 'fulfilled') return;
    this.failed(g, localErr, f.status === 'rejected' ? fromRemote(f.reason) : undefined);
  }

  private async replicate(g: GroupReplica, p: Placement, data: Buffer[], len: number, crcs?: number[][]): Promise<void> {
    const local = g.writeLocal(p, data, crcs);
    const next = g.next;
    const fwd = next ? this.sendForward(next, g.groupId, p, data, len) : Promise.resolve({});
    const [l, f] = await Promise.allSettled([local, fwd]);
    if (l.status === 'fulfilled' && f.status === 'fulfilled') return;
    this.failed(g, l.status === 'rejected' ? l.reason : undefined, f.status === 'rejected' ? fromRemote(f.reason) : undefined);
  }

  /** A local or downstream write failed: seal, and answer the error the client should see. */
  private failed(g: GroupReplica, lErr: unknown, fErr: unknown): never {
    this.onWriteFailure(g, lErr ?? fErr);
    if (lErr instanceof BlockGroupNoSpaceError) throw lErr;
    if (fErr instanceof BlockGroupNoSpaceError) throw fErr;
    throw new BlockGroupSealedError(`group ${g.groupId} sealed: ${errorMessage(lErr ?? fErr)}`, { cause: lErr ?? fErr });
  }

  private async sendForward(next: string, groupId: number, p: Placement, data: Buffer[], len: number): Promise<unknown> {
    const c = this.pool.get(next);
    const opts = { deadlineMs: this.o.forwardDeadlineMs };
    if (len <= UNARY_MAX_BYTES) {
      const one = data.length === 1 ? (data[0] as Buffer) : Buffer.concat(data, len);
      return c.call(svc.forward, { groupId, seq: p.seq, extentId: p.extentId, offset: p.offset, data: one }, opts);
    }
    const call = c.clientStream(svc.forwardStream, opts);
    try {
      await call.write(forwardHeaderCodec.encode({ groupId, seq: p.seq, extentId: p.extentId, offset: p.offset, totalLength: len }));
      // Chunks of STREAM_CHUNK_BYTES made of the pieces as received (views; each chunk goes
      // out as one frame of several pieces, none of them copied).
      let batch: Buffer[] = [];
      let inBatch = 0;
      for (const b of data) {
        for (let o = 0; o < b.length; ) {
          const n = Math.min(b.length - o, STREAM_CHUNK_BYTES - inBatch);
          batch.push(o === 0 && n === b.length ? b : b.subarray(o, o + n));
          inBatch += n;
          o += n;
          if (inBatch === STREAM_CHUNK_BYTES) {
            await call.write(batch.length === 1 ? (batch[0] as Buffer) : batch);
            batch = [];
            inBatch = 0;
          }
        }
      }
      if (inBatch > 0) await call.write(batch.length === 1 ? (batch[0] as Buffer) : batch);
    } catch (err) {
      // The call failed while sending: end() reports the real reason (often the remote's).
      await call.end(); // throws the call's real failure (often the remote's typed error)
      throw err;
    }
    return call.end();
  }

  /** Any failed write seals the group on every reachable replica (in the background). */
  private onWriteFailure(g: GroupReplica, err: unknown): void {
    if (this.sealing.has(g.groupId) || this.closed) return;
    this.sealing.add(g.groupId);
    this.log.warn({ groupId: g.groupId, err: errorMessage(err) }, 'blockgroup: write failed; sealing the group');
    sealGroup(this.pool, g.groupId, g.meta.replicas, this.o.forwardDeadlineMs)
      .then((target) => {
        if (target) this.kickRecovery(g);
      })
      .catch((e: unknown) => this.log.warn({ groupId: g.groupId, err: e }, 'blockgroup: sealing failed; recovery retries'))
      .finally(() => this.sealing.delete(g.groupId));
  }

  /**
   * Verified read. Given the RPC call's context, the bytes are read into a pooled buffer that
   * comes back to the pool once the answer is written (see BufferPool). `verify` false (the
   * caller checks the whole range against its key's crc and reports a mismatch, which
   * re-verifies and repairs here) skips the block checks: one crc pass per read instead of two.
   */
  async read(groupId: number, extentId: number, offset: number, length: number, ctx?: CallContext, verify = true): Promise<Buffer> {
    if (!isSafe(offset) || !isSafe(length) || !(length > 0) || length > this.o.maxReadBytes) {
      throw new BlockGroupBadRequestError(`read: length must be 1..${this.o.maxReadBytes} bytes`);
    }
    const ext = this.extentOf(groupId, extentId);
    // A read the read-ahead already made (see readAhead) is answered from its buffer.
    const unit = ctx ? this.takeAhead(groupId, ext, offset, length) : undefined;
    if (ctx) this.readAhead(groupId, ext, offset, length);
    if (unit) {
      const got = await unit.done;
      if (got) {
        try {
          const data = ext.finishRead(offset, length, unit.cover, got.data, verify);
          this.m?.readBytes.inc(length);
          this.m?.readAheadBytes.inc(length);
          ctx?.onResponseSent(() => this.readPool.release(got.held));
          return data;
        } catch (err) {
          this.readPool.release(got.held);
          if (!(err instanceof BlockGroupChecksumError)) throw err;
          // Checked again below, from disk, before anything is reported.
        }
      }
    }
    let held: Buffer | undefined;
    const alloc = ctx
      ? (n: number): Buffer => {
          held = this.readPool.take(n);
          return held.subarray(0, n);
        }
      : undefined;
    try {
      const data = await ext.read(offset, length, alloc, verify);
      this.m?.readBytes.inc(length);
      const h = held;
      if (h && ctx) ctx.onResponseSent(() => this.readPool.release(h));
      return data;
    } catch (err) {
      if (held) this.readPool.release(held);
      if (err instanceof BlockGroupChecksumError) {
        this.m?.checksumErrors.inc();
        this.log.warn({ groupId, extentId, offset, length, err: err.message }, 'blockgroup: checksum mismatch on read; queueing repair');
        this.enqueueRange(groupId, ext, offset, length);
      }
      throw err;
    }
  }

  /** Read-ahead state per extent being read sequentially (bounded: READ_AHEAD_EXTENTS). */
  private readonly ahead = new Map<string, AheadState>();

  private takeAhead(groupId: number, ext: ExtentFile, offset: number, length: number): AheadUnit | undefined {
    const st = this.ahead.get(`${groupId}/${ext.extentId}`);
    if (!st || st.ext !== ext) return undefined;
    const i = st.units.findIndex((u) => u.offset === offset && u.length === length);
    if (i < 0) return undefined;
    return st.units.splice(i, 1)[0];
  }

  /**
   * Reads ahead of a sequential reader: once reads of one size follow each other through an
   * extent, the next READ_AHEAD_UNITS reads of that size past the furthest one asked for are
   * read from disk into pooled buffers before they are asked for, so a read finds its bytes
   * in memory instead of waiting for the disk. The client keeps only a few reads in flight
   * (the benchmark: 4 of 1 MiB), and each cold read used to wait ~2-3 ms for its pread while the
   * disk, read by one file at a time, had room for more. Bounded: units of at most
   * READ_AHEAD_MAX_UNIT_BYTES, READ_AHEAD_UNITS per extent, READ_AHEAD_EXTENTS extents; a read
   * that is not the next in line drops the extent's units.
   */
  private readAhead(groupId: number, ext: ExtentFile, offset: number, length: number): void {
    const k = `${groupId}/${ext.extentId}`;
    let st = this.ahead.get(k);
    if (st && st.ext !== ext) {
      this.dropAhead(k, st);
      st = undefined;
    }
    const end = offset + length;
    if (length > READ_AHEAD_MAX_UNIT_BYTES) return;
    if (!st || st.unit !== length || offset < st.hi - READ_AHEAD_SLACK_UNITS * length || offset > st.hi) {
      // Not (yet) a sequential reader of this size: start over from here.
      if (st) this.dropAhead(k, st);
      if (this.ahead.size >= READ_AHEAD_EXTENTS) {
        const oldest = this.ahead.keys().next().value as string;
        this.dropAhead(oldest, this.ahead.get(oldest) as AheadState);
      }
      this.ahead.set(k, { ext, unit: length, hi: end, next: end, units: [], seen: 1 });
      return;
    }
    st.hi = Math.max(st.hi, end);
    st.seen++;
    // Units the reader has passed for good will not be asked for.
    const behind = st.hi - READ_AHEAD_SLACK_UNITS * length;
    for (let i = st.units.length - 1; i >= 0; i--) {
      const u = st.units[i] as AheadUnit;
      if (u.offset + u.length > behind) continue;
      st.units.splice(i, 1);
      void u.done.then((b) => b && this.readPool.release(b.held));
    }
    if (st.seen < 2) return;
    // Units past the furthest read asked for, within what is durable now.
    if (st.next < st.hi) st.next = st.hi;
    while (st.units.length < READ_AHEAD_UNITS && st.next + length <= ext.length) {
      const at = st.next;
      st.next += length;
      let cover;
      try {
        cover = ext.coverOf(at, length);
      } catch {
        return; // freed or past the end: no read-ahead there
      }
      // The extent asks for the size it reads into (an O_DIRECT read: whole 4 KiB units).
      let held: Buffer | undefined;
      const done = ext
        .readRaw(cover.start, cover.total, (n) => {
          held = this.readPool.take(n);
          return held.subarray(0, n);
        })
        .then(
          (data) => ({ held: held as Buffer, data }),
          () => {
            if (held) this.readPool.release(held);
            return undefined;
          },
        );
      st.units.push({ offset: at, length, cover, done });
    }
  }

  /** Forgets the read-ahead of every extent of a group (or of all groups). */
  private dropAheadOf(groupId?: number): void {
    for (const [k, st] of [...this.ahead]) if (groupId === undefined || k.startsWith(`${groupId}/`)) this.dropAhead(k, st);
  }

  /** Forgets an extent's read-ahead; buffers go back to the pool once their reads are done. */
  private dropAhead(k: string, st: AheadState): void {
    this.ahead.delete(k);
    for (const u of st.units) void u.done.then((b) => b && this.readPool.release(b.held));
    st.units = [];
  }

  private enqueueRange(groupId: number, ext: ExtentFile, offset: number, length: number): void {
    const B = ext.blockSizeBytes;
    const last = Math.floor((offset + length - 1) / B);
    for (let k = Math.floor(offset / B); k <= last && k - Math.floor(offset / B) < MAX_BLOCKS_PER_COPY; k++) {
      const key = `${groupId}/${ext.extentId}/${k}`;
      if (this.repairQueued.has(key)) continue;
      if (!this.repairQueue.offer({ groupId, extentId: ext.extentId, block: k })) break; // full: readers report again later
      this.repairQueued.add(key);
    }
    void this.runRepairs();
  }

  private async runRepairs(): Promise<void> {
    if (this.repairRunning) return;
    this.repairRunning = true;
    try {
      for (let item = this.repairQueue.shift(); item && !this.closed; item = this.repairQueue.shift()) {
        this.repairQueued.delete(`${item.groupId}/${item.extentId}/${item.block}`);
        await this.repairOne(item).catch((err: unknown) => {
          this.m?.repairs.inc({ result: 'failed' });
          this.log.warn({ ...item, err: errorMessage(err) }, 'blockgroup: repair failed');
        });
      }
    } finally {
      this.repairRunning = false;
    }
  }

  private async repairOne(item: RepairItem): Promise<void> {
    const g = this.groups.get(item.groupId);
    const ext = g?.extent(item.extentId);
    if (!g || !ext) return;
    // Reported blocks are checked first: a report from a client is a hint, not a proof.
    const ok = await ext.readBlocks(item.block, 1).then(() => true, (e: unknown) => !(e instanceof BlockGroupChecksumError));
    if (ok) return;
    let lastErr: unknown;
    for (const peer of g.meta.replicas) {
      if (peer === this.o.advertise) continue;
      try {
        const copy = await this.fetchBlocks(peer, item.groupId, item.extentId, item.block, 1);
        await ext.exclusive(() => ext.repairBlock(item.block, copy));
        this.m?.repairs.inc({ result: 'ok' });
        this.log.info({ ...item, from: peer }, 'blockgroup: block repaired from peer');
        return;
      } catch (err) {
        lastErr = err;
      }
    }
    throw lastErr ?? new BlockGroupChecksumError('no peer to repair from');
  }

  private async fetchBlocks(peer: string, groupId: number, extentId: number, first: number, count: number): Promise<BlocksCopy> {
    try {
      const r = await this.pool.get(peer).call(svc.readBlocks, { groupId, extentId, firstBlock: first, blockCount: count }, { deadlineMs: this.o.forwardDeadlineMs });
      const data = r.data ?? new Uint8Array(0);
      return { data: Buffer.from(data.buffer, data.byteOffset, data.length), crcs: r.crcs ?? [], lengths: r.lengths ?? [], dead: r.dead ?? [] };
    } catch (err) {
      throw fromRemote(err);
    }
  }

  private kickRecovery(g: GroupReplica): void {
    if (!this.closed) void this.recover(g).catch((err: unknown) => this.log.warn({ groupId: g.groupId, err: errorMessage(err) }, 'blockgroup: recovery failed; retrying later'));
  }

  private async recoverAll(): Promise<void> {
    for (const g of this.groups.values()) {
      if (this.closed) return;
      if (g.sealed && !g.caughtUp) await this.recover(g).catch((err: unknown) => this.log.debug({ groupId: g.groupId, err: errorMessage(err) }, 'blockgroup: recovery incomplete'));
    }
  }

  /** Settles a sealed group's final lengths, then truncates or catches up each extent to them. */
  private async recover(g: GroupReplica): Promise<void> {
    if (g.catchUpRunning || !g.sealed) return;
    g.catchUpRunning = true;
    try {
      if (!g.meta.sealedLengths) {
        if (!this.sealing.has(g.groupId)) {
          this.sealing.add(g.groupId);
          try {
            await sealGroup(this.pool, g.groupId, g.meta.replicas, this.o.forwardDeadlineMs);
          } finally {
            this.sealing.delete(g.groupId);
          }
        }
        if (!g.meta.sealedLengths) return;
      }
      await Promise.allSettled([...g.inflight]);
      // Sealed and with nothing in flight, no reservation can still be filled.
      for (const id of g.extentIds()) g.extent(id)?.settle();
      const target = g.meta.sealedLengths;
      for (const [idStr, want] of Object.entries(target)) {
        const ext = await g.ensureExtent(Number(idStr));
        await ext.exclusive(() => this.catchUpExtent(g, ext, want));
      }
      for (const id of g.extentIds()) {
        if (String(id) in target) continue;
        const ext = g.extent(id);
        if (ext && ext.length > 0) await ext.exclusive(() => ext.truncateTo(0));
      }
      if (g.caughtUp) this.log.info({ groupId: g.groupId, lengths: target }, 'blockgroup: sealed replica settled at its final lengths');
    } finally {
      g.catchUpRunning = false;
    }
  }

  private async catchUpExtent(g: GroupReplica, ext: ExtentFile, want: number): Promise<void> {
    if (ext.length > want) {
      await ext.truncateTo(want);
      return;
    }
    const B = ext.blockSizeBytes;
    const peers = g.meta.replicas.filter((r) => r !== this.o.advertise);
    while (ext.length < want && !this.closed) {
      const first = Math.floor(ext.length / B);
      const count = Math.min(this.o.catchUpChunkBlocks, Math.ceil(want / B) - first);
      let copy: BlocksCopy | undefined;
      for (const peer of peers) {
        try {
          const c = await this.fetchBlocks(peer, g.groupId, ext.extentId, first, count);
          if (first * B + c.data.length > ext.length) {
            copy = c;
            break;
          }
        } catch {
          // next peer
        }
      }
      if (!copy) throw new BlockGroupOutOfRangeError(`group ${g.groupId} extent ${ext.extentId}: no peer has bytes past ${ext.length} (want ${want})`);
      const before = ext.length;
      await ext.replaceFrom(first, copy);
      if (ext.length > want) await ext.truncateTo(want);
      this.m?.catchUpBytes.inc(Math.max(0, ext.length - before));
    }
  }

  /** Compacts every quiescent extent of the group whose freed share is at least minRatio. */
  async compactGroup(g: GroupReplica, minRatio: number): Promise<{ extentsCompacted: number; reclaimedBytes: number }> {
    let extentsCompacted = 0;
    let reclaimedBytes = 0;
    for (const ext of g.quiescentExtents()) {
      const len = ext.length;
      const dead = ext.deadBytes;
      if (dead === 0 || len === 0 || dead / len < minRatio) continue;
      const r = await ext.exclusive(() => ext.compact());
      extentsCompacted++;
      reclaimedBytes += r;
      this.m?.compactions.inc();
      this.m?.reclaimedBytes.inc(r);
    }
    if (extentsCompacted > 0) this.log.info({ groupId: g.groupId, extentsCompacted, reclaimedBytes }, 'blockgroup: compacted');
    return { extentsCompacted, reclaimedBytes };
  }

  /** Verifies every block of every extent; bad ones go to the repair queue (silent corruption is found without a reader). */
  private async scrubAll(): Promise<void> {
    for (const g of this.groups.values()) {
      for (const id of g.extentIds()) {
        if (this.closed) return;
        const ext = g.extent(id);
        if (!ext) continue;
        const bad = await ext.scrub();
        for (const k of bad) {
          this.m?.checksumErrors.inc();
          this.enqueueRange(g.groupId, ext, k * ext.blockSizeBytes, 1);
        }
        if (bad.length > 0) this.log.warn({ groupId: g.groupId, extentId: id, blocks: bad.slice(0, 16) }, 'blockgroup: scrub found blocks failing their checksum');
      }
    }
  }

  private async compactAll(): Promise<void> {
    if (this.compacting) return;
    this.compacting = true;
    try {
      for (const g of this.groups.values()) {
        if (this.closed) return;
        await this.compactGroup(g, this.o.compactDeadRatio).catch((err: unknown) => this.log.warn({ groupId: g.groupId, err: errorMessage(err) }, 'blockgroup: compaction failed'));
      }
    } finally {
      this.compacting = false;
    }
  }

  async status(groupId: number): Promise<GroupStatus> {
    const g = this.group(groupId);
    let allocated = 0;
    for (const id of g.extentIds()) allocated += (await g.extent(id)?.allocatedBytes()) ?? 0;
    const sl = g.meta.sealedLengths;
    return {
      groupId,
      replicas: g.meta.replicas,
      replicaIndex: g.index,
      state: g.sealed ? 'sealed' : 'active',
      lengths: toList(g.lengths()),
      sealedLengths: sl ? toList(sl) : [],
      hasSealedLengths: sl !== null,
      caughtUp: g.caughtUp,
      lengthBytes: g.lengthBytes,
      deadBytes: g.deadBytes,
      allocatedBytes: allocated,
      blockSizeBytes: g.meta.blockSizeBytes,
    };
  }

  /** fdatasync batches across open extents (with appendBytes, shows how well group commit batches). */
  syncCount(): number {
    let n = 0;
    for (const g of this.groups.values()) for (const id of g.extentIds()) n += g.extent(id)?.syncs ?? 0;
    return n;
  }

  get repairQueueLength(): number {
    return this.repairQueue.length;
  }

  groupCounts(): { active: number; sealed: number; behind: number } {
    let active = 0;
    let sealed = 0;
    let behind = 0;
    for (const g of this.groups.values()) {
      if (!g.sealed) active++;
      else {
        sealed++;
        if (!g.caughtUp) behind++;
      }
    }
    return { active, sealed, behind };
  }

  async health(): Promise<HealthReport> {
    const checks: NonNullable<HealthReport['checks']> = {};
    let status: HealthReport['status'] = 'ok';
    for (const d of this.o.dataDirs) {
      try {
        const s = await statfs(d);
        const free = s.bavail * s.bsize;
        const low = free < 64 * 1024 * 1024;
        checks[`dir:${d}`] = { status: low ? 'degraded' : 'ok', detail: `${Math.round(free / 2 ** 20)} MiB free` };
        if (low) status = 'degraded';
      } catch (err) {
        checks[`dir:${d}`] = { status: 'down', detail: errorMessage(err) };
        status = 'degraded';
      }
    }
    const c = this.groupCounts();
    checks.groups = { status: c.behind > 0 ? 'degraded' : 'ok', detail: `${c.active} active, ${c.sealed} sealed, ${c.behind} behind` };
    checks.repairs = { status: this.repairQueue.length > 0 ? 'degraded' : 'ok', detail: `${this.repairQueue.length} queued` };
    if (c.behind > 0 || this.repairQueue.length > 0) status = status === 'ok' ? 'degraded' : status;
    return { status, checks };
  }

  /** The heartbeat message for the master (groups capped at maxGroups, which bounds it). */
  async heartbeat(): Promise<HeartbeatMsg> {
    let capacity = 0;
    let available = 0;
    const seen = new Set<string>();
    for (const d of this.o.dataDirs) {
      try {
        const s = await statfs(d);
        // Two data dirs on one filesystem must not count its space twice.
        const fsKey = `${s.type}:${s.blocks}:${s.bsize}`;
        if (seen.has(fsKey)) continue;
        seen.add(fsKey);
        capacity += s.blocks * s.bsize;
        available += s.bavail * s.bsize;
      } catch {
        // reported through health
      }
    }
    const groups = [...this.groups.values()].slice(0, this.o.maxGroups).map((g) => ({
      groupId: g.groupId,
      state: g.sealed ? 'sealed' : 'active',
      lengthBytes: g.lengthBytes,
      replicaIndex: g.index,
      caughtUp: g.caughtUp,
    }));
    const h = await this.health();
    return {
      nodeAddress: this.o.advertise,
      capacityBytes: capacity,
      usedBytes: Math.max(0, capacity - available),
      availableBytes: available,
      groups,
      health: h.status,
      repairQueueLength: this.repairQueue.length,
      sentAtMs: Date.now(),
      deletedGroups: [...this.deletedUnconfirmed],
    };
  }

  // ---------------------------------------------------------------- deletion

  /** Groups deleted on the master's word, to confirm in the next heartbeat (bounded). */
  private readonly deletedUnconfirmed = new Set<number>();

  /**
   * Removes this node's replica of a group for good: closed, then its directory deleted (in
   * every data directory, also one that failed to load). Only for a group the master named
   * as deleted; idempotent (a group not here is already gone).
   */
  async deleteGroup(groupId: number): Promise<void> {
    if (!isSafe(groupId) || groupId === 0) throw new BlockGroupBadRequestError('deleteGroup: bad group id');
    const g = this.groups.get(groupId);
    if (g) {
      this.groups.delete(groupId);
      this.dropAheadOf(groupId);
      await g.close();
    }
    for (const d of this.o.dataDirs) await rm(join(d, 'groups', String(groupId)), { recursive: true, force: true });
    this.log.warn({ groupId, hosted: g !== undefined }, 'blockgroup: group of a deleted volume removed');
  }

  /**
   * The master's answer to a heartbeat: confirmations it recorded are forgotten, and the
   * groups it names as deleted are removed (to be confirmed next time). Nothing else ever
   * deletes a group: an empty or stale answer names none.
   */
  async onHeartbeatAck(ack: HeartbeatAck, sent: HeartbeatMsg): Promise<void> {
    for (const id of sent.deletedGroups ?? []) this.deletedUnconfirmed.delete(id);
    for (const id of (ack.deleteGroups ?? []).slice(0, 10_000)) {
      if (this.closed || this.deletedUnconfirmed.size >= 10_000) break; // the master names them again
      try {
        await this.deleteGroup(id);
        this.deletedUnconfirmed.add(id);
      } catch (err) {
        this.log.warn({ groupId: id, err: errorMessage(err) }, 'blockgroup: removing a deleted group failed; retried at the next heartbeat');
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.dropAheadOf();
    for (const g of this.groups.values()) await g.close();
  }
}

function makeMetrics(registry: Registry, node: DataNode) {
  const groups = new Gauge({
    name: 'blockgroup_groups', help: 'Group replicas on this node by state', labelNames: ['state'], registers: [registry],
    collect() {
      const c = node.groupCounts();
      groups.set({ state: 'active' }, c.active);
      groups.set({ state: 'sealed' }, c.sealed);
      groups.set({ state: 'behind' }, c.behind);
    },
  });
  const repairQueue = new Gauge({
    name: 'blockgroup_repair_queue', help: 'Blocks waiting for repair', registers: [registry],
    collect() {
      repairQueue.set(node.repairQueueLength);
    },
  });
  const syncs = new Gauge({
    name: 'blockgroup_syncs', help: 'fdatasync batches (group commits) of the extents open on this node', registers: [registry],
    collect() {
      syncs.set(node.syncCount());
    },
  });
  const written = new Gauge({
    name: 'blockgroup_written_bytes', help: 'Bytes extents wrote to disk by path: O_DIRECT as received, O_DIRECT after a copy to align them, or the page cache', labelNames: ['path'], registers: [registry],
    collect() {
      const w = writePathBytes();
      written.set({ path: 'direct' }, w.direct);
      written.set({ path: 'direct_copied' }, w.directCopied);
      written.set({ path: 'buffered' }, w.buffered);
    },
  });
  return {
    groups,
    repairQueue,
    syncs,
    written,
    appendBytes: new Counter({ name: 'blockgroup_append_bytes_total', help: 'Bytes appended as primary and acknowledged', registers: [registry] }),
    readBytes: new Counter({ name: 'blockgroup_read_bytes_total', help: 'Bytes served by verified reads', registers: [registry] }),
    readAheadBytes: new Counter({ name: 'blockgroup_read_ahead_bytes_total', help: 'Bytes of reads answered from the read-ahead of a sequential reader', registers: [registry] }),
    checksumErrors: new Counter({ name: 'blockgroup_checksum_errors_total', help: 'Reads that found a block not matching its checksum', registers: [registry] }),
    repairs: new Counter({ name: 'blockgroup_repairs_total', help: 'Block repairs from a peer', labelNames: ['result'], registers: [registry] }),
    catchUpBytes: new Counter({ name: 'blockgroup_catchup_bytes_total', help: 'Bytes copied from peers to catch up by length', registers: [registry] }),
    compactions: new Counter({ name: 'blockgroup_compactions_total', help: 'Extents compacted', registers: [registry] }),
    reclaimedBytes: new Counter({ name: 'blockgroup_reclaimed_bytes_total', help: 'Disk bytes returned by compaction', registers: [registry] }),
  };
}
