// A datanode deletes a group's replica only when the master's heartbeat answer names it
// (delete_groups), and confirms in its next heartbeats until the master stops naming it.
// Empty answers, answers without the field and failing answers delete nothing; other groups
// keep serving. A stand-in master (an RpcServer serving the heartbeat method) decides.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { RpcServer } from '../../lib/rpc/index.js';
import { BlockGroupClient, masterHeartbeatMethod, type HeartbeatMsg } from '../../lib/blockgroup/index.js';
import { makeNode, start, killAll, groupId, eventually } from './helpers.js';

t.teardown(killAll);

t.test('groups are deleted only on the master\'s explicit word', async (t) => {
  const beats: HeartbeatMsg[] = [];
  let answer: 'empty' | 'fail' | number[] = 'empty';
  const master = new RpcServer({ name: 'fake-master' });
  master.unary(masterHeartbeatMethod, (hb) => {
    if (beats.length >= 1000) beats.shift();
    beats.push(hb);
    if (answer === 'fail') throw new Error('master: not the leader any more');
    return answer === 'empty' ? { ok: true } : { ok: true, deleteGroups: answer };
  });
  const addr = await master.listen(0, '127.0.0.1');
  t.teardown(() => master.close(100));
  const n = await makeNode(['--master', `127.0.0.1:${addr.port}`, '--heartbeat-interval', '100ms']);
  await start(n);
  const g1 = groupId();
  const g2 = groupId();
  const k: Record<number, Awaited<ReturnType<BlockGroupClient['append']>>> = {};
  const clients: Record<number, BlockGroupClient> = {};
  for (const gid of [g1, g2]) {
    const c = (clients[gid] = new BlockGroupClient());
    c.addGroup(await c.createGroup({ groupId: gid, replicas: [n.address] }));
    k[gid] = await c.append(Buffer.alloc(5000, gid % 251));
  }
  const dir = (gid: number) => join(n.dir, 'groups', String(gid));
  t.ok(existsSync(dir(g1)) && existsSync(dir(g2)), 'both groups on disk');

  // Empty and failing answers: nothing is deleted, whatever the master's map looks like.
  const seen = beats.length;
  await eventually('empty answers', async () => beats.length >= seen + 3);
  answer = 'fail';
  await eventually('failing answers', async () => beats.length >= seen + 6);
  t.ok(existsSync(dir(g1)) && existsSync(dir(g2)), 'an empty or failed answer deletes nothing');

  answer = [g1, 987_654_321];
  await eventually('g1 removed', async () => !existsSync(dir(g1)));
  t.ok(existsSync(dir(g2)), 'the other group stays');
  await eventually('the deletion confirmed', async () => beats.some((b) => (b.deletedGroups ?? []).includes(g1)));
  const confirmed = beats.find((b) => (b.deletedGroups ?? []).includes(g1));
  t.ok(confirmed?.deletedGroups?.includes(987_654_321), 'a named group that was not here is confirmed too (idempotent)');
  t.notOk(confirmed?.groups?.some((g) => g.groupId === g1), 'and no longer reported');
  answer = 'empty';
  const after = beats.length;
  await eventually('more beats', async () => beats.length >= after + 3);
  t.notOk(beats.slice(after + 1).some((b) => (b.deletedGroups ?? []).length > 0), 'confirmations stop once the master took them');

  t.same((await clients[g2]!.read(k[g2]!)).length, 5000, 'the other group still reads');
  const err = await clients[g1]!.read(k[g1]!).catch((e: unknown) => e);
  t.ok(err instanceof Error, 'the deleted group no longer reads');
  for (const c of Object.values(clients)) await c.close();
});
