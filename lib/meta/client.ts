// MetaClient: the metadata half of a mounted volume, used by lib/fs. It routes each operation
// to the partition that owns the ino (dentry operations go to the parent's partition), caches
// the partition map and refreshes it when a partition is unknown or full, and allocates inos by
// leasing a block from a partition and counting up locally (one raft round per create), or,
// in 'cursor' mode, lets the partition pick from its cursor.
import { randomBytes } from 'node:crypto';
import { RpcPool, RpcRemoteError, RpcUnavailableError, RpcDeadlineError } from '../rpc/index.js';
import { CommandFailedError, NoQuorumError, TableDeadlineError, tableService, type TableGroup } from '../table/index.js';
import { containerstack } from '../../proto/gen/meta.js';
import { containerstack as tablepb } from '../../proto/gen/table.js';
import { MetaPosixError, MetaNoPartitionError, MetaUnavailableError, MetaLimitError, isPosixCode } from './errors.js';
import { metaService, readOnGroup } from './service.js';
import {
  META_DOMAIN, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, SETATTR_SIZE, SETATTR_CTIME, RENAME_ANCESTORS_CHECKED, NEEDS_RENAME_LOCK, ROOT_INO, DEPTH_MAX,
  type Inode, type ExtentKey, type MetaRequest, type MetaResponse, type PartitionInfo, type Timespec,
} from './partition.js';
import { crossRename, crossLink, crossCreate, crossUnlink, crossLocalRename, recoverIntents, type CrossContext, type Side } from './crosspart.js';

const pb = containerstack.meta;

/** One partition as the cluster map describes it. */
export interface PartitionRoute {
  groupId: number;
  start: number;
  end: number;
  /** `host:port` of its members (any subset works: leader hints lead to the rest). */
  members: string[];
}

/** Runs commands and reads on one partition (over the network, or in process for tests). */
export interface PartitionBackend {
  exec(req: MetaRequest): Promise<MetaResponse>;
  read(req: MetaRequest): Promise<MetaResponse>;
  close(): Promise<void>;
}

/** Maps a failure from the table or the wire onto the error a caller of MetaClient sees. */
export function mapError(err: unknown): unknown {
  if (err instanceof CommandFailedError && isPosixCode(err.domainCode)) return new MetaPosixError(err.domainCode, err.message.replace(/^((table|meta): )+/, ''), { cause: err });
  if (err instanceof RpcRemoteError && isPosixCode(err.remoteCode)) return new MetaPosixError(err.remoteCode, err.remoteMessage.replace(/^((table|meta): )+/, ''), { cause: err });
  if (err instanceof RpcRemoteError && err.remoteCode === 'TABLE_NO_SUCH_GROUP') return new MetaNoPartitionError(err.remoteMessage, { cause: err });
  if (err instanceof NoQuorumError || err instanceof TableDeadlineError) return new MetaUnavailableError(err.message, { cause: err });
  return err;
}

/** In-process backend over a TableGroup (tests, and a metanode serving itself). */
export class LocalPartition implements PartitionBackend {
  constructor(private readonly group: () => TableGroup) {}
  async exec(req: MetaRequest): Promise<MetaResponse> {
    try {
      const r = await this.group().propose({ domain: META_DOMAIN, args: pb.MetaRequest.encode(req).finish() });
      return pb.MetaResponse.decode(r.domainResult ?? new Uint8Array(0));
    } catch (err) {
      throw mapError(err);
    }
  }
  async read(req: MetaRequest): Promise<MetaResponse> {
    try {
      return await readOnGroup(this.group(), req);
    } catch (err) {
      throw mapError(err);
    }
  }
  async close(): Promise<void> {}
}

/** Network backend: commands through the table service (idempotent retries), reads through meta.Read. */
export class RemotePartition implements PartitionBackend {
  private readonly endpoints: string[];
  private leader: string | undefined;
  private readonly sessionId: string;
  private seq = 0;

  constructor(
    readonly route: PartitionRoute,
    private readonly pool: RpcPool,
    clientId: string,
    private readonly deadlineMs: number,
  ) {
    this.endpoints = [...route.members];
    // A table session is (client id, seq), seq counting from 1 in this object: every backend
    // needs its own id, or a new one would be answered with an old one's results.
    this.sessionId = `${clientId}-${randomBytes(6).toString('hex')}`;
  }

  /**
   * A command through the table service's Propose, to the leader. Every retry carries the same
   * (session, seq), so it is applied at most once — also when a member that does not host the
   * partition (yet: a metanode just restarted or just assigned) is asked in between, which the
   * table's own client treats as final.
   */
  async exec(req: MetaRequest): Promise<MetaResponse> {
    const deadline = performance.now() + this.deadlineMs;
    const args = pb.MetaRequest.encode(req).finish();
    for (let round = 1; ; round++) {
      const command = { clientId: this.sessionId, seq: ++this.seq, domain: META_DOMAIN, args };
      const res = await this.onLeader(deadline, (addr, left) => this.pool.get(addr).call(tableService.propose, { groupId: this.route.groupId, command }, { deadlineMs: left }));
      const r = res.result ?? {};
      if (!r.errorCode) return pb.MetaResponse.decode(r.domainResult ?? new Uint8Array(0));
      // A partition the master just added may not be initialized yet: that failure is
      // deterministic (the command did nothing), so a new command is safe.
      if (r.errorCode === 'META_UNINITIALIZED' && performance.now() < deadline) {
        await new Promise((res2) => setTimeout(res2, Math.min(200, 20 * round)));
        continue;
      }
      throw mapError(new CommandFailedError(r.errorCode, r.errorMessage || r.errorCode));
    }
  }

  async read(req: MetaRequest): Promise<MetaResponse> {
    const msg = { ...req, groupId: this.route.groupId };
    return this.onLeader(performance.now() + this.deadlineMs, (addr, left) => this.pool.get(addr).call(metaService.read, msg, { deadlineMs: left }));
  }

  /** Runs `fn` on the leader: follows hints, tries the next member when one is down or does not host the group. */
  private async onLeader<T>(deadline: number, fn: (addr: string, leftMs: number) => Promise<T>): Promise<T> {
    let attempt = 0;
    let next = this.leader ?? (this.endpoints[0] as string);
    let lastErr: unknown;
    while (performance.now() < deadline) {
      try {
        const r = await fn(next, Math.max(1, deadline - performance.now()));
        this.leader = next;
        return r;
      } catch (err) {
        lastErr = err;
        if (err instanceof RpcRemoteError && err.remoteCode === 'TABLE_NOT_LEADER') {
          const hint = err.details ? tablepb.table.LeaderHint.decode(err.details) : undefined;
          if (hint?.leaderAddress && hint.leaderAddress !== next) {
            next = hint.leaderAddress;
            if (!this.endpoints.includes(next) && this.endpoints.length < 16) this.endpoints.push(next);
            continue;
          }
        } else if (!(err instanceof RpcUnavailableError || err instanceof RpcDeadlineError || (err instanceof RpcRemoteError && RETRYABLE.has(err.remoteCode)))) {
          throw mapError(err);
        }
        this.leader = undefined;
        attempt++;
        next = this.endpoints[attempt % this.endpoints.length] as string;
        await new Promise((r) => setTimeout(r, Math.min(200, 10 * attempt)));
      }
    }
    throw new MetaUnavailableError(`partition ${this.route.groupId}: no leader answered within ${this.deadlineMs}ms (last: ${(lastErr as Error | undefined)?.message ?? 'none'})`, { cause: lastErr });
  }

  async close(): Promise<void> {}
}

/** Remote failures after which another member (or a later try) may succeed. */
const RETRYABLE = new Set(['TABLE_DEADLINE_EXCEEDED', 'TABLE_NO_QUORUM', 'TABLE_CLOSED', 'TABLE_NO_SUCH_GROUP', 'META_UNINITIALIZED']);

/** Thrown inside rename: the move needs the volume's rename lock (the partition said so, or the client knows). */
class NeedsRenameLock extends Error {}
function needsRenameLock(err: unknown): boolean {
  return err instanceof NeedsRenameLock || (err instanceof CommandFailedError && err.domainCode === NEEDS_RENAME_LOCK);
}

/** While the volume is known full, how often a write that grows a file asks whether it still is. */
const FULL_RECHECK_MS = 1000;

/** Tries a create makes while partitions run out of inos (about 200ms apart). */
const ENOSPC_RETRIES = 15;

export interface MetaClientOptions {
  /** The partition map; called again when it looks stale (an ino no partition owns, ENOSPC). */
  routes: () => Promise<PartitionRoute[]>;
  /** How to reach a partition; default RemotePartition over `pool`. */
  backend?: (route: PartitionRoute) => PartitionBackend;
  pool?: RpcPool;
  clientId?: string;
  deadlineMs?: number;
  /** 'lease' (default): lease blocks of `inoBlock` inos and count up locally; 'cursor': the partition picks. */
  inoMode?: 'lease' | 'cursor';
  inoBlock?: number;
  /** Open-handle lease: an orphan held only by this client is reclaimed this long after it stops renewing. */
  leaseMs?: number;
  /** The volume's directory-rename lock is leased this long (a crashed holder blocks directory moves until then). */
  renameLockMs?: number;
  now?: () => number;
  maxOpenHandles?: number;
  /** Told of extents the partition stopped referencing (unlinked or reclaimed files): free them on their datanodes. */
  onFreed?: (keys: ExtentKey[]) => void;
}

/**
 * Open tracking on one partition (see openScope and the README, "Orphans and leases"): this
 * client's tracked lease there, the newest raft index a renewal answered, and the opens in
 * progress with the index known when each first touched the partition.
 */
interface LeaseState {
  groupId: number;
  registered: Promise<void> | undefined;
  known: number;
  /** Open scopes in progress -> `known` when they first touched this partition. */
  inflight: Map<number, number>;
  /** Inodes the partition holds for this client through its listings (orphans). */
  leaseHeld: Set<number>;
  renewing: Promise<void> | undefined;
  again: boolean;
  /** Client clock when the last successful renewal was sent. */
  renewedAt: number;
  /** An unlink that told the partition this client holds its inode nowhere: opens wait for it. */
  exemptInFlight: Promise<unknown> | undefined;
}

/** An open in progress (Volume.open): see MetaClient.openScope. */
export interface OpenScope {
  readonly id: number;
}

interface Part {
  route: PartitionRoute;
  backend: PartitionBackend;
  // Leased inos not used yet: [next, end), plus inos returned by failed creates.
  next: number;
  end: number;
  spare: number[];
  /** The partition reported nearly full (the master adds partitions on that signal). */
  full: boolean;
  /** The partition has no inos left: new inodes go elsewhere. */
  exhausted: boolean;
}

export interface Attr extends Inode {}
export type DirEntry = { name: Buffer; ino: number; type: number };

export function timespecOf(ms: number): Timespec {
  // Sub-millisecond digits from the monotonic clock keep times of close operations ordered.
  const frac = Math.floor((performance.now() % 1) * 1e6);
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 + frac };
}

export class MetaClient {
  readonly clientId: string;
  private parts: Part[] = [];
  private readonly pool: RpcPool;
  private readonly ownsPool: boolean;
  private readonly o: Required<Omit<MetaClientOptions, 'backend' | 'pool' | 'clientId' | 'routes' | 'onFreed'>>;
  private refreshing: Promise<void> | undefined;
  private readonly open = new Map<number, number>(); // ino -> handles; invariant: size <= maxOpenHandles
  private leaseTimer: NodeJS.Timeout | undefined;
  /** Tracked leases by partition group id (one per partition this client opened files in). */
  private readonly leases = new Map<number, LeaseState>();
  /** Inodes held open by this client (local only: listed in tracked renewals). invariant: size <= maxOpenHandles */
  private readonly held = new Map<number, number>();
  private nextScope = 1;
  private closed = false;
  private closing = false;
  onFreed: ((keys: ExtentKey[]) => void) | undefined;
  /** Told of directory inodes a namespace change answered (the parent after a create, unlink, rename, ...). */
  onParents: ((inodes: Inode[]) => void) | undefined;

  constructor(private readonly opts: MetaClientOptions) {
    this.clientId = opts.clientId ?? `m-${randomBytes(8).toString('hex')}`;
    this.ownsPool = !opts.pool;
    this.pool = opts.pool ?? new RpcPool({ backoffBaseMs: 20, backoffMaxMs: 500 });
    this.o = {
      deadlineMs: opts.deadlineMs ?? 10_000,
      inoMode: opts.inoMode ?? 'lease',
      inoBlock: Math.max(1, Math.min(opts.inoBlock ?? 1024, 65_536)),
      leaseMs: opts.leaseMs ?? 30_000,
      renameLockMs: opts.renameLockMs ?? 10_000,
      now: opts.now ?? Date.now,
      maxOpenHandles: opts.maxOpenHandles ?? 100_000,
    };
    this.onFreed = opts.onFreed;
  }

  /** Fetches the partition map (again). */
  async refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    this.refreshing = (async () => {
      const routes = await this.opts.routes();
      const old = new Map(this.parts.map((p) => [p.route.groupId, p]));
      const parts: Part[] = [];
      for (const r of [...routes].sort((a, b) => a.start - b.start)) {
          const prev = old.get(r.groupId);
        // Same members in another order (the master lists the last leader first): keep the
        // backend, its leader and its leased inos.
        if (prev && [...prev.route.members].sort().join() === [...r.members].sort().join() && prev.route.end === r.end) {
          old.delete(r.groupId);
          parts.push(prev);
          continue;
        }
        const backend = this.opts.backend ? this.opts.backend(r) : new RemotePartition(r, this.pool, this.clientId, this.o.deadlineMs);
        parts.push({ route: r, backend, next: prev?.next ?? 0, end: prev?.end ?? 0, spare: prev?.spare ?? [], full: false, exhausted: false });
      }
      this.parts = parts;
      for (const p of old.values()) await p.backend.close();
    })().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  get partitions(): readonly PartitionRoute[] {
    return this.parts.map((p) => p.route);
  }

  private async partOf(ino: number): Promise<Part> {
    if (this.parts.length === 0) await this.refresh();
    let p = this.find(ino);
    if (!p) {
      await this.refresh();
      p = this.find(ino);
    }
    if (!p) throw new MetaNoPartitionError(`no partition owns ino ${ino}`);
    return p;
  }

  private find(ino: number): Part | undefined {
    // Few partitions per volume: binary search over sorted starts.
    let lo = 0;
    let hi = this.parts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const p = this.parts[mid] as Part;
      if (ino < p.route.start) hi = mid - 1;
      else if (ino >= p.route.end) lo = mid + 1;
      else return p;
    }
    return undefined;
  }

  private now(): Timespec {
    return timespecOf(this.o.now());
  }

  private async exec(ino: number, req: MetaRequest): Promise<MetaResponse> {
    const p = await this.partOf(ino);
    return p.backend.exec({ ...req, now: this.now() });
  }

  private async read(ino: number, req: MetaRequest): Promise<MetaResponse> {
    const p = await this.partOf(ino);
    return p.backend.read(req);
  }

  // ---------------------------------------------------------------- ino allocation

  /** An ino for a new child of `parent`: from the parent's partition when it has room. */
  private async takeIno(p: Part): Promise<number> {
    if (this.o.inoMode === 'cursor') {
      if (p.exhausted) throw new MetaPosixError('ENOSPC', `partition ${p.route.groupId} has no inos left`);
      return 0;
    }
    const s = p.spare.pop();
    if (s !== undefined) return s;
    if (p.next >= p.end) {
      const r = await p.backend.exec({ op: 'alloc', count: this.o.inoBlock, now: this.now() });
      p.next = r.first ?? 0;
      p.end = (r.first ?? 0) + (r.count ?? 0);
      if (r.nearlyFull) p.full = true;
    }
    return p.next++;
  }

  private giveBack(p: Part, ino: number): void {
    if (ino !== 0 && p.spare.length < 1024) p.spare.push(ino);
  }

  // ---------------------------------------------------------------- namespace

  /** `scope`: part of an open (the name and inode it answers may be held open from now on). */
  async lookup(parent: number, name: string | Uint8Array, scope?: OpenScope): Promise<{ ino: number; type: number; inode: Inode }> {
    if (scope) await this.enter(scope, await this.partOf(parent));
    const r = await this.read(parent, { op: 'lookup', parent, name: bytes(name) });
    const e = r.entries?.[0];
    if (!e) throw new MetaPosixError('EIO', 'lookup answered without an entry');
    const inode = r.inode ? (r.inode as Inode) : await this.getattr(e.ino ?? 0, undefined, scope);
    return { ino: e.ino ?? 0, type: e.type ?? 0, inode };
  }

  async getattr(ino: number, generation?: number, scope?: OpenScope): Promise<Inode> {
    if (scope) await this.enter(scope, await this.partOf(ino));
    const r = await this.read(ino, { op: 'getattr', ino, ...(generation ? { generation } : {}) });
    return r.inode as Inode;
  }

  private async make(parent: number, name: string | Uint8Array, req: MetaRequest, scope?: OpenScope): Promise<Inode> {
    const p = await this.partOf(parent);
    for (let attempt = 0; ; attempt++) {
      // The child's inode lives with its parent while that partition has inos; after that in
      // another partition with room (a cross-partition create, atomic through intents).
      let target = p;
      if (p.exhausted) {
        target = this.partWithRoom() ?? p;
        if (target === p) {
          await this.refresh();
          target = this.partWithRoom() ?? p;
        }
      }
      let ino: number;
      try {
        ino = await this.takeIno(target);
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOSPC' && attempt < ENOSPC_RETRIES) {
          target.exhausted = true;
          await this.awaitRoom();
          continue;
        }
        throw err;
      }
      try {
        if (scope) await this.enter(scope, target);
        if (target === p) {
          const r = await this.ns(() => p.backend.exec({ ...req, op: 'create', parent, name: bytes(name), ino, now: this.now() }));
          return r.inode as Inode;
        }
        if (ino === 0) ino = await this.allocOne(target);
        return await crossCreate(this.crossCtx(), side(target), side(p), parent, bytes(name), ino, req);
      } catch (err) {
        // The ino was not used (the command failed on every replica): keep it for the next create.
        if (err instanceof MetaPosixError && err.code !== 'EINVAL' && err.code !== 'ENOSPC') this.giveBack(target, ino);
        if (err instanceof MetaPosixError && err.code === 'ENOSPC' && attempt < ENOSPC_RETRIES) {
          target.exhausted = true;
          await this.awaitRoom();
          continue;
        }
        // A lease lost with a metanode's state (EINVAL: never leased) is dropped, and a new one taken.
        if (err instanceof MetaPosixError && err.code === 'EINVAL' && /never leased/.test(err.message) && attempt < 2) {
          target.next = target.end = 0;
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * Every partition out of inos: the master adds one when the last reports nearly full, so
   * look again for a while before telling the caller ENOSPC.
   */
  private async awaitRoom(): Promise<void> {
    if (this.partWithRoom()) return;
    await new Promise((r) => setTimeout(r, 200));
    await this.refresh();
  }

  private partWithRoom(): Part | undefined {
    for (let i = this.parts.length - 1; i >= 0; i--) {
      const p = this.parts[i] as Part;
      if (!p.exhausted) return p;
    }
    return undefined;
  }

  private async allocOne(p: Part): Promise<number> {
    const r = await p.backend.exec({ op: 'alloc', count: 1, now: this.now() });
    return r.first ?? 0;
  }

  create(parent: number, name: string | Uint8Array, mode: number, uid = 0, gid = 0, scope?: OpenScope): Promise<Inode> {
    return this.make(parent, name, { mode: ((mode & S_IFMT) || S_IFREG) | (mode & 0o7777), uid, gid }, scope);
  }

  mknod(parent: number, name: string | Uint8Array, mode: number, rdev = 0, uid = 0, gid = 0): Promise<Inode> {
    return this.make(parent, name, { mode, rdev, uid, gid });
  }

  mkdir(parent: number, name: string | Uint8Array, mode: number, uid = 0, gid = 0): Promise<Inode> {
    return this.make(parent, name, { mode: S_IFDIR | (mode & 0o7777), uid, gid });
  }

  symlink(parent: number, name: string | Uint8Array, target: string | Uint8Array, uid = 0, gid = 0): Promise<Inode> {
    return this.make(parent, name, { mode: S_IFLNK | 0o777, target: bytes(target), uid, gid });
  }

  async link(ino: number, parent: number, name: string | Uint8Array): Promise<Inode> {
    const pp = await this.partOf(parent);
    const ip = await this.partOf(ino);
    if (pp !== ip) return crossLink(this.crossCtx(), side(ip), side(pp), ino, parent, bytes(name));
    const r = await this.ns(() => pp.backend.exec({ op: 'link', ino, parent, name: bytes(name), now: this.now() }));
    return r.inode as Inode;
  }

  /** `believedIno`: the ino the caller thinks the name has (lets the partition delete it at once when this client does not hold it). */
  async unlink(parent: number, name: string | Uint8Array, believedIno?: number): Promise<void> {
    await this.removeEntry('unlink', parent, bytes(name), believedIno);
  }

  async rmdir(parent: number, name: string | Uint8Array): Promise<void> {
    await this.removeEntry('rmdir', parent, bytes(name));
  }

  private async removeEntry(op: 'unlink' | 'rmdir', parent: number, name: Uint8Array, believedIno?: number): Promise<void> {
    const p = await this.partOf(parent);
    try {
      const r = await this.ns(() => this.exempting(p, believedIno, (ex) => p.backend.exec({ op, parent, name, now: this.now(), ...ex })));
      this.freed(r);
    } catch (err) {
      // Every check the dentry's partition can make passed, but the inode lives elsewhere.
      if (!(err instanceof MetaPosixError && err.code === 'EXDEV')) throw err;
      const e = (await p.backend.read({ op: 'lookup', parent, name })).entries?.[0];
      if (!e) throw new MetaPosixError('ENOENT', 'entry vanished');
      await crossUnlink(this.crossCtx(), side(p), side(await this.partOf(e.ino ?? 0)), parent, name, e.ino ?? 0);
    }
  }

  /** `believedTarget`: the ino the caller thinks the replaced name has (see unlink). */
  async rename(parent: number, name: string | Uint8Array, newParent: number, newName: string | Uint8Array, flags = 0, believedTarget?: number): Promise<void> {
    const f = flags & ~RENAME_ANCESTORS_CHECKED;
    try {
      return await this.renameOnce(parent, bytes(name), newParent, bytes(newName), f, believedTarget);
    } catch (err) {
      if (!needsRenameLock(err)) throw err;
    }
    // A directory moves to another parent: under the volume's rename lock, walk the
    // destination's ancestors in every partition (no parent pointer changes meanwhile), then
    // rename with the walk's result.
    await this.withRenameLock(async (held) => {
      const sp = await this.partOf(parent);
      // Between partitions, crossRename walks (after its own checks, so errnos keep their order).
      if (sp === (await this.partOf(newParent))) {
        const e = (await sp.backend.read({ op: 'lookup', parent, name: bytes(name) })).entries?.[0];
        if (!e) throw new MetaPosixError('ENOENT', `${Buffer.from(bytes(name)).toString()} does not exist`);
        // The partition checks a replaced directory's emptiness before the subtree, but only
        // where its entries are: one elsewhere is checked here first, to keep that order.
        const te = (await sp.backend.read({ op: 'lookup', parent: newParent, name: bytes(newName) }).catch(() => undefined))?.entries?.[0];
        if (te && te.type === S_IFDIR && te.ino !== e.ino) {
          const tp = await this.partOf(te.ino ?? 0);
          if (tp !== sp && ((await tp.backend.read({ op: 'readdir', parent: te.ino ?? 0, limit: 1 })).entries ?? []).length > 0) {
            throw new MetaPosixError('ENOTEMPTY', `${Buffer.from(bytes(newName)).toString()} is not empty`);
          }
        }
        await this.checkAncestors(e.ino ?? 0, newParent);
      }
      held();
      await this.renameOnce(parent, bytes(name), newParent, bytes(newName), f | RENAME_ANCESTORS_CHECKED, believedTarget);
    });
  }

  private async renameOnce(parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number, believedTarget: number | undefined): Promise<void> {
    const sp = await this.partOf(parent);
    const dp = await this.partOf(newParent);
    const locked = (flags & RENAME_ANCESTORS_CHECKED) !== 0;
    if (sp !== dp) {
      // A directory moving between partitions always changes parent: the lock first.
      // (A failed lookup is left to crossRename, which reports errors in the partition's order.)
      if (!locked && (await sp.backend.read({ op: 'lookup', parent, name }).catch(() => undefined))?.entries?.[0]?.type === S_IFDIR) throw new NeedsRenameLock();
      await crossRename(this.crossCtx(), side(sp), side(dp), parent, name, newParent, newName, flags);
      return;
    }
    let r: MetaResponse;
    try {
      r = await this.ns(() => this.exempting(sp, believedTarget, (ex) => sp.backend.exec({ op: 'rename', parent, name, newParent, newName, flags, now: this.now(), ...ex })));
      this.freed(r);
    } catch (err) {
      if (!(err instanceof MetaPosixError && err.code === 'EXDEV')) throw err;
      // An inode lives elsewhere (a moved directory, the replaced entry, or both): two phases
      // with a participant in each such partition.
      const e = (await sp.backend.read({ op: 'lookup', parent, name })).entries?.[0];
      const te = (await sp.backend.read({ op: 'lookup', parent: newParent, name: newName }).catch(() => undefined))?.entries?.[0];
      if (!e) throw err;
      const movedPart = e.type === S_IFDIR ? await this.partOf(e.ino ?? 0) : sp;
      const targetPart = te !== undefined ? await this.partOf(te.ino ?? 0) : sp;
      if (movedPart === sp && targetPart === sp) throw err;
      if (e.type === S_IFDIR && parent !== newParent && !locked) throw new NeedsRenameLock();
      const replaced = targetPart !== sp ? te?.ino ?? 0 : 0;
      const other = targetPart !== sp ? targetPart : movedPart;
      const second = targetPart !== sp && movedPart !== sp ? side(movedPart) : undefined;
      await crossLocalRename(this.crossCtx(), side(sp), side(other), parent, name, newParent, newName, flags, e.ino ?? 0, replaced, second);
      return;
    }
    // A moved file whose inode lives elsewhere gets its ctime after the rename (a crash in
    // between costs only that ctime).
    const moved = r.entries?.[0]?.ino ?? 0;
    if (moved) await (await this.partOf(moved)).backend.exec({ op: 'setattr', ino: moved, attr: { valid: SETATTR_CTIME, ctime: this.now() }, now: this.now() }).catch(() => undefined);
  }

  /** EINVAL when `moved` is `dir` or one of its ancestors (parent pointers, across partitions). */
  private async checkAncestors(moved: number, dir: number): Promise<void> {
    let cur = dir;
    for (let depth = 0; depth < DEPTH_MAX; depth++) {
      if (cur === moved) throw new MetaPosixError('EINVAL', 'cannot move a directory into itself');
      if (cur === ROOT_INO) return;
      const a = await this.getattr(cur);
      if ((a.mode & S_IFMT) !== S_IFDIR) throw new MetaPosixError('ENOTDIR', `inode ${cur} is not a directory`);
      if (!a.parent || a.parent === cur) return;
      cur = a.parent;
    }
    throw new MetaPosixError('EINVAL', 'directory tree deeper than the walk limit');
  }

  /**
   * Runs `fn` holding the volume's directory-rename lock (a lease in the root's partition,
   * renewed every third of it). `fn` calls `held()` right before its committing step: it
   * throws EAGAIN when the last renewal is too old to be sure the lease still holds (a
   * stalled client must not commit after another took the lock). Contention waits (EAGAIN
   * from the partition) up to the client's deadline.
   */
  private async withRenameLock<T>(fn: (held: () => void) => Promise<T>): Promise<T> {
    const root = await this.partOf(ROOT_INO);
    const txid = `${this.clientId}-rl-${randomBytes(6).toString('hex')}`;
    const lease = this.o.renameLockMs;
    const until = this.o.now() + this.o.deadlineMs;
    let renewedAt = 0;
    for (let attempt = 1; ; attempt++) {
      const at = this.o.now();
      try {
        await root.backend.exec({ op: 'rlock', txid, leaseMs: at + lease, now: this.now() });
        renewedAt = at;
        break;
      } catch (err) {
        if (!(err instanceof MetaPosixError && err.code === 'EAGAIN') || this.o.now() > until) throw err;
        await new Promise((r) => setTimeout(r, Math.min(200, 5 * attempt)));
      }
    }
    const timer = setInterval(() => {
      const at = this.o.now();
      root.backend.exec({ op: 'rlock', txid, leaseMs: at + lease, now: this.now() }).then(
        () => (renewedAt = Math.max(renewedAt, at)),
        () => undefined, // held() refuses once renewals stop succeeding
      );
    }, Math.max(50, Math.floor(lease / 3)));
    timer.unref();
    try {
      return await fn(() => {
        if (this.o.now() - renewedAt > lease / 2) throw new MetaPosixError('EAGAIN', 'the volume rename lock could not be renewed; retry');
      });
    } finally {
      clearInterval(timer);
      await root.backend.exec({ op: 'runlock', txid, now: this.now() }).catch(() => undefined); // else it expires
    }
  }

  private crossCtx(): CrossContext {
    return {
      now: () => this.now(),
      nowMs: () => this.o.now(),
      txid: () => `${this.clientId}-${randomBytes(6).toString('hex')}`,
      sideOf: async (ino) => side(await this.partOf(ino)),
      sideOfGroup: (gid) => {
        const p = this.parts.find((x) => x.route.groupId === gid);
        return p ? side(p) : undefined;
      },
    };
  }

  /** Finishes cross-partition operations whose client vanished (intents older than `olderThanMs`). */
  async recoverIntents(olderThanMs?: number): Promise<number> {
    if (this.parts.length === 0) await this.refresh();
    let n = 0;
    for (const p of this.parts) n += await recoverIntents(this.crossCtx(), side(p), olderThanMs);
    return n;
  }

  async setattr(ino: number, attr: containerstack.meta.SetAttr.$Properties, generation?: number): Promise<Inode> {
    return (await this.exec(ino, { op: 'setattr', ino, attr, ...(generation ? { generation } : {}) })).inode as Inode;
  }

  async truncate(ino: number, size: number): Promise<Inode> {
    return this.setattr(ino, { valid: SETATTR_SIZE, size });
  }

  async readlink(ino: number): Promise<Buffer> {
    return Buffer.from((await this.read(ino, { op: 'readlink', ino })).value ?? new Uint8Array(0));
  }

  /** One page of a directory; pass the returned cookie to continue (undefined: done). */
  async readdir(parent: number, cookie?: Uint8Array, limit = 1024): Promise<{ entries: DirEntry[]; cookie: Uint8Array | undefined }> {
    const r = await this.read(parent, { op: 'readdir', parent, limit, ...(cookie ? { cookie } : {}) });
    return {
      entries: (r.entries ?? []).map((e) => ({ name: Buffer.from(e.name ?? new Uint8Array(0)), ino: e.ino ?? 0, type: e.type ?? 0 })),
      cookie: r.cookie && r.cookie.length > 0 ? r.cookie : undefined,
    };
  }

  /** Every entry of a directory, at most `max` (a bound, not a page size). */
  async readdirAll(parent: number, max = 1_000_000): Promise<DirEntry[]> {
    const out: DirEntry[] = [];
    let cookie: Uint8Array | undefined;
    do {
      const page = await this.readdir(parent, cookie);
      out.push(...page.entries);
      if (out.length > max) throw new MetaLimitError(`directory ${parent} has more than ${max} entries`);
      cookie = page.cookie;
    } while (cookie);
    return out;
  }

  /** Answers the inode as changed (its xattr count and ctime). */
  async setxattr(ino: number, name: string, value: Uint8Array, flags = 0): Promise<Inode | undefined> {
    return (await this.exec(ino, { op: 'setxattr', ino, name: Buffer.from(name), value, flags })).inode as Inode | undefined;
  }
  async getxattr(ino: number, name: string): Promise<Buffer> {
    return Buffer.from((await this.read(ino, { op: 'getxattr', ino, name: Buffer.from(name) })).value ?? new Uint8Array(0));
  }
  async listxattr(ino: number): Promise<string[]> {
    return ((await this.read(ino, { op: 'listxattr', ino })).names ?? []).map((n) => Buffer.from(n).toString());
  }
  async removexattr(ino: number, name: string): Promise<Inode | undefined> {
    return (await this.exec(ino, { op: 'removexattr', ino, name: Buffer.from(name) })).inode as Inode | undefined;
  }

  /** Commits data written to block groups: the extent keys go into the inode's map (overwriting older pieces). */
  async appendExtents(ino: number, extents: ExtentKey[], opts: { size?: number; generation?: number } = {}): Promise<{ inode: Inode; freed: ExtentKey[] }> {
    let r: MetaResponse;
    try {
      r = await this.exec(ino, { op: 'write', ino, extents, ...(opts.size ? { size: opts.size } : {}), ...(opts.generation ? { generation: opts.generation } : {}) });
    } catch (err) {
      // The only ENOSPC of a commit is the volume quota: from now on, writes that would grow a
      // file fail at once (checkFull), instead of being buffered and refused at commit.
      if (err instanceof MetaPosixError && err.code === 'ENOSPC') {
        this.fullPart = this.find(ino) ?? this.parts[0];
        this.fullCheckedMs = this.o.now();
      }
      throw err;
    }
    return { inode: r.inode as Inode, freed: (r.freed ?? []) as ExtentKey[] };
  }

  // ---------------------------------------------------------------- volume quota

  /** The partition that refused a commit because the volume is full (undefined: not known full). */
  private fullPart: Part | undefined;
  private fullCheckedMs = 0;
  private fullCheck: Promise<boolean> | undefined;

  /** True when a commit was refused because the volume is full and no check since said otherwise. */
  get spaceFull(): boolean {
    return this.fullPart !== undefined;
  }

  /**
   * Whether the volume is still full: asks the partition that refused (its quota state comes
   * from the master through its leader) at most once per second; in between the last answer
   * stands. Clears the state once the quota was raised or space freed.
   */
  async checkFull(): Promise<boolean> {
    const p = this.fullPart;
    if (!p) return false;
    if (this.o.now() - this.fullCheckedMs < FULL_RECHECK_MS) return true;
    this.fullCheck ??= (async () => {
      try {
        const r = await p.backend.read({ op: 'statfs' });
        this.fullCheckedMs = this.o.now();
        if (!r.partition?.full) this.fullPart = undefined;
      } catch {
        this.fullCheckedMs = this.o.now(); // unreachable: keep the last answer, ask again later
      }
      return this.fullPart !== undefined;
    })().finally(() => (this.fullCheck = undefined));
    return this.fullCheck;
  }

  /** Volume totals over every partition; capacity is the quota the partitions last heard from the master (0: none). */
  async statfs(): Promise<{ inodes: number; bytes: number; capacity: number; full: boolean; partitions: PartitionInfo[]; nearlyFull: number[] }> {
    if (this.parts.length === 0) await this.refresh();
    const infos = await Promise.all(this.parts.map(async (p) => ({ p, r: await p.backend.read({ op: 'statfs' }) })));
    let inodes = 0;
    let bytesUsed = 0;
    let capacity = 0;
    let full = false;
    const nearly: number[] = [];
    for (const { p, r } of infos) {
      inodes += r.partition?.inodes ?? 0;
      bytesUsed += r.partition?.bytes ?? 0;
      // Every partition hears the same quota; one that heard a newer one may differ briefly.
      capacity = Math.max(capacity, r.partition?.capacityBytes ?? 0);
      if (r.partition?.full) {
        full = true;
        // Known full from now on: growing writes fail at once (see checkFull).
        if (!this.fullPart) {
          this.fullPart = p;
          this.fullCheckedMs = this.o.now();
        }
      }
      if (r.nearlyFull) nearly.push(p.route.groupId);
    }
    return { inodes, bytes: bytesUsed, capacity, full, partitions: infos.map((x) => x.r.partition as PartitionInfo), nearlyFull: nearly };
  }

  // ---------------------------------------------------------------- open handles and orphans

  /** Records an open handle: an inode unlinked while open lives until its last close. */
  async openHandle(ino: number): Promise<Inode> {
    if (!this.open.has(ino) && this.open.size >= this.o.maxOpenHandles) throw new MetaLimitError(`more than ${this.o.maxOpenHandles} open inodes`);
    const r = await this.exec(ino, { op: 'open', ino, client: this.clientId, leaseMs: this.o.now() + this.o.leaseMs });
    this.open.set(ino, (this.open.get(ino) ?? 0) + 1);
    this.startLeaseTimer();
    return r.inode as Inode;
  }

  async closeHandle(ino: number): Promise<void> {
    const n = this.open.get(ino) ?? 0;
    if (n <= 1) this.open.delete(ino);
    else this.open.set(ino, n - 1);
    this.freed(await this.exec(ino, { op: 'close', ino, client: this.clientId }));
  }

  /** Extends this client's lease on every partition where it holds handles or tracks opens. */
  async renewLease(): Promise<void> {
    const seen = new Set<Part>();
    for (const ino of this.open.keys()) {
      const p = this.find(ino);
      if (p && !this.leases.get(p.route.groupId)?.registered) seen.add(p);
    }
    await Promise.all([
      ...[...seen].map((p) => p.backend.exec({ op: 'lease', client: this.clientId, leaseMs: this.o.now() + this.o.leaseMs, now: this.now() })),
      ...[...this.leases.values()].filter((l) => l.registered).map((l) => this.renewTracked(l)),
    ]);
  }

  private startLeaseTimer(): void {
    if (this.leaseTimer) return;
    this.leaseTimer = setInterval(() => {
      if (this.open.size === 0 && this.leases.size === 0) return;
      this.renewLease().catch(() => undefined); // the next tick tries again; expiry is a third of the lease away
    }, Math.max(100, Math.floor(this.o.leaseMs / 3)));
    this.leaseTimer.unref();
  }

  // ---------------------------------------------------------------- open tracking
  //
  // A client does not tell a partition about each open (that would be a raft write per open).
  // Instead its tracked lease renewals, every leaseMs/3, list the inos it holds open there, and
  // a partition keeps an inode whose last link goes while any tracked lease might hold it
  // unknown (nlink 0, an orphan) until every such lease has renewed past that entry, listing it
  // or not, or has expired. What a renewal vouches for (`witness`) is the smallest raft index
  // this client knew when an open still in progress first touched the partition: an open whose
  // reads were answered before an unlink at index U began with a known index below U, so it is
  // either finished (and listed: its ino is held) or makes the witness < U. Opens start only
  // after this client's lease is registered on the partition (enter), so a lease newer than an
  // unlink can never hold that inode.

  /** Runs an open: lookups, getattrs and creates passed `scope` may end in hold(). */
  async openScope<T>(fn: (scope: OpenScope) => Promise<T>): Promise<T> {
    const scope = { id: this.nextScope++ };
    try {
      return await fn(scope);
    } finally {
      for (const l of this.leases.values()) l.inflight.delete(scope.id);
    }
  }

  /** Before an open's first read or create on a partition: a registered lease, and the index known then. */
  private async enter(scope: OpenScope, p: Part): Promise<void> {
    const l = this.leaseState(p.route.groupId);
    if (!l.registered) {
      const reg = this.renewTracked(l);
      l.registered = reg;
      reg.catch(() => {
        if (l.registered === reg) l.registered = undefined; // the next open tries again
      });
      this.startLeaseTimer();
    }
    await l.registered;
    // A lease that may have run out (renewals failing) is renewed before it is relied on.
    if (this.o.now() > l.renewedAt + (this.o.leaseMs * 2) / 3) await this.renewTracked(l);
    while (l.exemptInFlight) await l.exemptInFlight.catch(() => undefined);
    if (!l.inflight.has(scope.id)) l.inflight.set(scope.id, l.known);
  }

  private leaseState(groupId: number): LeaseState {
    let l = this.leases.get(groupId);
    if (!l) {
      l = { groupId, registered: undefined, known: 0, inflight: new Map(), leaseHeld: new Set(), renewing: undefined, again: false, exemptInFlight: undefined, renewedAt: 0 };
      this.leases.set(groupId, l);
    }
    return l;
  }

  /** This client holds `ino` open (local bookkeeping: the next renewals list it). */
  hold(ino: number): void {
    if (!this.held.has(ino) && this.held.size >= this.o.maxOpenHandles) throw new MetaLimitError(`more than ${this.o.maxOpenHandles} open inodes`);
    this.held.set(ino, (this.held.get(ino) ?? 0) + 1);
  }

  /** The last hold went: an orphan the partition keeps for this client is let go at once. */
  unhold(ino: number): void {
    const n = this.held.get(ino) ?? 0;
    if (n > 1) {
      this.held.set(ino, n - 1);
      return;
    }
    this.held.delete(ino);
    for (const l of this.leases.values()) if (l.leaseHeld.has(ino)) this.renewTracked(l).catch(() => undefined);
  }

  /** Inos this client holds open (tests, diagnostics). */
  get heldInos(): number[] {
    return [...this.held.keys()];
  }

  /** One tracked renewal of a partition at a time; a renewal asked for meanwhile runs after it. */
  private renewTracked(l: LeaseState): Promise<void> {
    if (l.renewing) {
      l.again = true;
      return l.renewing;
    }
    const run = async (): Promise<void> => {
      do {
        l.again = false;
        const p = this.parts.find((x) => x.route.groupId === l.groupId) ?? (await this.refresh(), this.parts.find((x) => x.route.groupId === l.groupId));
        if (!p) throw new MetaNoPartitionError(`partition ${l.groupId} is gone`);
        const witness = this.witnessOf(l);
        const inos: number[] = [];
        for (const ino of this.held.keys()) if (ino >= p.route.start && ino < p.route.end) inos.push(ino);
        // Closing: the lease ends now, so nothing waits for it any more.
        const leaseMs = this.closing ? Math.max(1, this.o.now() - 1) : this.o.now() + this.o.leaseMs;
        const sentAt = this.o.now();
        const r = await p.backend.exec({ op: 'lease', track: true, client: this.clientId, leaseMs, witness, inos, now: this.now() });
        l.renewedAt = Math.max(l.renewedAt, sentAt);
        l.known = Math.max(l.known, r.index ?? 0);
        l.leaseHeld = new Set((r.inos ?? []).map(Number));
        this.freed(r);
        // Orphans wait for this client to vouch past them: once more now, knowing this index.
        // (Only when that vouches for more: an open in progress may hold the witness back.)
        if ((r.count ?? 0) > 0 && this.witnessOf(l) > witness && !this.closing) l.again = true;
      } while (l.again && !this.closed);
    };
    l.renewing = run().finally(() => (l.renewing = undefined));
    return l.renewing;
  }

  /** What a renewal sent now vouches for: the index known, or less while opens are in progress. */
  private witnessOf(l: LeaseState): number {
    let w = l.known;
    for (const k of l.inflight.values()) w = Math.min(w, k);
    return w;
  }

  /**
   * Runs an unlink or rename over `believedIno`: when this client neither holds it nor has an
   * open in progress on its partition, the partition is told so (it may then delete the inode
   * without waiting for this client's next renewal), and opens there wait for the answer.
   */
  private async exempting(p: Part, believedIno: number | undefined, fn: (ex: MetaRequest) => Promise<MetaResponse>): Promise<MetaResponse> {
    const l = this.leases.get(p.route.groupId);
    if (!believedIno || !l || this.held.has(believedIno) || l.inflight.size > 0 || l.exemptInFlight || !(believedIno >= p.route.start && believedIno < p.route.end)) return fn({});
    const run = fn({ client: this.clientId, expectIno: believedIno });
    l.exemptInFlight = run;
    try {
      return await run;
    } finally {
      l.exemptInFlight = undefined;
    }
  }

  /** Namespace changes in flight (parents() reports only when one was alone: see lib/fs dirChanged). */
  private nsInflight = 0;
  /** Runs a namespace change; its answer's parent inodes are reported if it ran alone. */
  private async ns(fn: () => Promise<MetaResponse>): Promise<MetaResponse> {
    this.nsInflight++;
    let alone = false;
    try {
      const r = await fn();
      alone = this.nsInflight === 1;
      // With other changes in flight, their order at the partition is unknown: report nothing.
      if (alone) this.parents(r);
      return r;
    } finally {
      this.nsInflight--;
    }
  }

  private parents(r: MetaResponse): void {
    if (!this.onParents) return;
    const out: Inode[] = [];
    if (r.parentInode) out.push(r.parentInode as Inode);
    if (r.newParentInode && r.newParentInode !== r.parentInode) out.push(r.newParentInode as Inode);
    if (out.length > 0) this.onParents(out);
  }

  private freed(r: MetaResponse): void {
    if (r.freed && r.freed.length > 0) this.onFreed?.(r.freed as ExtentKey[]);
  }

  /** Drops handles of clients whose lease expired by `nowMs`, deleting orphans they held. */
  async reclaim(nowMs = this.o.now()): Promise<number> {
    if (this.parts.length === 0) await this.refresh();
    let total = 0;
    for (const p of this.parts) {
      for (let i = 0; i < 1000; i++) {
        const r = await p.backend.exec({ op: 'reclaim', leaseMs: nowMs, now: this.now() });
        this.freed(r);
        total += r.reclaimed ?? 0;
        if ((r.count ?? 0) === 0) break;
      }
    }
    return total;
  }

  async close(): Promise<void> {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    // Let go of everything at once: a last renewal listing nothing (best effort; else the lease runs out).
    this.held.clear();
    this.closing = true;
    await Promise.all([...this.leases.values()].filter((l) => l.registered).map((l) => this.renewTracked(l).catch(() => undefined)));
    this.closed = true;
    for (const p of this.parts) await p.backend.close();
    this.parts = [];
    if (this.ownsPool) await this.pool.close();
  }
}

const side = (p: Part): Side => ({ groupId: p.route.groupId, exec: (r) => p.backend.exec(r), read: (r) => p.backend.read(r) });
const bytes = (x: string | Uint8Array): Uint8Array => (typeof x === 'string' ? Buffer.from(x) : x);
