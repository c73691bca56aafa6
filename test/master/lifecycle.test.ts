// The master's side of volume capacity and deletion, on 3 in-process replicas over real
// sockets with stand-in datanodes and metanodes: used bytes come from partition leaders'
// reports, a volume is full at used >= capacity (and the metanodes' answers say so), setCapacity
// lifts it; deleting a volume tombstones its partitions and block groups per node, named in
// heartbeat answers until the node confirms, and never anything of another volume.
import t from 'tap';
import { RpcPool, RpcServer } from '../../lib/rpc/index.js';
import { registerTableService } from '../../lib/table/index.js';
import { blockGroupService, masterHeartbeatMethod } from '../../lib/blockgroup/index.js';
import { MasterClient, MasterServer, masterDomains, MasterNotFoundError, MasterBadRequestError } from '../../lib/master/index.js';
import { addGroupEverywhere, leaderOf, startCluster, waitFor } from '../table/cluster.js';

const masters = await startCluster([1, 2, 3], { tickMs: 10 });
const groups = await addGroupEverywhere(masters.nodes, 1, [1, 2, 3], { domains: masterDomains() });
for (const [id, n] of masters.nodes) {
  registerTableService(n.rpc, n.host);
  new MasterServer({ host: n.host, group: groups.get(id)!, rpc: n.rpc, pool: n.pool });
}
await waitFor(() => leaderOf(groups), 'a master leader');
const endpoints = [...masters.peers.values()];
const pool = new RpcPool({ backoffBaseMs: 10, backoffMaxMs: 100 });
const m = new MasterClient({ endpoints, pool });
const closers: (() => Promise<void>)[] = [];
t.teardown(async () => {
  for (const f of closers) await f();
  await m.close();
  await pool.close();
  await masters.close();
});

const datanodes: string[] = [];
for (let i = 0; i < 3; i++) {
  const rpc = new RpcServer();
  const a = await rpc.listen(0);
  const addr = `127.0.0.1:${a.port}`;
  datanodes.push(addr);
  rpc.unary(blockGroupService.createGroup, (req) => ({ replicaIndex: (req.replicas ?? []).indexOf(addr) }));
  closers.push(() => rpc.close(100));
}
const dataBeat = (addr: string, deletedGroups: number[] = []) =>
  pool.get(endpoints[0] as string).call(masterHeartbeatMethod, { nodeAddress: addr, capacityBytes: 1e12, usedBytes: 0, availableBytes: 1e12, health: 'ok', groups: [], deletedGroups }, { deadlineMs: 5000 });
const metas: Awaited<ReturnType<MasterClient['register']>>[] = [];
for (let i = 1; i <= 3; i++) metas.push(await m.register('meta', `127.0.0.1:${51000 + i}`));
for (const d of datanodes) await dataBeat(d);

t.test('capacity: full at used >= capacity, in the view and the metanodes\' answers; setCapacity lifts it', async (t) => {
  const { partitions } = await m.createVolume('small', { quotaBytes: 1000 });
  const p = partitions[0]!;
  const report = (bytes: number, nodeId = p.members[0]!) => m.metaHeartbeat({ nodeId, address: metas[nodeId - 1]!.address, partitions: [{ groupId: p.groupId, leader: true, bytes, inodes: 3, cursor: p.start + 3 }] });
  let r = await report(999);
  t.same(r.volumes?.map((v) => [v.name, v.quotaBytes, v.usedBytes, v.full ?? false]), [['small', 1000, 999, false]], 'under the capacity');
  r = await report(1000);
  t.equal(r.volumes?.[0]?.full, true, 'the metanode hears the volume is full');
  let info = await m.volumeInfo('small');
  t.equal(info.volume.full, true, 'the view says full');
  t.equal(info.volume.usedBytes, 1000);
  // A follower's report does not count (only leaders report the partition's counters).
  await m.metaHeartbeat({ nodeId: p.members[1]!, address: metas[p.members[1]! - 1]!.address, partitions: [{ groupId: p.groupId, leader: false, bytes: 0 }] });
  t.equal((await m.volumeInfo('small')).volume.usedBytes, 1000, 'a follower report changes nothing');
  const v = await m.setCapacity('small', 5000);
  t.equal(v.quotaBytes, 5000);
  r = await report(1000);
  t.equal(r.volumes?.[0]?.full, false, 'lifted');
  t.equal((await m.setCapacity('small', 0)).quotaBytes, 0, '0: unlimited');
  info = await m.volumeInfo('small');
  t.equal(info.volume.full, false, 'an unlimited volume is never full');
  t.rejects(m.setCapacity('nope', 1), MasterNotFoundError);
  t.rejects(m.setCapacity('small', -1), MasterBadRequestError);
});

t.test('deletion: tombstones per node, answered until confirmed, nothing of other volumes', async (t) => {
  await m.createVolume('gone');
  await m.createVolume('stays');
  const g1 = await m.allocateGroup('gone');
  const g2 = await m.allocateGroup('stays');
  const before = await m.view();
  const pGone = before.partitions.find((p) => p.volume === 'gone')!;
  const pStays = before.partitions.find((p) => p.volume === 'stays')!;
  // Before the deletion nobody is told to delete anything.
  for (const d of datanodes) t.same((await dataBeat(d)).deleteGroups ?? [], [], `nothing to delete on ${d} yet`);
  for (const n of metas) t.same((await m.metaHeartbeat({ nodeId: n.id, address: n.address, partitions: [] })).deletedPartitions ?? [], [], `nothing to destroy on metanode ${n.id} yet`);

  await m.deleteVolume('gone');
  for (const d of datanodes) {
    const ack = await dataBeat(d);
    t.same(ack.deleteGroups, g1.replicas.includes(d) ? [g1.groupId] : [], `${d} told to delete exactly the deleted volume's group`);
    t.notOk((ack.deleteGroups ?? []).includes(g2.groupId), 'never the other volume\'s');
    t.same((await dataBeat(d)).deleteGroups, ack.deleteGroups, 'named again until confirmed');
    t.same((await dataBeat(d, ack.deleteGroups ?? [])).deleteGroups ?? [], [], 'confirmed: no longer named');
    t.same((await dataBeat(d)).deleteGroups ?? [], [], 'and stays so');
  }
  for (const n of metas) {
    const r = await m.metaHeartbeat({ nodeId: n.id, address: n.address, partitions: [] });
    t.same(r.deletedPartitions, pGone.members.includes(n.id) ? [pGone.groupId] : [], `metanode ${n.id} told to destroy the deleted partition`);
    t.ok((r.partitions ?? []).some((p) => p.groupId === pStays.groupId) === pStays.members.includes(n.id), 'and still assigned the other volume\'s');
    const again = await m.metaHeartbeat({ nodeId: n.id, address: n.address, partitions: [], destroyedPartitions: r.deletedPartitions ?? [] });
    t.same(again.deletedPartitions ?? [], [], 'confirmed');
  }
  const after = await m.view();
  t.notOk(after.groups.some((g) => g.volume === 'gone') || after.partitions.some((p) => p.volume === 'gone'), 'the map forgot the volume');
  t.ok(after.groups.some((g) => g.groupId === g2.groupId), 'the other volume\'s group is in the map');
});
