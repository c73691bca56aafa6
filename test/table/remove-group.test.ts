// RaftHost.removeGroup: one group of a running host is closed (proposals and reads fail with
// TableClosedError, messages for it are dropped) and, with destroy, its log and state leave the
// level databases, while another group on the same hosts keeps serving. Also: destroying a
// group this host no longer runs (left on disk by an earlier run).
import t from 'tap';
import { join } from 'node:path';
import { LevelDurableLog, TableClosedError, type TableGroup } from '../../lib/table/index.js';
import { containerstack } from '../../proto/gen/table.js';
import { addGroupEverywhere, leaderOf, startCluster, waitFor } from './cluster.js';

const put = (k: string | Buffer, v: string | Buffer) => ({ ops: [{ kind: containerstack.table.Op.Kind.PUT, key: Buffer.from(k), value: Buffer.from(v) }] });

const logs = new Map<number, LevelDurableLog>();
const c = await startCluster([1, 2, 3], {
  tickMs: 10,
  makeLog: async (id, dir) => {
    const l = await LevelDurableLog.open(join(dir, 'log'));
    logs.set(id, l);
    return l;
  },
});
t.teardown(() => c.close());

// Keys of one group in either database (state: 't'<id>..., 'g'<id>; log: 'l'/'h'/'s'<id>).
async function keysOf(id: number, groupId: number): Promise<number> {
  const n = c.nodes.get(id)!;
  const real = logs.get(id)!;
  let count = 0;
  const gid = Buffer.alloc(4);
  gid.writeUInt32BE(groupId);
  for (const db of [n.db, real.db]) {
    for await (const k of db.keys()) {
      const b = Buffer.from(k);
      if ([0x74, 0x67, 0x6c, 0x68, 0x73].includes(b[0] as number) && b.length >= 5 && b.subarray(1, 5).equals(gid)) count++;
    }
  }
  return count;
}

t.test('close and destroy one group while another keeps serving', async (t) => {
  const a = await addGroupEverywhere(c.nodes, 10, [1, 2, 3]);
  const b = await addGroupEverywhere(c.nodes, 11, [1, 2, 3]);
  const la = await waitFor(() => leaderOf(a), 'leader of 10');
  const lb = await waitFor(() => leaderOf(b), 'leader of 11');
  for (let i = 0; i < 20; i++) {
    await la.propose(put(`a${i}`, 'x'));
    await lb.propose(put(`b${i}`, 'y'));
  }
  for (const id of [1, 2, 3]) t.ok((await keysOf(id, 10)) > 0, `group 10 has keys on node ${id}`);
  const before11 = await keysOf(1, 11);

  // A proposal in flight when the group goes: it fails, it does not hang.
  const inflight = la.propose(put('late', 'z')).then(() => 'applied', (e: unknown) => (e instanceof TableClosedError ? 'closed' : String(e)));
  for (const id of [1, 2, 3]) t.equal(await c.nodes.get(id)!.host.removeGroup(10, { destroy: true }), true, `node ${id} hosted group 10`);
  t.ok(['applied', 'closed'].includes(await inflight), 'the in-flight proposal settled');
  t.rejects(la.propose(put('after', 'z')), TableClosedError, 'proposals on a removed group fail');
  t.equal(c.nodes.get(1)!.host.group(10), undefined, 'no longer hosted');
  for (const id of [1, 2, 3]) t.equal(await keysOf(id, 10), 0, `group 10 has no keys left on node ${id}`);

  // The other group: untouched and still writable.
  const lb2: TableGroup = await waitFor(() => leaderOf(b), 'leader of 11');
  await lb2.propose(put('b-after', 'y'));
  t.equal(Buffer.from(lb2.sm.get(Buffer.from('b19'))!.value).toString(), 'y');
  t.ok((await keysOf(1, 11)) >= before11, 'group 11 kept its keys');

  // Removing again, or a group never hosted: nothing to close; destroy is idempotent.
  t.equal(await c.nodes.get(1)!.host.removeGroup(10, { destroy: true }), false);
  t.equal(await c.nodes.get(1)!.host.removeGroup(999, { destroy: true }), false);
});

t.test('close without destroy keeps the data: the group reopens where it was', async (t) => {
  const g = await addGroupEverywhere(c.nodes, 12, [1, 2, 3]);
  const l = await waitFor(() => leaderOf(g), 'leader of 12');
  await l.propose(put('k', 'kept'));
  await waitFor(() => [...g.values()].every((x) => x.sm.get(Buffer.from('k')) !== undefined), 'replicated');
  const n1 = c.nodes.get(1)!;
  t.equal(await n1.host.removeGroup(12), true);
  t.ok((await keysOf(1, 12)) > 0, 'data still on disk');
  const again = await n1.host.addGroup(12, { voters: [1, 2, 3] });
  t.equal(Buffer.from(again.sm.get(Buffer.from('k'))!.value).toString(), 'kept', 'state back after reopening');
});
