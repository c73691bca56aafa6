// The master on 3 in-process replicas over real sockets: node registration, volumes and their
// errors, partition placement and growth, block-group placement on fake datanodes, datanode
// heartbeats (also sent to a follower), failure detection with sealing, and metanodes that
// follow the master's assignments so a MetaClient works from the master's routes alone.
import t from 'tap';
import { RpcPool, RpcServer } from '../../lib/rpc/index.js';
import { registerTableService } from '../../lib/table/index.js';
import { blockGroupService, masterHeartbeatMethod } from '../../lib/blockgroup/index.js';
import {
  MasterClient, MasterServer, masterDomains, MasterExistsError, MasterNotFoundError, MasterNoCapacityError, MasterBadRequestError,
} from '../../lib/master/index.js';
import { MetaClient, MetaNode, registerMetaService, ROOT_INO } from '../../lib/meta/index.js';
import { addGroupEverywhere, leaderOf, startCluster, waitFor, type TestNode } from '../table/cluster.js';

let clock = 1_000_000;
const masters = await startCluster([1, 2, 3], { tickMs: 10 });
const groups = await addGroupEverywhere(masters.nodes, 1, [1, 2, 3], { domains: masterDomains() });
const servers = new Map<number, MasterServer>();
for (const [id, n] of masters.nodes) {
  registerTableService(n.rpc, n.host);
  servers.set(id, new MasterServer({ host: n.host, group: groups.get(id)!, rpc: n.rpc, pool: n.pool, now: () => clock, nodeTimeoutMs: 5000, groupMaxBytes: 1000, replaceAfterMs: 10_000 }));
}
await waitFor(() => leaderOf(groups), 'a master leader');
const endpoints = [...masters.peers.values()];
const pool = new RpcPool({ backoffBaseMs: 10, backoffMaxMs: 100 });
const m = new MasterClient({ endpoints, pool });
const cleanup: (() => Promise<void>)[] = [];
t.teardown(async () => {
  for (const f of cleanup.reverse()) await f();
  await m.close();
  await pool.close();
  await masters.close();
});

// Fake datanodes: they accept CreateGroup (recording it) and can fail it on demand.
const created = new Map<string, number[]>();
const datanodes: string[] = [];
let failCreate = false;
for (let i = 0; i < 4; i++) {
  const rpc = new RpcServer();
  const a = await rpc.listen(0);
  const addr = `127.0.0.1:${a.port}`;
  datanodes.push(addr);
  created.set(addr, []);
  rpc.unary(blockGroupService.createGroup, (req) => {
    if (failCreate) throw new Error('disk on fire');
    created.get(addr)!.push(req.groupId ?? 0);
    return { replicaIndex: (req.replicas ?? []).indexOf(addr) };
  });
  cleanup.push(() => rpc.close(100));
}
const heartbeat = (addr: string, availableBytes: number, groupsRep: { groupId: number; state: string; lengthBytes: number }[] = [], to = endpoints[0] as string) =>
  pool.get(to).call(masterHeartbeatMethod, { nodeAddress: addr, capacityBytes: 1e12, usedBytes: 1e12 - availableBytes, availableBytes, health: 'ok', groups: groupsRep }, { deadlineMs: 5000 });

t.test('volumes: errors before there are metanodes, then create/list/info/delete', async (t) => {
  t.rejects(m.createVolume('v1'), MasterNoCapacityError, 'no metanodes yet');
  const metas = [];
  for (let i = 1; i <= 3; i++) metas.push(await m.register('meta', `127.0.0.1:${50000 + i}`));
  t.same(metas.map((n) => n.id), [1, 2, 3], 'ids in order');
  t.equal((await m.register('meta', '127.0.0.1:50001')).id, 1, 'registering again keeps the id');
  t.rejects(m.register('data', '127.0.0.1:50001'), MasterExistsError, 'an address is one kind');
  t.rejects(m.register('meta', 'not-an-address'), MasterBadRequestError);
  const r = await m.createVolume('v1', { quotaBytes: 1 << 30, inoRange: 1000 });
  t.equal(r.volume.replicas, 3);
  t.equal(r.partitions.length, 1);
  t.same(r.partitions[0]?.members, [1, 2, 3]);
  t.equal(r.partitions[0]?.start, 1);
  t.equal(r.partitions[0]?.end, 1001);
  t.rejects(m.createVolume('v1'), MasterExistsError);
  t.rejects(m.createVolume('bad name'), MasterBadRequestError);
  t.rejects(m.createVolume('v9', { replicas: 9 }), MasterBadRequestError);
  t.rejects(m.createVolume('v9', { replicas: 5 }), MasterNoCapacityError, 'five replicas need five metanodes');
  await m.createVolume('v2', { replicas: 1 });
  t.same((await m.volumes()).map((v) => v.name), ['v1', 'v2']);
  const info = await m.volumeInfo('v1');
  t.equal(info.volume.quotaBytes, 1 << 30);
  t.equal(info.partitions.length, 1);
  t.rejects(m.volumeInfo('nope'), MasterNotFoundError);
  await m.deleteVolume('v2');
  t.rejects(m.deleteVolume('v2'), MasterNotFoundError);
  t.same((await m.volumes()).map((v) => v.name), ['v1']);
  const routes = await m.routes('v1');
  t.same(routes.map((x) => [x.groupId, x.start, x.end, x.members.length]), [[1000, 1, 1001, 3]]);
  const v = await m.view();
  t.ok(v.leader > 0, 'the view names the master leader');
  t.equal(v.masters.length, 3);
});

t.test('datanode heartbeats register datanodes; block groups go to 3 distinct nodes with the most space', async (t) => {
  await heartbeat(datanodes[0] as string, 100);
  await heartbeat(datanodes[1] as string, 400);
  // a heartbeat sent to a follower is forwarded to the leader
  const follower = [...masters.nodes.values()].find((n) => !groups.get(n.id)!.isLeader) as TestNode;
  await heartbeat(datanodes[2] as string, 300, [], masters.peers.get(follower.id));
  let v = await m.view();
  t.equal(v.nodes.filter((n) => n.kind === 'data').length, 3, 'three datanodes, one of them via a follower');
  await heartbeat(datanodes[3] as string, 200);
  const g = await m.allocateGroup('v1');
  t.same(g.replicas, [datanodes[1], datanodes[2], datanodes[3]], 'most available first');
  t.equal(new Set(g.replicas).size, 3);
  for (const a of g.replicas) t.same(created.get(a), [g.groupId], `replica created on ${a}`);
  t.same(await m.locateGroup(g.groupId), { groupId: g.groupId, replicas: g.replicas, state: 'open' });
  t.rejects(m.locateGroup(999), MasterNotFoundError);
  t.rejects(m.allocateGroup('nope'), MasterNotFoundError);
  // a replica that cannot create its part: the placement is sealed, the caller told
  failCreate = true;
  const err = await m.allocateGroup('v1').catch((e: unknown) => e);
  failCreate = false;
  t.equal((err as { code?: string }).code, 'MASTER_PLACEMENT_FAILED');
  v = await m.view();
  t.equal(v.groups.find((x) => x.groupId === g.groupId + 1)?.state, 'sealed');
  // a group reported sealed by a replica, and one past the size limit (1000 bytes here)
  const g2 = await m.allocateGroup('v1');
  await heartbeat(g.replicas[0] as string, 400, [{ groupId: g.groupId, state: 'sealed', lengthBytes: 10 }]);
  await heartbeat(g2.replicas[0] as string, 400, [{ groupId: g2.groupId, state: 'active', lengthBytes: 5000 }]);
  v = await m.view();
  t.equal(v.groups.find((x) => x.groupId === g.groupId)?.state, 'sealed', 'sealed on a replica');
  const full = v.groups.find((x) => x.groupId === g2.groupId);
  t.equal(full?.state, 'sealed');
  t.equal(full?.sealedReason, 'full');
  t.equal(full?.lengthBytes, 5000);
});

t.test('failure detection: silent nodes go down, their open groups are sealed, a heartbeat brings them back', async (t) => {
  const g = await m.allocateGroup('v1');
  clock += 3000;
  for (const a of datanodes) if (a !== g.replicas[0]) await heartbeat(a, 400);
  for (const s of servers.values()) await s.check();
  let v = await m.view();
  t.ok(v.nodes.filter((n) => n.kind === 'data').every((n) => n.state === 'up'), 'within the timeout all is well');
  clock += 3000; // g.replicas[0] has now been silent for 6s > 5s, the others 3s
  for (const s of servers.values()) await s.check();
  v = await m.view();
  const down = v.nodes.filter((n) => n.state === 'down').map((n) => n.address);
  t.ok(down.includes(g.replicas[0] as string), 'the silent datanode is down');
  t.ok(down.includes('127.0.0.1:50001'), 'so are the (fake) metanodes that never heartbeat');
  t.equal(v.groups.find((x) => x.groupId === g.groupId)?.state, 'sealed', 'its open group is sealed');
  t.match(v.groups.find((x) => x.groupId === g.groupId)?.sealedReason, /down/);
  await heartbeat(g.replicas[0] as string, 400);
  v = await m.view();
  t.equal(v.nodes.find((n) => n.address === g.replicas[0])?.state, 'up', 'back up after a heartbeat');
  const g3 = await m.allocateGroup('v1');
  t.ok(g3.replicas.every((a) => !down.includes(a) || a === g.replicas[0]), 'down nodes get no new groups');
});

t.test('metanodes follow the master: host partitions, init them, and a volume grows a partition when one fills', async (t) => {
  clock += 1;
  const metaCluster = await startCluster([], { tickMs: 10 });
  cleanup.push(() => metaCluster.close());
  const nodes: MetaNode[] = [];
  for (let i = 0; i < 3; i++) {
    const rpc = new RpcServer();
    const a = await rpc.listen(0);
    const addr = `127.0.0.1:${a.port}`;
    const id = (await m.register('meta', addr)).id;
    // A host per metanode, made the way cmd/fs/meta.ts does (the id comes from the master).
    const n = await startMetaHost(id, addr, rpc);
    cleanup.push(n.close);
    const mn = new MetaNode({ host: n.host, pool: n.pool, master: new MasterClient({ endpoints, pool: n.pool }), nodeId: id, address: addr, heartbeatIntervalMs: 50, maintenanceIntervalMs: 100_000, now: () => clock });
    mn.start();
    cleanup.push(async () => mn.stop());
    nodes.push(mn);
  }
  const ids = nodes.map((x) => (x as unknown as { o: { nodeId: number } }).o.nodeId);
  await m.createVolume('fs', { inoRange: 50 });
  await waitFor(() => nodes.every((x) => x.partitions.length === 1), 'every metanode to host the partition');
  const c = new MetaClient({ routes: () => m.routes('fs'), inoMode: 'cursor' });
  cleanup.push(() => c.close());
  const root = await retry(() => c.getattr(ROOT_INO));
  t.equal(root.ino, ROOT_INO, 'the leading metanode initialized the partition (root exists)');
  const v0 = await m.view('fs');
  t.same(v0.partitions[0]?.members, [...ids].sort((a, b) => a - b));
  for (let i = 0; i < 46; i++) await c.create(ROOT_INO, `f${i}`, 0o644);
  await waitForAsync(async () => (await m.view('fs')).partitions.length === 2, 'the master to add a partition');
  const v1 = await m.view('fs');
  t.same(v1.partitions.map((p) => [p.start, p.end]), [[1, 51], [51, 101]], 'the next ino range');
  await waitFor(() => nodes.every((x) => x.partitions.length === 2), 'metanodes to host it');
  // The old partition runs out; new inodes go to the new one (cross-partition creates).
  for (let i = 46; i < 60; i++) await retry(() => c.create(ROOT_INO, `f${i}`, 0o644));
  const all = await c.readdirAll(ROOT_INO);
  t.equal(all.length, 60);
  t.ok(all.some((e) => e.ino >= 51), 'some inodes live in the new partition');
  t.equal((await c.lookup(ROOT_INO, 'f59')).inode.ino >= 51, true);

  // A client dies holding an unlinked file open: the leading metanode's maintenance reclaims
  // the orphan once the client's lease has run out (times come from the metanodes' clock).
  const dying = new MetaClient({ routes: () => m.routes('fs'), leaseMs: 5000, now: () => clock });
  const f = await retry(() => dying.create(ROOT_INO, 'held', 0o644));
  await dying.openHandle(f.ino);
  await c.unlink(ROOT_INO, 'held');
  t.equal((await c.getattr(f.ino)).nlink, 0, 'an orphan while open');
  await dying.close(); // "crashes": no close, no more lease renewals
  for (const n of nodes) await n.maintain();
  t.equal((await c.getattr(f.ino)).nlink, 0, 'kept while the lease is valid');
  clock += 6000;
  for (const n of nodes) await n.maintain();
  t.equal(await retry(async () => {
    const code = await c.getattr(f.ino).then(() => '', (e: { code?: string }) => e.code ?? '');
    if (code !== 'ENOENT') throw new Error('not yet');
    return code;
  }), 'ENOENT', 'reclaimed after the lease expired');
});

t.test('a metanode down for good is replaced in its partitions; the leader moves the raft membership', async (t) => {
  await m.deleteVolume('v1'); // its partition's (fake) members never ran
  const started: { id: number; mn: MetaNode; close: () => Promise<void> }[] = [];
  for (let i = 0; i < 4; i++) {
    const rpc = new RpcServer();
    const a = await rpc.listen(0);
    const addr = `127.0.0.1:${a.port}`;
    const id = (await m.register('meta', addr)).id;
    const n = await startMetaHost(id, addr, rpc);
    const mn = new MetaNode({ host: n.host, pool: n.pool, master: new MasterClient({ endpoints, pool: n.pool }), nodeId: id, address: addr, heartbeatIntervalMs: 50, maintenanceIntervalMs: 100_000, now: () => clock });
    mn.start();
    started.push({ id, mn, close: async () => (mn.stop(), await n.close()) });
    cleanup.push(async () => {
      mn.stop();
      await n.close().catch(() => undefined);
    });
  }
  const r = await m.createVolume('rep', { inoRange: 1000 });
  const p0 = r.partitions[0]!;
  t.same(p0.members, started.slice(0, 3).map((x) => x.id), 'placed on the three emptiest metanodes');
  const c = new MetaClient({ routes: () => m.routes('rep') });
  cleanup.push(() => c.close());
  await retry(() => c.create(ROOT_INO, 'before', 0o644));
  // The first member dies for good.
  const dead = started[0]!;
  await dead.close();
  clock += 20_000;
  await new Promise((res) => setTimeout(res, 300)); // live nodes heartbeat with the new time
  for (const s of servers.values()) await s.check();
  const v = await m.view('rep');
  const members = v.partitions[0]!.members;
  t.notOk(members.includes(dead.id), 'the dead metanode left the member list');
  t.equal(members.length, 3);
  t.ok(members.includes(started[3]!.id), 'the spare metanode took its place');
  t.same(v.partitions[0]!.founders, p0.members, 'founders are kept');
  t.same(v.partitions[0]!.former, [dead.id], 'the replaced member is remembered (it keeps a closed copy)');
  // The spare hosts the partition, the leader adds it (learner, voter) and removes the dead one.
  const spare = started[3]!.mn;
  await waitFor(() => spare.partitions.includes(p0.groupId), 'the spare to host the partition');
  await waitForAsync(async () => {
    const g = spare.group(p0.groupId);
    const cs = g?.node.confState();
    return Boolean(cs && [...cs.voters].sort().join() === [...members].sort().join() && g!.sm.get(Buffer.from('m/part')));
  }, 'the raft membership to follow the master, and the spare to have the state', 20_000);
  t.pass('voters are the new members; the spare caught up');
  await c.refresh();
  await retry(() => c.create(ROOT_INO, 'after', 0o644));
  t.same((await c.readdirAll(ROOT_INO)).map((e) => e.name.toString()), ['after', 'before'], 'the partition serves with its new member');
  // Deleting the volume also tells the replaced member (should it come back) to destroy its copy.
  await c.close();
  await m.deleteVolume('rep');
  const deadInfo = (await m.view()).nodes.find((n) => n.id === dead.id)!;
  const ans = await m.metaHeartbeat({ nodeId: dead.id, address: deadInfo.address, partitions: [] });
  t.ok(ans.deletedPartitions?.includes(p0.groupId), 'the former member is named too');
  await waitFor(() => !spare.partitions.includes(p0.groupId), 'the live members to drop the deleted partition');
  t.equal(spare.group(p0.groupId), undefined, 'closed on the spare');
});

async function retry<T>(fn: () => Promise<T>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
async function waitForAsync(fn: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startMetaHost(id: number, addr: string, rpc: RpcServer) {
  const { join } = await import('node:path');
  const { tempDir, removeTempDir } = await import('../lib/tmp.js');
  const { Level } = await import('level');
  const { RaftHost, MemoryDurableLog } = await import('../../lib/table/index.js');
  const dir = tempDir(`metanode-${id}-`);
  const db = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const p = new RpcPool({ backoffBaseMs: 10, backoffMaxMs: 100 });
  const log = new MemoryDurableLog();
  const host = new RaftHost({ nodeId: id, db, log, peers: new Map([[id, addr]]), rpc, pool: p, tickMs: 10, seed: id });
  registerTableService(rpc, host);
  registerMetaService(rpc, host);
  host.start();
  return {
    host,
    pool: p,
    close: async () => {
      await host.close();
      await rpc.close(100);
      await p.close();
      await log.close();
      await db.close();
      await removeTempDir(dir);
    },
  };
}
