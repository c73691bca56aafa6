// MetaNode: what a metanode process runs on top of its RaftHost. It heartbeats to the master
// with a report of every partition it hosts (leader?, nearly full?, counters), and the answer
// says which partitions it must host and where their members are: it learns peer addresses,
// opens new partition groups (multi-raft: many in one host), closes the ones no longer listed,
// destroys those of deleted volumes, and, where it leads a partition that has no state yet,
// proposes its init. Where it leads, it also passes the volume's quota state to the partition,
// reclaims orphans of clients whose lease ran out and finishes cross-partition operations
// their clients left half-done.
import { readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { Counter, Gauge, silentLogger, type Logger, type Registry } from '../common/index.js';
import type { RpcPool } from '../rpc/index.js';
import type { RaftHost, TableGroup } from '../table/index.js';
import type { ConfChange } from '../raft/index.js';
import type { MasterClient } from '../master/index.js';
import { containerstack } from '../../proto/gen/meta.js';
import type { containerstack as masterpb } from '../../proto/gen/master.js';
import { META_MEMORY_PREFIXES, PART_KEY } from './keys.js';
import { META_DOMAIN, metaDomains, nearlyFull, INTENT_TIMEOUT_MS, type ExtentKey } from './partition.js';
import { LocalPartition, RemotePartition, timespecOf, type PartitionBackend } from './client.js';
import { recoverIntents, type CrossContext, type Side } from './crosspart.js';

const pb = containerstack.meta;
/**
 * Partition groups: their state machines keep no watch history (nothing watches a partition,
 * and history would write an event per changed key on every metadata write), and followers
 * learn commits with heartbeats (clients read and write through leaders only, so a follower's
 * state may trail by a heartbeat; that saves a message per follower per write). Their apply
 * writes gather for up to APPLY_BATCH_DELAY_MS and go to level as one batch: each batch is a
 * thread-pool round trip and a LevelDB log write on every replica, while reads are served
 * from memory meanwhile and the Raft log, not this table, is what survives a crash. The
 * leases and the `m/` records are also kept in memory (META_MEMORY_PREFIXES): every unlink
 * of a file scans the leases and every command reads m/part.
 */
const APPLY_BATCH_DELAY_MS = 20;
const META_GROUP = { stateMachine: { historyRevisions: 0, applyBatchDelayMs: APPLY_BATCH_DELAY_MS, memoryPrefixes: META_MEMORY_PREFIXES }, commitBroadcast: 'heartbeat' as const };

export interface MetaNodeOptions {
  host: RaftHost;
  pool: RpcPool;
  master: MasterClient;
  nodeId: number;
  address: string;
  heartbeatIntervalMs?: number;
  maintenanceIntervalMs?: number;
  /** Most partitions this node hosts (a bound on groups it opens on the master's word). */
  maxPartitions?: number;
  logger?: Logger;
  now?: () => number;
  /**
   * Where the last assignment is kept, so a restarted node hosts its partitions at once
   * (before the master answers; a client reaching it meanwhile would otherwise be told the
   * partition is not hosted here).
   */
  assignmentFile?: string;
  registry?: Registry;
  /**
   * Told the extents of inodes this node's maintenance deleted (orphans of clients whose lease
   * expired: no client is left to free them), to be marked dead on their datanodes.
   */
  onFreed?: (extents: ExtentKey[]) => void;
}

interface Hosted {
  group: TableGroup;
  volume: string;
  start: number;
  end: number;
  members: number[];
  founders: number[];
  /** A membership change is being driven (this node leads the partition). */
  changing?: boolean;
}

type Assigned = { groupId: number; volume: string; start: number; end: number; members: number[]; founders?: number[] };

export class MetaNode {
  private readonly hosted = new Map<number, Hosted>();
  /** Deleted partitions destroyed here, to confirm to the master (bounded: 10,000). */
  private readonly destroyed = new Set<number>();
  private hbTimer: NodeJS.Timeout | undefined;
  private mtTimer: NodeJS.Timeout | undefined;
  private beating = false;
  private maintaining = false;
  private readonly log: Logger;
  private readonly now: () => number;
  /** Heartbeats the master answered; the first one means the node knows its partitions. */
  heartbeats = 0;
  lastHeartbeatError: Error | undefined;

  private readonly metrics: { heartbeats: Counter<'result'>; partitions: Gauge; reclaimed: Counter; intents: Counter } | undefined;

  constructor(private readonly o: MetaNodeOptions) {
    this.log = o.logger ?? silentLogger;
    this.now = o.now ?? Date.now;
    if (o.registry) {
      const r = [o.registry];
      this.metrics = {
        heartbeats: new Counter({ name: 'meta_heartbeats_total', help: 'Heartbeats to the master', labelNames: ['result'], registers: r }),
        partitions: new Gauge({ name: 'meta_partitions_hosted', help: 'Metadata partitions this node hosts', registers: r }),
        reclaimed: new Counter({ name: 'meta_orphans_reclaimed_total', help: 'Orphans deleted after their clients\' leases expired', registers: r }),
        intents: new Counter({ name: 'meta_intents_recovered_total', help: 'Stale cross-partition intents finished by recovery', registers: r }),
      };
    }
  }

  get partitions(): number[] {
    return [...this.hosted.keys()];
  }

  group(groupId: number): TableGroup | undefined {
    return this.hosted.get(groupId)?.group;
  }

  /** Hosts the partitions of the last saved assignment (call before serving RPCs). */
  async restore(): Promise<number> {
    const f = this.o.assignmentFile;
    if (!f || !existsSync(f)) return 0;
    let saved: { partitions: Assigned[]; peers: [number, string][] };
    try {
      saved = JSON.parse(readFileSync(f, 'utf8')) as typeof saved;
    } catch (err) {
      // A torn or garbled file only costs the head start: the master's answer replaces it.
      this.log.warn({ err, file: f }, 'meta: saved assignment unreadable; waiting for the master');
      return 0;
    }
    for (const [id, addr] of saved.peers ?? []) if (!this.o.host.peers.has(id)) this.o.host.peers.set(id, addr);
    for (const p of (saved.partitions ?? []).slice(0, this.o.maxPartitions ?? 100_000)) await this.host(p);
    return this.hosted.size;
  }

  private async host(p: Assigned): Promise<void> {
    if (this.hosted.has(p.groupId)) return;
    // Founders bootstrap the group with its first members; a node added later (a replacement)
    // joins empty and is brought in by the leader (learner, then voter).
    const founders = p.founders && p.founders.length > 0 ? p.founders : p.members;
    const voters = founders.includes(this.o.nodeId) ? { voters: founders } : {};
    const group = this.o.host.group(p.groupId) ?? (await this.o.host.addGroup(p.groupId, { ...voters, domains: metaDomains(), ...META_GROUP }));
    this.hosted.set(p.groupId, { group, volume: p.volume, start: p.start, end: p.end, members: p.members, founders });
    this.log.info({ group: p.groupId, volume: p.volume, start: p.start, end: p.end, members: p.members }, 'meta: hosting partition');
  }

  private save(): void {
    const f = this.o.assignmentFile;
    if (!f) return;
    const partitions = [...this.hosted.entries()].map(([groupId, h]) => ({ groupId, volume: h.volume, start: h.start, end: h.end, members: h.members, founders: h.founders }));
    writeFileSync(`${f}.tmp`, JSON.stringify({ partitions, peers: [...this.o.host.peers.entries()] }));
    renameSync(`${f}.tmp`, f);
  }

  start(): void {
    this.hbTimer = setInterval(() => void this.heartbeat(), this.o.heartbeatIntervalMs ?? 1000);
    this.mtTimer = setInterval(() => void this.maintain(), this.o.maintenanceIntervalMs ?? 5000);
    void this.heartbeat();
  }

  /** One heartbeat: report, then follow the master's assignment. */
  async heartbeat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    try {
      const reports = [...this.hosted.entries()].map(([groupId, h]) => {
        const raw = h.group.sm.get(PART_KEY)?.value;
        const p = raw ? pb.PartitionInfo.decode(raw) : undefined;
        return { groupId, leader: h.group.isLeader, nearlyFull: p ? nearlyFull(p) : false, inodes: p?.inodes ?? 0, bytes: p?.bytes ?? 0, cursor: p?.cursor ?? 0, applied: h.group.sm.appliedIndex };
      });
      const destroyed = [...this.destroyed];
      const res = await this.o.master.metaHeartbeat({ nodeId: this.o.nodeId, address: this.o.address, partitions: reports, destroyedPartitions: destroyed });
      // The master has recorded these confirmations (in the entry that answered).
      for (const gid of destroyed) this.destroyed.delete(gid);
      for (const n of res.peers ?? []) if (n.id && n.address) this.o.host.peers.set(n.id, n.address);
      let changed = false;
      // Partitions of deleted volumes: the master says so explicitly (partition ids are never
      // reused), and only then is the data destroyed. Closed at once, hosted here or not.
      for (const gid of (res.deletedPartitions ?? []).slice(0, 10_000)) {
        if (this.destroyed.size >= 10_000) break; // confirmed next time; the master asks again
        const h = this.hosted.get(gid);
        this.hosted.delete(gid);
        if (h) changed = true;
        await this.o.host.removeGroup(gid, { destroy: true });
        this.destroyed.add(gid);
        this.log.warn({ group: gid, volume: h?.volume }, 'meta: partition of a deleted volume closed and destroyed');
      }
      // Partitions the master no longer lists for this node (it was replaced in them) are
      // closed, their data kept: an absence is never a reason to delete. Not reopened at the
      // next start (the saved assignment no longer lists them).
      const assigned = new Set((res.partitions ?? []).map((p) => p.groupId ?? 0));
      for (const gid of [...this.hosted.keys()]) {
        if (assigned.has(gid)) continue;
        this.hosted.delete(gid);
        await this.o.host.removeGroup(gid);
        changed = true;
        this.log.warn({ group: gid }, 'meta: partition no longer assigned to this node; closed');
      }
      for (const p of res.partitions ?? []) {
        const gid = p.groupId ?? 0;
        if (this.hosted.has(gid)) continue;
        if (this.hosted.size >= (this.o.maxPartitions ?? 100_000)) {
          this.log.error({ group: gid }, 'meta: partition limit reached; not hosting more');
          break;
        }
        await this.host({ groupId: gid, volume: p.volume ?? '', start: p.start ?? 0, end: p.end ?? 0, members: p.members ?? [], founders: p.founders ?? [] });
        changed = true;
      }
      for (const p of res.partitions ?? []) {
        const h = this.hosted.get(p.groupId ?? 0);
        if (h && (p.members ?? []).join() !== h.members.join()) {
          h.members = p.members ?? [];
          changed = true;
        }
      }
      this.reconcile();
      if (changed || this.heartbeats === 0) this.save();
      await this.initLed();
      await this.enforceQuota(res.volumes ?? []);
      this.heartbeats++;
      this.metrics?.heartbeats.inc({ result: 'ok' });
      this.metrics?.partitions.set(this.hosted.size);
      this.lastHeartbeatError = undefined;
    } catch (err) {
      this.metrics?.heartbeats.inc({ result: 'failed' });
      if (!this.lastHeartbeatError) this.log.warn({ err }, 'meta: heartbeat to master failed');
      this.lastHeartbeatError = err as Error;
    } finally {
      this.beating = false;
    }
  }

  /**
   * Where this node leads, the raft membership follows the master's member list: a new member
   * is added as a learner, promoted once caught up, then a member no longer listed is removed.
   * One step per partition at a time, in the background.
   */
  private reconcile(): void {
    for (const [gid, h] of this.hosted) {
      if (h.changing || !h.group.isLeader) continue;
      const cs = h.group.node.confState();
      const add = h.members.find((m) => !cs.voters.includes(m));
      const remove = add === undefined ? cs.voters.find((v) => !h.members.includes(v)) : undefined;
      let step: ConfChange | undefined;
      if (add !== undefined) step = cs.learners.includes(add) ? { type: 'addNode', nodeId: add } : { type: 'addLearner', nodeId: add };
      else if (remove !== undefined) step = { type: 'removeNode', nodeId: remove };
      if (!step) continue;
      h.changing = true;
      const change = step;
      h.group
        .changeMembership(change)
        .then(() => this.log.info({ group: gid, change }, 'meta: partition membership changed'))
        .catch((err: unknown) => this.log.debug({ err, group: gid, change }, 'meta: membership change not done yet (a learner still catching up?)'))
        .finally(() => (h.changing = false));
    }
  }

  /**
   * Where this node leads, the partition learns its volume's capacity and whether the volume
   * is full (the master sums every partition's byte counter): one entry when that changes.
   * Full partitions refuse writes that grow a file (ENOSPC). Eventual: the master learns the
   * counters from leaders' heartbeats, and the partitions from the next answer.
   */
  private async enforceQuota(volumes: masterpb.master.Volume.$Properties[]): Promise<void> {
    const byName = new Map(volumes.map((v) => [v.name ?? '', v]));
    for (const [gid, h] of this.hosted) {
      const v = byName.get(h.volume);
      if (!v || !h.group.isLeader) continue;
      const raw = h.group.sm.get(PART_KEY)?.value;
      if (!raw) continue;
      const p = pb.PartitionInfo.decode(raw);
      const capacity = v.quotaBytes ?? 0;
      const full = v.full ?? false;
      if (p.capacityBytes === capacity && p.full === full) continue;
      try {
        await h.group.propose({ domain: META_DOMAIN, args: pb.MetaRequest.encode({ op: 'quota', capacity, full, now: timespecOf(this.now()) }).finish() });
        this.log.info({ group: gid, volume: h.volume, capacity, full }, full ? 'meta: volume full; writes that grow files now fail' : 'meta: volume quota updated');
      } catch (err) {
        this.log.debug({ err, group: gid }, 'meta: quota update not done yet');
      }
    }
  }

  /** Partitions this node leads that have no state yet get their init (idempotent). */
  private async initLed(): Promise<void> {
    for (const [gid, h] of this.hosted) {
      if (!h.group.isLeader || h.group.sm.get(PART_KEY)) continue;
      try {
        await h.group.propose({ domain: META_DOMAIN, args: pb.MetaRequest.encode({ op: 'init', volume: h.volume, start: h.start, end: h.end, now: timespecOf(this.now()) }).finish() });
        this.log.info({ group: gid }, 'meta: partition initialized');
      } catch (err) {
        this.log.debug({ err, group: gid }, 'meta: init not done yet');
      }
    }
  }

  /** Where this node leads: reclaim expired clients' orphans, finish stale intents. */
  async maintain(): Promise<void> {
    if (this.maintaining) return;
    this.maintaining = true;
    const remotes: PartitionBackend[] = [];
    try {
      const led = [...this.hosted.entries()].filter(([, h]) => h.group.isLeader && h.group.sm.get(PART_KEY));
      if (led.length === 0) return;
      for (const [gid, h] of led) {
        const local = new LocalPartition(() => h.group);
        for (let i = 0; i < 100; i++) {
          const r = await local.exec({ op: 'reclaim', leaseMs: this.now(), now: timespecOf(this.now()) });
          if (r.freed && r.freed.length > 0) this.o.onFreed?.(r.freed as ExtentKey[]);
          if ((r.reclaimed ?? 0) > 0) {
            this.metrics?.reclaimed.inc(r.reclaimed ?? 0);
            this.log.info({ group: gid, reclaimed: r.reclaimed }, 'meta: reclaimed orphans of expired clients');
          }
          if ((r.count ?? 0) === 0) break;
        }
      }
      // Intents need the other partitions of the volume: reach them through the master's map.
      const withIntents = [];
      for (const [gid, h] of led) {
        const r = await new LocalPartition(() => h.group).read({ op: 'intents', limit: 1 });
        if ((r.intents ?? []).length > 0) withIntents.push([gid, h] as const);
      }
      for (const [gid, h] of withIntents) {
        const routes = await this.o.master.routes(h.volume);
        const sides = new Map<number, Side>();
        for (const r of routes) {
          const b: PartitionBackend = r.groupId === gid ? new LocalPartition(() => h.group) : new RemotePartition(r, this.o.pool, `metanode-${this.o.nodeId}`, 10_000);
          remotes.push(b);
          sides.set(r.groupId, { groupId: r.groupId, exec: (q) => b.exec(q), read: (q) => b.read(q) });
        }
        const ctx: CrossContext = {
          now: () => timespecOf(this.now()),
          nowMs: () => this.now(),
          txid: () => `recovery-${this.o.nodeId}-${this.now()}`,
          sideOf: async (ino) => {
            const r = routes.find((x) => ino >= x.start && ino < x.end);
            const s = r ? sides.get(r.groupId) : undefined;
            if (!s) throw new Error(`meta: no partition owns ino ${ino}`);
            return s;
          },
          sideOfGroup: (g) => sides.get(g),
        };
        const n = await recoverIntents(ctx, sides.get(gid) as Side, INTENT_TIMEOUT_MS);
        if (n > 0) {
          this.metrics?.intents.inc(n);
          this.log.info({ group: gid, resolved: n }, 'meta: finished stale cross-partition operations');
        }
      }
    } catch (err) {
      this.log.debug({ err }, 'meta: maintenance pass failed');
    } finally {
      for (const b of remotes) await b.close().catch(() => undefined);
      this.maintaining = false;
    }
  }

  stop(): void {
    if (this.hbTimer) clearInterval(this.hbTimer);
    if (this.mtTimer) clearInterval(this.mtTimer);
  }
}
