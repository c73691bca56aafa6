// The datanode reports itself to a master: a stand-in master (an RpcServer serving the
// heartbeat method) receives capacity, usage, groups with state and length, and health.
import t from 'tap';
import { RpcServer } from '../../lib/rpc/index.js';
import { BlockGroupClient, masterHeartbeatMethod, type HeartbeatMsg } from '../../lib/blockgroup/index.js';
import { makeNode, start, killAll, groupId, eventually } from './helpers.js';

t.teardown(killAll);

t.test('heartbeats carry capacity, groups and health', async (t) => {
  const beats: HeartbeatMsg[] = [];
  const master = new RpcServer({ name: 'fake-master' });
  master.unary(masterHeartbeatMethod, (hb) => {
    if (beats.length < 1000) beats.push(hb);
    return { ok: true };
  });
  const addr = await master.listen(0, '127.0.0.1');
  t.teardown(() => master.close(100));
  const n = await makeNode(['--master', `127.0.0.1:${addr.port}`, '--heartbeat-interval', '200ms']);
  await start(n);
  const client = new BlockGroupClient();
  const gid = groupId();
  const ref = await client.createGroup({ groupId: gid, replicas: [n.address] });
  client.addGroup(ref);
  await client.append(Buffer.alloc(12345, 1));
  await eventually('a heartbeat with the group', async () => beats.some((b) => b.groups?.some((g) => g.groupId === gid && g.lengthBytes === 12345)));
  const last = beats[beats.length - 1] as HeartbeatMsg;
  t.equal(last.nodeAddress, n.address);
  t.ok((last.capacityBytes ?? 0) > 0 && (last.availableBytes ?? 0) > 0 && (last.usedBytes ?? 0) > 0, 'capacity, available and used bytes');
  t.match(last.health, /^(ok|degraded)$/);
  const g = last.groups?.find((x) => x.groupId === gid);
  t.equal(g?.state, 'active');
  t.equal(g?.replicaIndex, 0);
  await client.close();
});
