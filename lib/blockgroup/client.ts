// BlockGroupClient: appends to block groups and reads extents back, verified. Writes go to the
// current group's primary; when the group is sealed or its primary is gone, the client seals
// it on the replicas it can reach and continues on the next group (from the list it was given,
// then from the newGroup() callback), resending only the append that was not acknowledged.
// Reads try each replica in chain order; a replica that answers bad bytes is reported for repair.
import { LruMap, silentLogger, type Logger } from '../common/index.js';
import { RpcPool, RpcRemoteError } from '../rpc/index.js';
import { BufferPool } from './bufferpool.js';
import { crc32c } from './crc32c.js';
import {
  BlockGroupBadRequestError, BlockGroupChecksumError, BlockGroupNoSpaceError, BlockGroupNoWritableGroupError,
  BlockGroupNotFoundError, BlockGroupUnavailableError, fromRemote,
} from './errors.js';
import { sealGroup } from './seal.js';
import { appendHeaderCodec, blockGroupService as svc, STREAM_CHUNK_BYTES, UNARY_MAX_BYTES, type ExtentKeyMsg, type GroupStatus } from './service.js';

export interface GroupRef {
  groupId: number;
  /** Replica chain: the primary first. */
  replicas: string[];
}

export interface ExtentKey {
  groupId: number;
  extentId: number;
  offset: number;
  length: number;
  /** crc32c of the extent's bytes. */
  crc: number;
}

/** A read into a pooled buffer (BlockGroupClient.readPooled): hand it back with release(). */
export interface PooledRead {
  data: Buffer;
  release(): void;
}

export interface BlockGroupClientOptions {
  /** Groups to write to, in order; the client moves to the next when one is sealed. */
  groups?: GroupRef[];
  /** Called for a fresh group when the list runs out (the master's job later). */
  newGroup?: () => Promise<GroupRef>;
  /** Finds the chain of a group the client has not seen (for reads of old keys). */
  locate?: (groupId: number) => Promise<GroupRef | undefined>;
  pool?: RpcPool;
  token?: string;
  deadlineMs?: number;
  /** Groups one append may try before giving up. */
  maxGroupsPerAppend?: number;
  maxKnownGroups?: number;
  logger?: Logger;
}

export interface CreateGroupOptions {
  blockSizeBytes?: number;
  extentMaxBytes?: number;
  deadlineMs?: number;
}

/**
 * Reads larger than this are split into pipelined parts of this size. A read of at most one
 * part is answered as the receive buffer itself (no copy on this side); larger ones are joined.
 * 1 MiB keeps a part's frame small beside the 8 MiB limit while making per-call costs
 * (a frame, a promise, a pread, a syscall per side) a small share of the bytes.
 */
const READ_PART_BYTES = 1024 * 1024;
/**
 * Reads within one stripe of this size of an extent start at the same replica. As large as the
 * default extent: each time a sequential reader moves on to another replica, kernel readahead on
 * the one it left has read up to its window (8 MiB here) past the stripe end for nothing; with
 * 32 MiB stripes that was ~20-25% more disk reading than data read, at 256 MiB it is at most
 * ~3%. Extents and groups still spread readers over the chain.
 */
const READ_STRIPE_BYTES = 256 * 1024 * 1024;

function isUnreachable(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'RPC_UNAVAILABLE' || code === 'RPC_DEADLINE_EXCEEDED' || code === 'RPC_CANCELLED' || code === 'RPC_CLOSED';
}

export class BlockGroupClient {
  private readonly pool: RpcPool;
  private readonly ownPool: boolean;
  private readonly pending: GroupRef[];
  private current: GroupRef | undefined;
  private switching: Promise<GroupRef> | undefined;
  private readonly known: LruMap<number, GroupRef>;
  private readonly deadlineMs: number;
  private readonly log: Logger;
  /** Buffers of readPooled (answers of up to 4 MiB; at most 32 MiB kept idle). */
  private readonly readPool = new BufferPool(64 * 1024, 4 * 1024 * 1024, 32 * 1024 * 1024);

  constructor(private readonly opts: BlockGroupClientOptions = {}) {
    this.ownPool = !opts.pool;
    this.pool = opts.pool ?? new RpcPool({ ...(opts.token ? { token: opts.token } : {}), backoffBaseMs: 20, backoffMaxMs: 500, connectTimeoutMs: 2000 });
    this.pending = [...(opts.groups ?? [])];
    this.known = new LruMap(opts.maxKnownGroups ?? 100_000);
    for (const g of this.pending) this.known.set(g.groupId, g);
    this.deadlineMs = opts.deadlineMs ?? 15_000;
    this.log = opts.logger ?? silentLogger;
  }

  /** Creates a group's replica on every node of the chain (idempotent per node). */
  async createGroup(ref: GroupRef, o: CreateGroupOptions = {}): Promise<GroupRef> {
    await Promise.all(
      ref.replicas.map((a) =>
        this.pool
          .get(a)
          .call(svc.createGroup, { groupId: ref.groupId, replicas: ref.replicas, blockSizeBytes: o.blockSizeBytes ?? 0, extentMaxBytes: o.extentMaxBytes ?? 0 }, { deadlineMs: o.deadlineMs ?? this.deadlineMs })
          .catch((err: unknown) => {
            throw fromRemote(err);
          }),
      ),
    );
    this.known.set(ref.groupId, ref);
    return ref;
  }

  /** Adds a group to write to after the current one. */
  addGroup(ref: GroupRef): void {
    this.pending.push(ref);
    this.known.set(ref.groupId, ref);
  }

  get currentGroup(): GroupRef | undefined {
    return this.current;
  }

  private async writable(stale: GroupRef | undefined): Promise<GroupRef> {
    if (this.current && this.current !== stale) return this.current;
    // Concurrent appends that saw the same group fail share one switch.
    if (!this.switching) {
      this.switching = (async () => {
        const next = this.pending.shift() ?? (this.opts.newGroup ? await this.opts.newGroup() : undefined);
        if (!next) throw new BlockGroupNoWritableGroupError('no writable group left and no newGroup callback');
        this.known.set(next.groupId, next);
        this.current = next;
        return next;
      })().finally(() => (this.switching = undefined));
    }
    return this.switching;
  }

  /**
   * Appends `data` as one extent and answers its key once every replica has it durable.
   * Bytes of concurrent appends never interleave: each is placed whole at its own offset.
   */
  async append(data: Uint8Array): Promise<ExtentKey> {
    if (data.length === 0) throw new BlockGroupBadRequestError('append: empty data');
    let g = this.current ?? (await this.writable(undefined));
    const maxTries = this.opts.maxGroupsPerAppend ?? 8;
    let lastErr: unknown;
    for (let i = 0; i < maxTries; i++) {
      const primary = g.replicas[0] as string;
      try {
        const k = await this.sendAppend(primary, g.groupId, data);
        return { groupId: k.groupId ?? g.groupId, extentId: k.extentId ?? 0, offset: k.offset ?? 0, length: k.length ?? 0, crc: k.crc ?? 0 };
      } catch (raw) {
        const err = fromRemote(raw);
        lastErr = err;
        if (err instanceof BlockGroupNoSpaceError || err instanceof BlockGroupBadRequestError) {
          // The primary seals the group itself; the caller decides what a full disk means.
          if (this.current === g) this.current = undefined;
          throw err;
        }
        if (isUnreachable(err) || err instanceof BlockGroupNotFoundError) {
          // The primary is gone (or lost the group): seal on the replicas left, in the background
          // of the retry, so their final lengths are settled and catch-up can begin.
          this.log.warn({ groupId: g.groupId, err: (err as Error).message }, 'blockgroup client: primary unreachable; sealing group');
          void sealGroup(this.pool, g.groupId, g.replicas, this.deadlineMs).catch(() => undefined);
        } else if (!(err instanceof RpcRemoteError) && !(err as { code?: string }).code?.startsWith('BLOCKGROUP_')) {
          throw err;
        }
        g = await this.writable(g);
      }
    }
    throw lastErr instanceof Error ? lastErr : new BlockGroupNoWritableGroupError('append failed on every group tried');
  }

  private async sendAppend(primary: string, groupId: number, data: Uint8Array): Promise<ExtentKeyMsg> {
    const c = this.pool.get(primary);
    const opts = { deadlineMs: this.deadlineMs };
    if (data.length <= UNARY_MAX_BYTES) return c.call(svc.append, { groupId, data }, opts);
    // Large appends stream in chunks (pipelined, with flow control, no multi-MiB frame); the primary
    // places the append only once every chunk has arrived, so it is still atomic.
    const call = c.clientStream(svc.appendStream, opts);
    try {
      await call.write(appendHeaderCodec.encode({ groupId, totalLength: data.length }));
      for (let o = 0; o < data.length; o += STREAM_CHUNK_BYTES) await call.write(data.subarray(o, Math.min(data.length, o + STREAM_CHUNK_BYTES)));
    } catch (err) {
      await call.end(); // throws the call's real failure if there is one
      throw err;
    }
    return call.end();
  }

  private async chainOf(groupId: number): Promise<GroupRef> {
    const g = this.known.get(groupId) ?? (this.opts.locate ? await this.opts.locate(groupId) : undefined);
    if (!g) throw new BlockGroupNotFoundError(`group ${groupId} is unknown to this client`);
    this.known.set(groupId, g);
    return g;
  }

  /** Reads a whole extent, verified against the key's checksum, from the first healthy replica. */
  async read(key: ExtentKey): Promise<Buffer> {
    return this.readRange(key, 0, key.length);
  }

  /** Reads part of an extent (the datanode verifies block checksums; whole reads also check the key's). */
  async readRange(key: ExtentKey, offset: number, length: number): Promise<Buffer> {
    return this.readRangeInto(key, offset, length, undefined);
  }

  /**
   * read(), into a buffer of this client's pool: call release() once done with `data` (it is
   * then reused; touching it afterwards reads someone else's bytes). For readers that copy what
   * they read elsewhere (a mount's reply, a cache) or only look at it: a fresh MiB-sized buffer
   * per read drives V8's full collections (external memory pressure), which were ~40% of a
   * sequential reader's CPU here. release() more than once is harmless; a dropped PooledRead
   * just costs the pool that buffer.
   */
  async readPooled(key: ExtentKey, offset = 0, length = key.length): Promise<PooledRead> {
    const held: Buffer[] = [];
    const release = (): void => {
      for (const b of held.splice(0)) this.readPool.release(b);
    };
    try {
      const data = await this.readRangeInto(key, offset, length, held);
      return { data, release };
    } catch (err) {
      release();
      throw err;
    }
  }

  private async readRangeInto(key: ExtentKey, offset: number, length: number, held: Buffer[] | undefined): Promise<Buffer> {
    if (offset < 0 || length <= 0 || offset + length > key.length) throw new BlockGroupBadRequestError('readRange: range outside the extent');
    const errors: string[] = [];
    let lastErr: unknown;
    for (const addr of await this.readOrder(key, offset)) {
      try {
        return await this.readReplica(addr, key, offset, length, held);
      } catch (err) {
        // What a failed try took goes back (its call is over: rpc diverts a late answer).
        if (held) for (const b of held.splice(0)) this.readPool.release(b);
        lastErr = err;
        errors.push(`${addr}: ${(err as Error).message}`);
        if (err instanceof BlockGroupChecksumError) this.reportBad(addr, key, offset, length);
      }
    }
    throw new BlockGroupUnavailableError(`no replica of group ${key.groupId} could serve the read: ${errors.join('; ')}`, { cause: lastErr });
  }

  /**
   * The replicas readRange(key, offset, ...) tries, in order. The first depends on where the
   * bytes are: reads of one 256 MiB stripe of an extent go to one replica, so a sequential
   * reader reads each replica's file sequentially (kernel readahead works; rotating per read
   * made every replica see a strided pattern), while stripes, extents and groups spread over
   * the chain. The rest are fallbacks, in chain order.
   */
  async readOrder(key: ExtentKey, offset = 0): Promise<string[]> {
    const g = await this.chainOf(key.groupId);
    const n = g.replicas.length;
    const stripe = Math.floor((key.offset + offset) / READ_STRIPE_BYTES);
    const first = (key.groupId * 31 + key.extentId * 7 + stripe) % n;
    return Array.from({ length: n }, (_, i) => g.replicas[(first + i) % n] as string);
  }

  /** Reads from one named replica (tests and tools); verified like read(), and reported for repair when it answers bad bytes. */
  async readFrom(address: string, key: ExtentKey, offset = 0, length = key.length): Promise<Buffer> {
    try {
      return await this.readReplica(address, key, offset, length);
    } catch (err) {
      if (err instanceof BlockGroupChecksumError) this.reportBad(address, key, offset, length);
      throw err;
    }
  }

  /** Asks a replica to re-verify (and repair from a peer) a range it answered wrong; a hint, in the background. */
  private reportBad(address: string, key: ExtentKey, offset: number, length: number): void {
    void this.pool
      .get(address)
      .call(svc.reportBad, { groupId: key.groupId, extentId: key.extentId, offset: key.offset + offset, length }, { deadlineMs: this.deadlineMs })
      .catch(() => undefined);
  }

  /** `held`: read into buffers of readPool, each pushed here for the caller to release. */
  private async readReplica(address: string, key: ExtentKey, offset: number, length: number, held?: Buffer[]): Promise<Buffer> {
    const c = this.pool.get(address);
    // A whole extent with a key crc is checked below, end to end; the replica then skips its
    // own block checks (one crc pass per read instead of two) and relies on the report a
    // mismatch here sends. Anything else the replica verifies block by block.
    const whole = key.crc !== 0 && offset === 0 && length === key.length;
    const opts = held
      ? {
          deadlineMs: this.deadlineMs,
          bodyBuffer: (n: number): Buffer => {
            const b = this.readPool.take(n);
            held.push(b);
            return b.subarray(0, n);
          },
        }
      : { deadlineMs: this.deadlineMs };
    const part = (off: number, len: number): Promise<Uint8Array> =>
      c.call(svc.read, { groupId: key.groupId, extentId: key.extentId, offset: key.offset + off, length: len, callerVerifies: whole }, opts).then(
        (d) => {
          if (d.length !== len) throw new BlockGroupChecksumError(`replica ${address} answered ${d.length} bytes, wanted ${len}`);
          return d;
        },
        (err: unknown) => {
          throw fromRemote(err);
        },
      );
    let buf: Buffer;
    if (length <= READ_PART_BYTES) {
      const d = await part(offset, length);
      buf = Buffer.from(d.buffer, d.byteOffset, d.length);
    } else {
      // Large reads go as pipelined parts: the replica reads (and verifies) one part while the
      // previous one is on the wire, and no single answer needs a multi-MiB frame.
      const parts: Promise<Uint8Array>[] = [];
      for (let o = 0; o < length; o += READ_PART_BYTES) parts.push(part(offset + o, Math.min(READ_PART_BYTES, length - o)));
      // Every part settles before a failure is thrown: a pooled part still arriving must not
      // land in a buffer the caller has already given back.
      const settled = await Promise.allSettled(parts);
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const got = settled.map((r) => (r as PromiseFulfilledResult<Uint8Array>).value);
      // Joined into one buffer; pooled reads take it from the pool and give the parts' back.
      const partBufs = held ? held.splice(0) : [];
      if (held) {
        const joined = this.readPool.take(length);
        held.push(joined);
        buf = joined.subarray(0, length);
      } else buf = Buffer.allocUnsafe(length);
      let at = 0;
      for (const d of got) {
        buf.set(d, at);
        at += d.length;
      }
      for (const b of partBufs) this.readPool.release(b);
    }
    // End to end: a whole-extent read must match the checksum taken when it was written. A key
    // whose crc is 0 carries none (a piece cut or merged by the metadata's extent map); the
    // per-block checksums the replica verified hold for it and for partial reads.
    if (whole && crc32c(buf) !== key.crc) {
      throw new BlockGroupChecksumError(`replica ${address}: extent ${key.groupId}/${key.extentId}@${key.offset} does not match its key checksum`);
    }
    return buf;
  }

  /** Frees an extent on every replica it can reach; the compactor reclaims the space. */
  async free(key: ExtentKey): Promise<void> {
    const g = await this.chainOf(key.groupId);
    const r = await Promise.allSettled(
      g.replicas.map((a) => this.pool.get(a).call(svc.markDead, { groupId: key.groupId, extentId: key.extentId, offset: key.offset, length: key.length }, { deadlineMs: this.deadlineMs })),
    );
    const failed = r.filter((x) => x.status === 'rejected');
    if (failed.length === r.length) throw fromRemote((failed[0] as PromiseRejectedResult).reason);
  }

  /** Seals a group on every reachable replica; answers the final extent lengths. */
  async seal(ref: GroupRef): Promise<Record<string, number> | undefined> {
    if (this.current?.groupId === ref.groupId) this.current = undefined;
    return sealGroup(this.pool, ref.groupId, ref.replicas, this.deadlineMs);
  }

  async status(address: string, groupId: number): Promise<GroupStatus> {
    try {
      return await this.pool.get(address).call(svc.status, { groupId }, { deadlineMs: this.deadlineMs });
    } catch (err) {
      throw fromRemote(err);
    }
  }

  async compact(address: string, groupId: number): Promise<{ extentsCompacted: number; reclaimedBytes: number }> {
    try {
      const r = await this.pool.get(address).call(svc.compact, { groupId }, { deadlineMs: this.deadlineMs * 4 });
      return { extentsCompacted: r.extentsCompacted ?? 0, reclaimedBytes: r.reclaimedBytes ?? 0 };
    } catch (err) {
      throw fromRemote(err);
    }
  }

  async close(): Promise<void> {
    if (this.ownPool) await this.pool.close();
  }
}
