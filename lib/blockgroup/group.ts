// One replica of a block group on this datanode: its metadata file, its extents, and the
// append ordering rules. The primary places each append (extent, offset, sequence number)
// synchronously, so concurrent writers get disjoint ranges; a backup applies forwards strictly
// in sequence order (holding early arrivals in a bounded reorder window), so every replica
// writes the same bytes at the same offsets. Any write failure seals the group: a sealed group
// never takes another append, and its final lengths are settled once for all replicas.
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ExtentFile } from './extentfile.js';
import {
  BlockGroupBadRequestError, BlockGroupLimitError, BlockGroupOutOfOrderError, BlockGroupSealedError, fromFsError,
} from './errors.js';

export interface GroupMeta {
  groupId: number;
  replicas: string[];
  blockSizeBytes: number;
  extentMaxBytes: number;
  sealed: boolean;
  /** Final length of every extent, fixed once when the group is sealed; absent until then. */
  sealedLengths: Record<string, number> | null;
}

export interface Placement {
  seq: number;
  extentId: number;
  offset: number;
}

/** Forwards a backup holds waiting for an earlier sequence number. */
export const MAX_REORDER_WINDOW = 1024;

export class GroupReplica {
  readonly extents = new Map<number, Promise<ExtentFile>>();
  private readonly opened = new Map<number, ExtentFile>();
  activeExtentId = 0;
  private activeReservedEnd = 0;
  /** Primary: next sequence number to hand out. Backup: next one to apply. */
  nextSeq = 0;
  private readonly early = new Map<number, { resolve: () => void; reject: (e: unknown) => void; timer: NodeJS.Timeout }>();
  readonly inflight = new Set<Promise<unknown>>();
  /** Set on a replica that restarted or was told to seal without final lengths yet. */
  catchUpRunning = false;

  private constructor(
    readonly dir: string,
    readonly meta: GroupMeta,
    readonly index: number,
  ) {}

  get groupId(): number {
    return this.meta.groupId;
  }
  get sealed(): boolean {
    return this.meta.sealed;
  }
  get isPrimary(): boolean {
    return this.index === 0;
  }
  get next(): string | undefined {
    return this.meta.replicas[this.index + 1];
  }

  static async create(dir: string, meta: GroupMeta, self: string): Promise<GroupReplica> {
    const index = meta.replicas.indexOf(self);
    if (index < 0) throw new BlockGroupBadRequestError(`group ${meta.groupId}: this node (${self}) is not in the chain ${meta.replicas.join(',')}`);
    try {
      await mkdir(dir, { recursive: true });
      const g = new GroupReplica(dir, meta, index);
      await g.saveMeta();
      g.extents.set(0, ExtentFile.open(dir, 0, meta.blockSizeBytes, true));
      g.opened.set(0, await (g.extents.get(0) as Promise<ExtentFile>));
      return g;
    } catch (err) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw err instanceof BlockGroupBadRequestError ? err : fromFsError(err, `create group ${meta.groupId}`);
    }
  }

  /**
   * Loads a replica after a restart. It comes back sealed: writes in flight when the node
   * stopped may have reached some replicas and not others, so the group's final lengths must
   * be settled with the peers before anything is trusted past them.
   */
  static async load(dir: string, self: string): Promise<GroupReplica> {
    const raw = await readFile(join(dir, 'meta.json'), 'utf8');
    const meta = parseMeta(raw);
    const index = meta.replicas.indexOf(self);
    if (index < 0) throw new BlockGroupBadRequestError(`group ${meta.groupId} in ${dir}: this node (${self}) is not in its chain`);
    const g = new GroupReplica(dir, meta, index);
    const ids = (await readdir(dir)).map((f) => /^(\d+)\.dat$/.exec(f)?.[1]).filter((x): x is string => x !== undefined).map(Number).sort((a, b) => a - b);
    for (const id of ids) {
      const p = ExtentFile.open(dir, id, meta.blockSizeBytes, false);
      g.extents.set(id, p);
      g.opened.set(id, await p);
    }
    if (ids.length === 0) {
      g.extents.set(0, ExtentFile.open(dir, 0, meta.blockSizeBytes, true));
      g.opened.set(0, await (g.extents.get(0) as Promise<ExtentFile>));
    }
    g.activeExtentId = Math.max(0, ...ids);
    g.activeReservedEnd = g.opened.get(g.activeExtentId)?.length ?? 0;
    if (!meta.sealed) {
      meta.sealed = true;
      await g.saveMeta();
    }
    return g;
  }

  async saveMeta(): Promise<void> {
    const tmp = join(this.dir, 'meta.json.tmp');
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(this.meta));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, join(this.dir, 'meta.json'));
    const d = await open(this.dir, 'r');
    await d.sync().finally(() => d.close());
  }

  extent(id: number): ExtentFile | undefined {
    return this.opened.get(id);
  }

  extentIds(): number[] {
    return [...this.opened.keys()].sort((a, b) => a - b);
  }

  private openExtent(id: number): Promise<ExtentFile> {
    let p = this.extents.get(id);
    if (!p) {
      p = ExtentFile.open(this.dir, id, this.meta.blockSizeBytes, true).then((e) => {
        this.opened.set(id, e);
        return e;
      });
      p.catch(() => undefined);
      this.extents.set(id, p);
    }
    return p;
  }

  /** Primary: places an append. Synchronous, so placement order is arrival order. */
  place(len: number): Placement {
    if (this.meta.sealed) throw new BlockGroupSealedError(`group ${this.groupId} is sealed`);
    if (this.activeReservedEnd > 0 && this.activeReservedEnd + len > this.meta.extentMaxBytes) this.roll();
    const p = { seq: this.nextSeq++, extentId: this.activeExtentId, offset: this.activeReservedEnd };
    this.activeReservedEnd += len;
    return p;
  }

  private roll(): void {
    this.activeExtentId++;
    this.activeReservedEnd = 0;
    void this.openExtent(this.activeExtentId);
  }

  /** Backup: waits until `seq` is next (bounded window and time), then checks placement. */
  async accept(p: Placement, len: number, waitMs: number): Promise<void> {
    if (this.meta.sealed) throw new BlockGroupSealedError(`group ${this.groupId} is sealed`);
    if (p.seq < this.nextSeq) throw new BlockGroupOutOfOrderError(`group ${this.groupId}: forward seq ${p.seq} already applied (next ${this.nextSeq})`);
    if (p.seq > this.nextSeq) {
      if (this.early.size >= MAX_REORDER_WINDOW || this.early.has(p.seq)) throw new BlockGroupLimitError(`group ${this.groupId}: reorder window full or duplicate seq ${p.seq}`);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.early.delete(p.seq);
          reject(new BlockGroupOutOfOrderError(`group ${this.groupId}: forward seq ${p.seq} waited ${waitMs}ms for seq ${this.nextSeq}`));
        }, waitMs);
        this.early.set(p.seq, { resolve, reject, timer });
      });
      if (this.meta.sealed) throw new BlockGroupSealedError(`group ${this.groupId} is sealed`);
    }
    const rolled = p.extentId === this.activeExtentId + 1 && p.offset === 0;
    if (!(rolled || (p.extentId === this.activeExtentId && p.offset === this.activeReservedEnd))) {
      throw new BlockGroupOutOfOrderError(`group ${this.groupId}: forward places ${len} bytes at extent ${p.extentId} offset ${p.offset}, this replica is at extent ${this.activeExtentId} offset ${this.activeReservedEnd}`);
    }
    if (rolled) this.roll();
    this.activeReservedEnd += len;
    this.nextSeq++;
    const w = this.early.get(this.nextSeq);
    if (w) {
      this.early.delete(this.nextSeq);
      clearTimeout(w.timer);
      w.resolve();
    }
  }

  /**
   * Writes placed bytes locally and waits until durable. `crcs`: appendCrcs of `data` at
   * p.offset when the caller has them (the primary).
   */
  async writeLocal(p: Placement, data: Buffer | Buffer[], crcs?: number[][]): Promise<void> {
    const ext = await this.openExtent(p.extentId);
    await ext.write(p.offset, data, crcs);
  }

  track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    const done = (): void => {
      this.inflight.delete(p);
    };
    p.then(done, done);
    return p;
  }

  /** Stops writes, lets those in flight settle, and answers the durable length of each extent. */
  async sealLocal(): Promise<Record<string, number>> {
    if (!this.meta.sealed) {
      this.meta.sealed = true;
      await this.saveMeta();
    }
    for (const [, w] of this.early) {
      clearTimeout(w.timer);
      w.reject(new BlockGroupSealedError(`group ${this.groupId} is sealed`));
    }
    this.early.clear();
    await Promise.allSettled([...this.inflight]);
    await Promise.allSettled([...this.extents.values()]);
    return this.lengths();
  }

  lengths(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, e] of this.opened) out[String(id)] = e.length;
    return out;
  }

  get lengthBytes(): number {
    let n = 0;
    for (const e of this.opened.values()) n += e.length;
    return n;
  }

  get deadBytes(): number {
    let n = 0;
    for (const e of this.opened.values()) n += e.deadBytes;
    return n;
  }

  /** True when sealed with final lengths and every local extent has exactly them. */
  get caughtUp(): boolean {
    const target = this.meta.sealedLengths;
    if (!this.meta.sealed || !target) return false;
    for (const [id, len] of Object.entries(target)) if ((this.opened.get(Number(id))?.length ?? -1) !== len) return false;
    for (const [id, e] of this.opened) if (!(String(id) in target) && e.length > 0) return false;
    return true;
  }

  /** Fixes final lengths; the first value wins. Answers the value held. */
  async setSealedLengths(target: Record<string, number>): Promise<Record<string, number>> {
    if (this.meta.sealedLengths) return this.meta.sealedLengths;
    this.meta.sealed = true;
    this.meta.sealedLengths = target;
    await this.saveMeta();
    return target;
  }

  /** Extents the compactor may rewrite: no append can reach them any more. */
  quiescentExtents(): ExtentFile[] {
    const out: ExtentFile[] = [];
    for (const [id, e] of this.opened) {
      if ((this.meta.sealed && this.inflight.size === 0) || id < this.activeExtentId) {
        if (e.reservedEnd === e.writtenEnd) out.push(e);
      }
    }
    return out;
  }

  async ensureExtent(id: number): Promise<ExtentFile> {
    return this.openExtent(id);
  }

  async close(): Promise<void> {
    for (const [, w] of this.early) {
      clearTimeout(w.timer);
      w.reject(new BlockGroupSealedError(`group ${this.groupId}: node shutting down`));
    }
    this.early.clear();
    await Promise.allSettled([...this.inflight]);
    const all = await Promise.allSettled([...this.extents.values()]);
    for (const r of all) if (r.status === 'fulfilled') await r.value.close();
  }
}

function parseMeta(raw: string): GroupMeta {
  const m = JSON.parse(raw) as Partial<GroupMeta>;
  const okNum = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!okNum(m.groupId) || !Array.isArray(m.replicas) || !m.replicas.every((r) => typeof r === 'string') || !okNum(m.blockSizeBytes) || !okNum(m.extentMaxBytes) || typeof m.sealed !== 'boolean') {
    throw new BlockGroupBadRequestError('group meta.json is malformed');
  }
  const sl = m.sealedLengths;
  if (sl !== null && sl !== undefined && (typeof sl !== 'object' || !Object.values(sl).every(okNum))) throw new BlockGroupBadRequestError('group meta.json: bad sealedLengths');
  return { groupId: m.groupId, replicas: m.replicas, blockSizeBytes: m.blockSizeBytes, extentMaxBytes: m.extentMaxBytes, sealed: m.sealed, sealedLengths: sl ?? null };
}
