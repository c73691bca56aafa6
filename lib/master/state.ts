// The ContainerFS cluster map as a table domain command ("master"): nodes, volumes, metadata
// partitions and block groups, changed only by committed entries, so every master replica
// holds the same map. Placement and failure decisions happen inside apply and are therefore
// deterministic: time comes from the proposer (`nowMs`), ties break by node id.
//
// Keys:  m/counters   n/<id u32>   a/<address>   v/<volume>   p/<group u32>   g/<group u64>
//        y/<node u32><partition u32>, z/<node u32><group u64>: deletion tombstones, one per
//        member/replica of a deleted volume's partitions and block groups, until that node
//        confirms it destroyed its copy (ids are never reused, so the statement is final).
import { DomainError, type DomainCommand, type DomainContext } from '../table/index.js';
import { containerstack } from '../../proto/gen/master.js';

const pb = containerstack.master;
export type NodeInfo = containerstack.master.NodeInfo;
export type Volume = containerstack.master.Volume;
export type Partition = containerstack.master.Partition;
export type BlockGroup = containerstack.master.BlockGroup;
export type MasterRequest = containerstack.master.MasterRequest.$Properties;
export type MasterResponse = containerstack.master.MasterResponse.$Properties;
export type MasterMember = containerstack.master.MasterMember;
/** The cluster map as clients see it (fully populated messages). */
export interface ClusterView {
  nodes: NodeInfo[];
  volumes: Volume[];
  partitions: Partition[];
  groups: BlockGroup[];
  leader: number;
  masters: MasterMember[];
  revision: number;
}

export const MASTER_DOMAIN = 'master';
/** Partition raft group ids start here (the master's own group is 1). */
export const FIRST_PARTITION_GROUP = 1000;
export const DEFAULT_INO_RANGE = 1 << 24;
export const MAX_NODES = 10_000;
export const MAX_VOLUMES = 10_000;
export const MAX_PARTITIONS = 100_000;
export const MAX_GROUPS = 1_000_000;
const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const COUNTERS = Buffer.from('m/counters');
const u32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
};
const u64 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(BigInt(n), 0);
  return b;
};
export const NODE_PREFIX = Buffer.from('n/');
export const VOLUME_PREFIX = Buffer.from('v/');
export const PARTITION_PREFIX = Buffer.from('p/');
export const GROUP_PREFIX = Buffer.from('g/');
const nodeKey = (id: number): Buffer => Buffer.concat([NODE_PREFIX, u32(id)]);
const addrKey = (a: string): Buffer => Buffer.concat([Buffer.from('a/'), Buffer.from(a)]);
const volKey = (v: string): Buffer => Buffer.concat([VOLUME_PREFIX, Buffer.from(v)]);
const partKey = (g: number): Buffer => Buffer.concat([PARTITION_PREFIX, u32(g)]);
const groupKey = (g: number): Buffer => Buffer.concat([GROUP_PREFIX, u64(g)]);
const PART_TOMB = Buffer.from('y/');
const GROUP_TOMB = Buffer.from('z/');
const partTombKey = (node: number, g: number): Buffer => Buffer.concat([PART_TOMB, u32(node), u32(g)]);
const groupTombKey = (node: number, g: number): Buffer => Buffer.concat([GROUP_TOMB, u32(node), u64(g)]);
/** Most deletions named in one heartbeat answer (the rest follow in later ones). */
export const MAX_DELETIONS_PER_HEARTBEAT = 1000;

/**
 * Deletion tombstones of one node: confirmations (`done`) are dropped first, then up to
 * MAX_DELETIONS_PER_HEARTBEAT still pending are answered.
 */
async function tombstones(ctx: DomainContext, prefix: Buffer, node: number, done: number[], key: (node: number, id: number) => Buffer): Promise<number[]> {
  for (const id of done.slice(0, 10 * MAX_DELETIONS_PER_HEARTBEAT)) if (ctx.get(key(node, id)) !== undefined) ctx.delete(key(node, id));
  const p = Buffer.concat([prefix, u32(node)]);
  return (await ctx.scan(p, MAX_DELETIONS_PER_HEARTBEAT)).map((kv) => {
    const k = Buffer.from(kv.key);
    return k.length === p.length + 4 ? k.readUInt32BE(p.length) : Number(k.readBigUInt64BE(p.length));
  });
}

function fail(code: string, message: string): never {
  throw new DomainError(code, `master: ${message}`);
}

/** Reads of the map, from apply's context or from the state machine after a barrier. */
export interface MapReader {
  get(key: Uint8Array): Uint8Array | undefined;
  scan(prefix: Uint8Array, limit: number): Promise<{ key: Uint8Array; value: Uint8Array }[]>;
}

async function all<T>(r: MapReader, prefix: Buffer, limit: number, decode: (b: Uint8Array) => T): Promise<T[]> {
  return (await r.scan(prefix, limit)).map((kv) => decode(kv.value));
}

class Tx {
  constructor(readonly ctx: DomainContext) {}
  counters(): containerstack.master.Counters {
    const raw = this.ctx.get(COUNTERS);
    return raw ? pb.Counters.decode(raw) : pb.Counters.create({ nextNodeId: 1, nextPartitionGroup: FIRST_PARTITION_GROUP, nextBlockGroup: 1 });
  }
  putCounters(c: containerstack.master.Counters): void {
    this.ctx.put(COUNTERS, pb.Counters.encode(c).finish());
  }
  node(id: number): NodeInfo | undefined {
    const raw = this.ctx.get(nodeKey(id));
    return raw ? pb.NodeInfo.decode(raw) : undefined;
  }
  putNode(n: NodeInfo): void {
    this.ctx.put(nodeKey(n.id), pb.NodeInfo.encode(n).finish());
  }
  volume(name: string): Volume | undefined {
    const raw = this.ctx.get(volKey(name));
    return raw ? pb.Volume.decode(raw) : undefined;
  }
  putVolume(v: Volume): void {
    this.ctx.put(volKey(v.name), pb.Volume.encode(v).finish());
  }
  partition(g: number): Partition | undefined {
    const raw = this.ctx.get(partKey(g));
    return raw ? pb.Partition.decode(raw) : undefined;
  }
  putPartition(p: Partition): void {
    this.ctx.put(partKey(p.groupId), pb.Partition.encode(p).finish());
  }
  group(g: number): BlockGroup | undefined {
    const raw = this.ctx.get(groupKey(g));
    return raw ? pb.BlockGroup.decode(raw) : undefined;
  }
  putGroup(g: BlockGroup): void {
    this.ctx.put(groupKey(g.groupId), pb.BlockGroup.encode(g).finish());
  }
  nodes(): Promise<NodeInfo[]> {
    return all(this.ctx, NODE_PREFIX, MAX_NODES, (b) => pb.NodeInfo.decode(b));
  }

  /** A new partition of `v` after its last one, on the `v.replicas` up metanodes with fewest partitions. */
  async addPartition(v: Volume): Promise<Partition> {
    if (v.partitions.length >= 10_000) fail('ENOSPC', `volume ${v.name} has ${v.partitions.length} partitions`);
    const last = v.partitions.length > 0 ? this.partition(v.partitions[v.partitions.length - 1] as number) : undefined;
    const start = last ? last.end : 1;
    const metas = (await this.nodes()).filter((n) => n.kind === 'meta' && n.state === 'up').sort((a, b) => a.partitions - b.partitions || a.id - b.id);
    if (metas.length < v.replicas) fail('ENOSPC', `${v.replicas} metanodes needed, ${metas.length} up`);
    const chosen = metas.slice(0, v.replicas);
    const c = this.counters();
    const members = chosen.map((n) => n.id).sort((a, b) => a - b);
    const p = pb.Partition.create({ groupId: c.nextPartitionGroup, volume: v.name, start, end: start + v.inoRange, members, founders: members, cursor: start });
    c.nextPartitionGroup++;
    this.putCounters(c);
    for (const n of chosen) {
      n.partitions++;
      this.putNode(n);
    }
    this.putPartition(p);
    v.partitions.push(p.groupId);
    this.putVolume(v);
    return p;
  }
}

type Op = (tx: Tx, req: MasterRequest) => Promise<MasterResponse> | MasterResponse;

export function masterDomains(): Record<string, DomainCommand> {
  return { [MASTER_DOMAIN]: applyMaster };
}

async function applyMaster(ctx: DomainContext, args: Uint8Array): Promise<Uint8Array> {
  let req: containerstack.master.MasterRequest;
  try {
    req = pb.MasterRequest.decode(args);
  } catch (err) {
    fail('EINVAL', `undecodable request: ${(err as Error).message}`);
  }
  const op = OPS[req.op];
  if (!op) fail('EINVAL', `unknown operation ${JSON.stringify(req.op)}`);
  return pb.MasterResponse.encode(await op(new Tx(ctx), req)).finish();
}

function register(tx: Tx, kind: string, address: string, nowMs: number): NodeInfo {
  if (kind !== 'meta' && kind !== 'data') fail('EINVAL', `node kind ${JSON.stringify(kind)}`);
  if (!/^[^\s]{1,255}:\d{1,5}$/.test(address)) fail('EINVAL', `bad node address ${JSON.stringify(address)}`);
  const raw = tx.ctx.get(addrKey(address));
  let n = raw ? tx.node(Buffer.from(raw).readUInt32BE(0)) : undefined;
  if (n && n.kind !== kind) fail('EEXIST', `${address} is registered as a ${n.kind} node`);
  if (!n) {
    const c = tx.counters();
    if (c.nextNodeId > MAX_NODES) fail('ENOSPC', `more than ${MAX_NODES} nodes`);
    n = pb.NodeInfo.create({ id: c.nextNodeId, kind, address, registeredMs: nowMs });
    c.nextNodeId++;
    tx.putCounters(c);
    tx.ctx.put(addrKey(address), u32(n.id));
  }
  n.state = 'up';
  n.lastHeartbeatMs = nowMs;
  tx.putNode(n);
  return n;
}

const OPS: Record<string, Op> = {
  register(tx, req) {
    return { node: register(tx, req.kind ?? '', req.address ?? '', req.nowMs ?? 0) };
  },

  // A metanode reports its partitions; leaders' reports update the map, and a volume whose
  // last partition is nearly out of inos gets a new one.
  async metaHeartbeat(tx, req) {
    const n = tx.node(req.nodeId ?? 0);
    if (!n || n.kind !== 'meta') fail('ENOENT', `no metanode ${req.nodeId}; register first`);
    n.state = 'up';
    n.lastHeartbeatMs = req.nowMs ?? 0;
    n.health = 'ok';
    tx.putNode(n);
    const grow = new Set<string>();
    for (const r of req.partitions ?? []) {
      const p = tx.partition(r.groupId ?? 0);
      if (!p || !p.members.includes(n.id) || !r.leader) continue;
      p.leader = n.id;
      p.nearlyFull = r.nearlyFull ?? false;
      p.inodes = r.inodes ?? 0;
      p.bytes = r.bytes ?? 0;
      p.cursor = r.cursor ?? 0;
      tx.putPartition(p);
      if (p.nearlyFull) grow.add(p.volume);
    }
    const deletedPartitions = await tombstones(tx.ctx, PART_TOMB, n.id, req.destroyedPartitions ?? [], partTombKey);
    const added: Partition[] = [];
    for (const name of grow) {
      const v = tx.volume(name);
      const lastId = v?.partitions[v.partitions.length - 1];
      const last = lastId !== undefined ? tx.partition(lastId) : undefined;
      if (v && last?.nearlyFull) {
        try {
          added.push(await tx.addPartition(v));
        } catch (err) {
          if (!(err instanceof DomainError)) throw err; // no metanodes to place it on: retried at the next heartbeat
        }
      }
    }
    return { node: n, partitions: added, deletedPartitions };
  },

  // A datanode's heartbeat (lib/blockgroup's message): registers it on first contact, updates
  // capacity, and seals groups it reports sealed or full.
  async dataHeartbeat(tx, req) {
    const n = register(tx, 'data', req.address ?? '', req.nowMs ?? 0);
    n.capacityBytes = req.capacityBytes ?? 0;
    n.usedBytes = req.usedBytes ?? 0;
    n.availableBytes = req.availableBytes ?? 0;
    n.health = req.health ?? '';
    tx.putNode(n);
    const max = req.groupMaxBytes ?? 0;
    for (const r of (req.groups ?? []).slice(0, 100_000)) {
      const g = tx.group(r.groupId ?? 0);
      if (!g) continue;
      const len = r.lengthBytes ?? 0;
      let changed = false;
      if (len > g.lengthBytes) {
        g.lengthBytes = len;
        changed = true;
      }
      if (g.state === 'open' && r.state === 'sealed') {
        g.state = 'sealed';
        g.sealedReason = `sealed on ${n.address}`;
        changed = true;
      } else if (g.state === 'open' && max > 0 && g.lengthBytes >= max) {
        g.state = 'sealed';
        g.sealedReason = 'full';
        changed = true;
      }
      if (changed) tx.putGroup(g);
    }
    const deleteGroups = await tombstones(tx.ctx, GROUP_TOMB, n.id, req.deletedGroups ?? [], groupTombKey);
    return { node: n, deleteGroups };
  },

  async createVolume(tx, req) {
    const name = req.volume ?? '';
    if (!VOLUME_NAME.test(name)) fail('EINVAL', `bad volume name ${JSON.stringify(name)} (letters, digits, . _ -; at most 64)`);
    if (tx.volume(name)) fail('EEXIST', `volume ${name} exists`);
    if ((await tx.ctx.scan(VOLUME_PREFIX, MAX_VOLUMES)).length >= MAX_VOLUMES) fail('ENOSPC', `more than ${MAX_VOLUMES} volumes`);
    const replicas = req.replicas || 3;
    if (replicas < 1 || replicas > 7) fail('EINVAL', `replica count ${replicas} (1..7)`);
    const inoRange = req.inoRange || DEFAULT_INO_RANGE;
    if (inoRange < 16 || inoRange > 2 ** 40) fail('EINVAL', `ino range ${inoRange}`);
    const v = pb.Volume.create({ name, quotaBytes: req.quotaBytes ?? 0, replicas, createdMs: req.nowMs ?? 0, inoRange, partitions: [] });
    const p = await tx.addPartition(v);
    return { volume: v, partitions: [p] };
  },

  async deleteVolume(tx, req) {
    const v = tx.volume(req.volume ?? '');
    if (!v) fail('ENOENT', `no volume ${req.volume}`);
    // Every member and replica is told, through its heartbeat answers, to destroy its copy.
    for (const gid of v.partitions) {
      const p = tx.partition(gid);
      if (!p) continue;
      for (const id of p.members) {
        const n = tx.node(id);
        if (n) {
          n.partitions = Math.max(0, n.partitions - 1);
          tx.putNode(n);
        }
        tx.ctx.put(partTombKey(id, gid), new Uint8Array(0));
      }
      for (const id of p.former) if (!p.members.includes(id)) tx.ctx.put(partTombKey(id, gid), new Uint8Array(0));
      tx.ctx.delete(partKey(gid));
    }
    for (const kv of await tx.ctx.scan(GROUP_PREFIX, MAX_GROUPS)) {
      const g = pb.BlockGroup.decode(kv.value);
      if (g.volume !== v.name) continue;
      for (const id of g.replicas) {
        const n = tx.node(id);
        if (n) {
          n.groups = Math.max(0, n.groups - 1);
          tx.putNode(n);
        }
        tx.ctx.put(groupTombKey(id, g.groupId), new Uint8Array(0));
      }
      tx.ctx.delete(kv.key);
    }
    tx.ctx.delete(volKey(v.name));
    return { volume: v };
  },

  // The operator changes a volume's capacity quota (0: unlimited); lifting it makes a full
  // volume writable again once the metanodes hear of it.
  setCapacity(tx, req) {
    const v = tx.volume(req.volume ?? '');
    if (!v) fail('ENOENT', `no volume ${req.volume}`);
    const q = req.quotaBytes ?? 0;
    if (!Number.isSafeInteger(q) || q < 0) fail('EINVAL', `capacity ${q}`);
    v.quotaBytes = q;
    tx.putVolume(v);
    return { volume: v };
  },

  async addPartition(tx, req) {
    const v = tx.volume(req.volume ?? '');
    if (!v) fail('ENOENT', `no volume ${req.volume}`);
    return { volume: v, partitions: [await tx.addPartition(v)] };
  },

  // Places a new block group on `replicas` distinct up datanodes with the most free space.
  async allocateGroup(tx, req) {
    const v = tx.volume(req.volume ?? '');
    if (!v) fail('ENOENT', `no volume ${req.volume}`);
    const datas = (await tx.nodes()).filter((n) => n.kind === 'data' && n.state === 'up' && n.health !== 'down').sort((a, b) => b.availableBytes - a.availableBytes || a.groups - b.groups || a.id - b.id);
    if (datas.length < v.replicas) fail('ENOSPC', `${v.replicas} datanodes needed, ${datas.length} up`);
    const chosen = datas.slice(0, v.replicas);
    const c = tx.counters();
    if (c.nextBlockGroup > MAX_GROUPS) fail('ENOSPC', `more than ${MAX_GROUPS} block groups`);
    const g = pb.BlockGroup.create({ groupId: c.nextBlockGroup, volume: v.name, replicas: chosen.map((n) => n.id), state: 'open', createdMs: req.nowMs ?? 0 });
    c.nextBlockGroup++;
    tx.putCounters(c);
    for (const n of chosen) {
      n.groups++;
      tx.putNode(n);
    }
    tx.putGroup(g);
    return { groups: [g], nodes: chosen };
  },

  sealGroup(tx, req) {
    const g = tx.group(req.groupId ?? 0);
    if (!g) fail('ENOENT', `no block group ${req.groupId}`);
    if (g.state !== 'sealed') {
      g.state = 'sealed';
      g.sealedReason = req.reason || 'requested';
      tx.putGroup(g);
    }
    return { groups: [g] };
  },

  // Failure detection: nodes silent for `timeoutMs` are down; open groups with a replica on a
  // down datanode are sealed (writers move to a new group; the data stays readable).
  async checkNodes(tx, req) {
    const now = req.nowMs ?? 0;
    const timeout = req.timeoutMs || 10_000;
    const changed: NodeInfo[] = [];
    const downData = new Set<number>();
    for (const n of await tx.nodes()) {
      if (n.state === 'up' && n.lastHeartbeatMs + timeout < now) {
        n.state = 'down';
        tx.putNode(n);
        changed.push(n);
      }
      if (n.kind === 'data' && n.state === 'down') downData.add(n.id);
    }
    // A metanode down past replaceAfterMs is replaced in each of its partitions by the up
    // metanode with the fewest partitions; the partition's leader then changes the raft
    // membership (learner, voter, remove the old one). One replacement per partition at a time.
    const replaceAfter = req.replaceAfterMs ?? 0;
    const moved: Partition[] = [];
    if (replaceAfter > 0) {
      const nodes = await tx.nodes();
      const gone = new Set(nodes.filter((n) => n.kind === 'meta' && n.state === 'down' && n.lastHeartbeatMs + replaceAfter < now).map((n) => n.id));
      if (gone.size > 0) {
        for (const kv of await tx.ctx.scan(PARTITION_PREFIX, MAX_PARTITIONS)) {
          const p = pb.Partition.decode(kv.value);
          const old = p.members.find((id) => gone.has(id));
          if (old === undefined) continue;
          const spare = nodes.filter((n) => n.kind === 'meta' && n.state === 'up' && !p.members.includes(n.id)).sort((a, b) => a.partitions - b.partitions || a.id - b.id)[0];
          if (!spare) continue;
          p.members = p.members.map((id) => (id === old ? spare.id : id));
          // The old member keeps a closed copy (never deleted on an absence); it is told to
          // destroy it when the volume is deleted. Bounded: one entry per replacement.
          if (!p.former.includes(old) && p.former.length < 64) p.former.push(old);
          p.former = p.former.filter((id) => !p.members.includes(id));
          tx.putPartition(p);
          spare.partitions++;
          tx.putNode(spare);
          const o = nodes.find((n) => n.id === old);
          if (o) {
            o.partitions = Math.max(0, o.partitions - 1);
            tx.putNode(o);
          }
          moved.push(p);
        }
      }
    }
    const sealed: BlockGroup[] = [];
    if (downData.size > 0) {
      for (const kv of await tx.ctx.scan(GROUP_PREFIX, MAX_GROUPS)) {
        const g = pb.BlockGroup.decode(kv.value);
        if (g.state !== 'open') continue;
        const bad = g.replicas.find((id) => downData.has(id));
        if (bad === undefined) continue;
        g.state = 'sealed';
        g.sealedReason = `replica on node ${bad} down`;
        tx.putGroup(g);
        sealed.push(g);
      }
    }
    return { nodes: changed, groups: sealed, partitions: moved };
  },
};

/** The whole map (or one volume's part of it). */
export async function readView(r: MapReader, volume = ''): Promise<ClusterView> {
  const nodes = await all(r, NODE_PREFIX, MAX_NODES, (b) => pb.NodeInfo.decode(b));
  let volumes = await all(r, VOLUME_PREFIX, MAX_VOLUMES, (b) => pb.Volume.decode(b));
  let partitions = await all(r, PARTITION_PREFIX, MAX_PARTITIONS, (b) => pb.Partition.decode(b));
  let groups = await all(r, GROUP_PREFIX, MAX_GROUPS, (b) => pb.BlockGroup.decode(b));
  if (volume) {
    volumes = volumes.filter((v) => v.name === volume);
    partitions = partitions.filter((p) => p.volume === volume);
    groups = groups.filter((g) => g.volume === volume);
  }
  for (const v of volumes) {
    const ps = partitions.filter((p) => p.volume === v.name);
    v.usedBytes = ps.reduce((s, p) => s + p.bytes, 0);
    v.inodes = ps.reduce((s, p) => s + p.inodes, 0);
    v.full = v.quotaBytes > 0 && v.usedBytes >= v.quotaBytes;
  }
  partitions.sort((a, b) => (a.volume < b.volume ? -1 : a.volume > b.volume ? 1 : a.start - b.start));
  return { nodes, volumes, partitions, groups, leader: 0, masters: [], revision: 0 };
}
