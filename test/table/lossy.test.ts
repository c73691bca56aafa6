// raft.Step goes one way (RpcClient.notify): nothing tells the sender a batch was lost or its
// handler failed. Raft must still elect and commit when batches go missing on the receiving
// side: real hosts on loopback sockets, with each host's raft.Step handler dropping a seeded
// share of the batches that reached it and throwing on a few more.
import t from 'tap';
import { containerstack } from '../../proto/gen/table.js';
import { Prng } from '../../lib/common/index.js';
import { addGroupEverywhere, leaderOf, startCluster, waitFor } from './cluster.js';

const pb = containerstack.table;
const b = (s: string): Buffer => Buffer.from(s);
const put = (k: string, v: string) => ({ ops: [{ kind: pb.Op.Kind.PUT, key: b(k), value: b(v) }] });

t.test('raft elects and commits while a quarter of its message batches are lost', async (t) => {
  const c = await startCluster([1, 2, 3]);
  t.teardown(() => c.close());
  let dropped = 0;
  let thrown = 0;
  let delivered = 0;
  for (const n of c.nodes.values()) {
    const reg = n.rpc.lookup('raft.Step');
    if (reg?.kind !== 'unary') throw new Error('raft.Step is not registered');
    const deliver = reg.fn;
    const prng = new Prng(1000 + n.id);
    reg.fn = (req, ctx) => {
      const r = prng.float();
      if (r < 0.25) {
        dropped++;
        return {};
      }
      if (r < 0.3) {
        thrown++;
        throw new Error('injected handler failure');
      }
      delivered++;
      return deliver(req, ctx);
    };
  }
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3]);
  const leader = await waitFor(() => leaderOf(groups), 'a leader', 20_000);
  for (let i = 0; i < 100; i++) await leader.propose(put(`k${i}`, `v${i}`), 20_000);
  await waitFor(() => [...groups.values()].every((g) => g.sm.appliedIndex >= leader.sm.appliedIndex), 'every replica to apply', 20_000);
  for (const g of groups.values()) {
    for (const i of [0, 57, 99]) t.equal(Buffer.from(g.sm.get(b(`k${i}`))?.value ?? []).toString(), `v${i}`, `replica ${g.host.nodeId} has k${i}`);
  }
  t.ok(dropped > 0 && thrown > 0, `batches lost on the way: ${dropped} dropped, ${thrown} failed, ${delivered} delivered`);
  // A failing handler is not answered and does not close the connection: one per peer stays.
  for (const n of c.nodes.values()) t.ok(n.rpc.connectionCount <= 2, `node ${n.id} serves ${n.rpc.connectionCount} connections`);
});
