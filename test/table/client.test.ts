// TableClient against a 3-member cluster (real sockets): every operation, leader discovery,
// failover during writes, and a watch that resumes across the loss of its member.
import t from 'tap';
import { TableClient, registerTableService, CommandFailedError, type TableEvent } from '../../lib/table/index.js';
import { DomainError } from '../../lib/table/errors.js';
import { addGroupEverywhere, leaderOf, startCluster, stopNode, waitFor, type TestNode } from './cluster.js';

async function cluster() {
  const c = await startCluster([1, 2, 3]);
  for (const n of c.nodes.values()) registerTableService(n.rpc, n.host);
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3], {
    domains: {
      append: (ctx, args) => {
        const cur = Buffer.from(ctx.get(Buffer.from('log')) ?? []);
        const next = Buffer.concat([cur, Buffer.from(args)]);
        if (next.length > 1000) throw new DomainError('EFBIG', 'log too long');
        ctx.put(Buffer.from('log'), next);
        return Buffer.from(String(next.length));
      },
    },
  });
  await waitFor(() => leaderOf(groups), 'leader');
  return { c, groups };
}

t.test('operations through the client', async (t) => {
  const { c } = await cluster();
  t.teardown(() => c.close());
  // Start at a follower's address on purpose: the client must follow the hint.
  const client = new TableClient({ endpoints: [...c.peers.values()].reverse() });
  t.teardown(() => client.close());
  const p = await client.put('a', '1');
  t.ok(p.revision > 0);
  t.equal(Buffer.from((await client.get('a'))!.value).toString(), '1');
  t.equal(await client.get('missing'), undefined);
  const ok = await client.txn([{ key: 'a', value: '1' }], [{ put: 'a', value: '2' }], [{ put: 'b', value: 'failed' }]);
  t.equal(ok.succeeded, true);
  const no = await client.txn([{ key: 'a', value: '1' }], [{ put: 'a', value: '3' }], [{ put: 'b', value: 'failed' }]);
  t.equal(no.succeeded, false);
  t.equal(Buffer.from((await client.get('b'))!.value).toString(), 'failed');
  await client.batch([{ put: 'dir/x', value: '1' }, { put: 'dir/y', value: '2' }, { delete: 'b' }]);
  const r = await client.range({ prefix: 'dir/' });
  t.same(r.kvs.map((kv) => Buffer.from(kv.key).toString()), ['dir/x', 'dir/y']);
  t.equal(await client.get('b'), undefined);
  t.equal(Buffer.from(await client.domain('append', Buffer.from('hello'))).toString(), '5');
  const e = await client.domain('append', Buffer.alloc(2000)).catch((x: unknown) => x);
  t.ok(e instanceof CommandFailedError && e.domainCode === 'EFBIG', 'domain error code reaches the client');
  const stale = await client.get('a', 'stale');
  t.ok(stale, 'stale read from any member');
  const st = await client.status();
  t.ok(st.leaderId && st.voters?.length === 3, 'status names leader and voters');
});

t.test('failover: writes continue and the watch misses nothing', async (t) => {
  const { c, groups } = await cluster();
  t.teardown(() => c.close());
  const client = new TableClient({ endpoints: [...c.peers.values()], deadlineMs: 15_000 });
  t.teardown(() => client.close());
  const seen: TableEvent[] = [];
  const w = client.watch('w/', 0, (evs) => seen.push(...evs));
  t.teardown(() => w.cancel());
  await w.ready;
  for (let i = 0; i < 30; i++) await client.put(`w/${i}`, String(i));
  const leader = leaderOf(groups)!;
  await stopNode(c.nodes.get(leader.host.nodeId) as TestNode);
  c.nodes.delete(leader.host.nodeId);
  groups.delete(leader.host.nodeId);
  for (let i = 30; i < 60; i++) await client.put(`w/${i}`, String(i));
  await waitFor(() => seen.length >= 60, 'all 60 events', 15_000);
  const keys = seen.map((e) => Buffer.from(e.kv.key).toString());
  t.equal(seen.length, 60, 'no duplicates');
  t.same(keys, Array.from({ length: 60 }, (_, i) => `w/${i}`), 'every event, in order, across the failover');
  const revs = seen.map((e) => e.revision);
  t.ok(revs.every((r, i) => i === 0 || r > revs[i - 1]!), 'revisions increase');
});
