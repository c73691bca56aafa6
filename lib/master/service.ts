// The master's RPC service, served by every master replica: cluster-map commands go through
// the master's table group (the leader proposes; others answer TABLE_NOT_LEADER with a hint),
// the view is a linearizable read, and datanode heartbeats (lib/blockgroup's method, sent to
// one configured address) are forwarded to the leader by a follower. The leader also runs
// failure detection: every checkIntervalMs it proposes a check with its own clock.
import { ContainerStackError, silentLogger, type Logger } from '../common/index.js';
import { protoCodec, unaryMethod, type RpcPool, type RpcServer } from '../rpc/index.js';
import { CommandFailedError, NotLeaderError, type RaftHost, type TableGroup, type TableStateMachine } from '../table/index.js';
import { blockGroupService, masterHeartbeatMethod } from '../blockgroup/index.js';
import { containerstack } from '../../proto/gen/master.js';
import { containerstack as tablepb } from '../../proto/gen/table.js';
import { MASTER_DOMAIN, readView, type MapReader, type MasterRequest, type MasterResponse, type ClusterView } from './state.js';

const pb = containerstack.master;
const codec = <T>(t: { encode(m: T): { finish(): Uint8Array }; decode(b: Uint8Array): T }) => protoCodec<T>(t);

export const masterService = {
  command: unaryMethod('master.Command', codec<MasterRequest>(pb.MasterRequest), codec<MasterResponse>(pb.MasterResponse)),
  view: unaryMethod('master.View', codec<containerstack.master.ViewRequest.$Properties>(pb.ViewRequest), codec<containerstack.master.ClusterView.$Properties>(pb.ClusterView)),
  metaHeartbeat: unaryMethod('master.MetaHeartbeat', codec<containerstack.master.MetaHeartbeatRequest.$Properties>(pb.MetaHeartbeatRequest), codec<containerstack.master.MetaHeartbeatResponse.$Properties>(pb.MetaHeartbeatResponse)),
  allocateGroup: unaryMethod('master.AllocateGroup', codec<containerstack.master.AllocateGroupRequest.$Properties>(pb.AllocateGroupRequest), codec<containerstack.master.GroupRef.$Properties>(pb.GroupRef)),
  locateGroup: unaryMethod('master.LocateGroup', codec<containerstack.master.LocateGroupRequest.$Properties>(pb.LocateGroupRequest), codec<containerstack.master.GroupRef.$Properties>(pb.GroupRef)),
};

/** Operations any caller may send through master.Command (the rest are the master's own). */
const CLIENT_OPS = new Set(['register', 'createVolume', 'deleteVolume', 'addPartition', 'sealGroup', 'setCapacity']);

export function tableReader(sm: TableStateMachine): MapReader {
  return {
    get: (key) => sm.get(key)?.value,
    scan: async (prefix, limit) => {
      const out: { key: Uint8Array; value: Uint8Array }[] = [];
      let start: Uint8Array | undefined;
      while (out.length < limit) {
        const r = await sm.range({ prefix, limit: Math.min(10_000, limit - out.length), ...(start ? { start } : {}) });
        out.push(...r.kvs.map((kv) => ({ key: kv.key, value: kv.value })));
        if (!r.next) break;
        start = r.next;
      }
      return out;
    },
  };
}

class NotLeaderWire extends ContainerStackError {
  readonly details: Uint8Array;
  constructor(err: NotLeaderError, groupId: number) {
    super('table', err.code, err.message.replace(/^table: /, ''));
    this.details = tablepb.table.LeaderHint.encode({ groupId, leaderId: err.leaderId, leaderAddress: err.leaderAddress }).finish();
  }
}
class CodeWire extends ContainerStackError {
  constructor(code: string, message: string) {
    super('master', code, message.replace(/^(table|master): /, ''));
  }
}

export interface MasterServerOptions {
  host: RaftHost;
  group: TableGroup;
  rpc: RpcServer;
  pool: RpcPool;
  logger?: Logger;
  /** A node silent this long is marked down. */
  nodeTimeoutMs?: number;
  checkIntervalMs?: number;
  /** A block group this long is sealed as full (0: never by size). */
  groupMaxBytes?: number;
  /** A metanode down this long is replaced in its partitions (0: never). */
  replaceAfterMs?: number;
  now?: () => number;
}

export class MasterServer {
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly now: () => number;
  private checking = false;

  constructor(private readonly o: MasterServerOptions) {
    this.log = o.logger ?? silentLogger;
    this.now = o.now ?? Date.now;
    const { rpc } = o;
    rpc.unary(masterService.command, async (req) => {
      if (!CLIENT_OPS.has(req.op ?? '')) throw new CodeWire('EINVAL', `operation ${req.op} is not for clients`);
      return this.propose({ ...req, nowMs: this.now() });
    });
    rpc.unary(masterService.view, async (req) => this.view(req.volume ?? ''));
    rpc.unary(masterService.metaHeartbeat, async (req) => {
      const nodeId = req.nodeId ?? 0;
      const r = await this.propose({ op: 'metaHeartbeat', nodeId, address: req.address ?? '', partitions: req.partitions ?? [], destroyedPartitions: req.destroyedPartitions ?? [], nowMs: this.now() });
      // Just applied here: the leader's table already holds this node's assignment.
      const v = await readView(tableReader(o.group.sm));
      const mine = v.partitions.filter((p) => p.members.includes(nodeId));
      const ids = new Set(mine.flatMap((p) => p.members));
      const vols = new Set(mine.map((p) => p.volume));
      return { partitions: mine, peers: v.nodes.filter((n) => ids.has(n.id)), volumes: v.volumes.filter((x) => vols.has(x.name)), deletedPartitions: r.deletedPartitions ?? [] };
    });
    rpc.unary(masterService.allocateGroup, async (req) => {
      const r = await this.propose({ op: 'allocateGroup', volume: req.volume ?? '', nowMs: this.now() });
      const g = r.groups?.[0];
      const addrs = (r.nodes ?? []).map((n) => n.address ?? '');
      if (!g) throw new CodeWire('EIO', 'allocation returned no group');
      // The placement is committed; now each replica creates its part. A failure seals the
      // group (never written), and the caller asks again.
      try {
        await Promise.all(addrs.map((a) => o.pool.get(a).call(blockGroupService.createGroup, { groupId: g.groupId ?? 0, replicas: addrs }, { deadlineMs: 5000 })));
      } catch (err) {
        await this.propose({ op: 'sealGroup', groupId: g.groupId ?? 0, reason: 'replica creation failed', nowMs: this.now() }).catch(() => undefined);
        throw new CodeWire('MASTER_PLACEMENT_FAILED', `creating block group ${g.groupId} on ${addrs.join(', ')}: ${(err as Error).message}`);
      }
      return { groupId: g.groupId ?? 0, replicas: addrs, state: 'open' };
    });
    rpc.unary(masterService.locateGroup, async (req) => {
      await this.barrier();
      const r = tableReader(o.group.sm);
      const v = await readView(r);
      const g = v.groups.find((x) => x.groupId === (req.groupId ?? 0));
      if (!g) throw new CodeWire('ENOENT', `no block group ${req.groupId}`);
      const byId = new Map(v.nodes.map((n) => [n.id, n.address]));
      return { groupId: g.groupId, replicas: g.replicas.map((id) => byId.get(id) ?? ''), state: g.state };
    });
    rpc.unary(masterHeartbeatMethod, async (hb, ctx) => {
      if (!o.group.isLeader) {
        const lead = o.group.leaderId;
        const addr = o.host.peers.get(lead);
        if (!lead || !addr) throw new CodeWire('TABLE_NO_QUORUM', 'no master leader known');
        const left = ctx.deadlineAt === undefined ? 5000 : Math.max(1, ctx.deadlineAt - performance.now());
        return o.pool.get(addr).call(masterHeartbeatMethod, hb, { deadlineMs: left });
      }
      const r = await this.propose({
        op: 'dataHeartbeat', deletedGroups: (hb.deletedGroups ?? []).slice(0, 10_000), address: hb.nodeAddress ?? '', capacityBytes: hb.capacityBytes ?? 0, usedBytes: hb.usedBytes ?? 0,
        availableBytes: hb.availableBytes ?? 0, health: hb.health ?? '', nowMs: this.now(), groupMaxBytes: o.groupMaxBytes ?? 0,
        groups: (hb.groups ?? []).map((g) => ({ groupId: g.groupId ?? 0, state: g.state ?? '', lengthBytes: g.lengthBytes ?? 0 })),
      });
      return { ok: true, deleteGroups: r.deleteGroups ?? [] };
    });
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.o.checkIntervalMs ?? 1000);
    this.timer.unref();
  }

  /** On the leader: marks silent nodes down (and seals their groups). */
  async check(): Promise<void> {
    if (this.checking || !this.o.group.isLeader) return;
    this.checking = true;
    try {
      const r = await this.propose({ op: 'checkNodes', nowMs: this.now(), timeoutMs: this.o.nodeTimeoutMs ?? 10_000, replaceAfterMs: this.o.replaceAfterMs ?? 0 });
      for (const p of r.partitions ?? []) this.log.warn({ partition: p.groupId, members: p.members }, 'master: partition member replaced');
      for (const n of r.nodes ?? []) this.log.warn({ node: n.id, address: n.address, kind: n.kind }, 'master: node marked down');
      for (const g of r.groups ?? []) this.log.warn({ group: g.groupId, reason: g.sealedReason }, 'master: block group sealed');
    } catch (err) {
      this.log.debug({ err }, 'master: node check failed');
    } finally {
      this.checking = false;
    }
  }

  private async barrier(): Promise<void> {
    try {
      await this.o.group.readBarrier();
    } catch (err) {
      if (err instanceof NotLeaderError) throw new NotLeaderWire(err, this.o.group.groupId);
      throw err;
    }
  }

  async view(volume = ''): Promise<ClusterView> {
    await this.barrier();
    const v = await readView(tableReader(this.o.group.sm), volume);
    const st = this.o.group.status();
    v.leader = st.lead;
    v.revision = this.o.group.sm.currentRevision;
    const cs = this.o.group.node.confState();
    v.masters = cs.voters.map((id) => pb.MasterMember.create({ id, address: this.o.host.peers.get(id) ?? '', role: id === st.lead ? 'leader' : 'follower' }));
    return v;
  }

  async propose(req: MasterRequest): Promise<MasterResponse> {
    try {
      const r = await this.o.group.propose({ domain: MASTER_DOMAIN, args: pb.MasterRequest.encode(req).finish() });
      return pb.MasterResponse.decode(r.domainResult ?? new Uint8Array(0));
    } catch (err) {
      if (err instanceof NotLeaderError) throw new NotLeaderWire(err, this.o.group.groupId);
      if (err instanceof CommandFailedError) throw new CodeWire(err.domainCode, err.message);
      throw err;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
