// ContainerDNS records in an embedded table (lib/dns/tablestore.ts): the DnsStore contract,
// watch from a revision, persistence across a restart of the embedded member.
import t from 'tap';
import { startEmbeddedTable } from '../../lib/table/index.js';
import { TableDnsStore } from '../../lib/dns/tablestore.js';
import type { StoreEvent } from '../../lib/dns/store.js';
import { StoreInvalidRecordError, StoreClosedError } from '../../lib/dns/errors.js';
import { tempDirFor } from '../lib/tmp.js';

t.test('DnsStore contract on an embedded table, and a restart', async (t) => {
  const dir = tempDirFor(t, 'dns-table-');
  let emb = await startEmbeddedTable({ dataDir: dir, tickMs: 20 });
  let store = new TableDnsStore(emb.client);
  const r1 = await store.put({ id: 'a', name: 'Web.Default.svc.cluster.local.', type: 'A', value: '10.0.0.1', ttl: 30 });
  await store.put({ id: 'b', name: 'web.default.svc.cluster.local', type: 'A', value: '10.0.0.2' });
  await store.put({ id: 't', name: 'web.default.svc.cluster.local', type: 'TXT', value: 'hello' });
  t.ok(r1 > 0);
  t.equal((await store.get('web.default.svc.cluster.local')).length, 3, 'name is normalised');
  t.equal((await store.get('web.default.svc.cluster.local', 'A')).length, 2);
  await t.rejects(store.put({ id: 'x', name: 'bad..name', type: 'A', value: '1.2.3.4' }), StoreInvalidRecordError);
  const snap = await store.snapshot();
  t.equal(snap.records.length, 3);
  const events: StoreEvent[] = [];
  const w = store.watch(snap.revision, (e) => events.push(e));
  t.equal(await store.delete('web.default.svc.cluster.local', 'b'), true);
  t.equal(await store.delete('web.default.svc.cluster.local', 'b'), false, 'second delete finds nothing');
  await store.setHealth({ ip: '10.0.0.1', status: 'down', changedAtMs: 1 });
  const again = await store.setHealth({ ip: '10.0.0.1', status: 'down', changedAtMs: 2 });
  t.ok(again > 0, 'same status again is not a new write');
  for (let i = 0; i < 200 && events.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.match(events, [{ kind: 'delete', name: 'web.default.svc.cluster.local', id: 'b' }, { kind: 'health', health: { ip: '10.0.0.1', status: 'down' } }]);
  t.equal(events.length, 2, 'exactly the two changes');
  w.close();
  await store.close();
  await t.rejects(store.get('x'), StoreClosedError);
  await emb.close();

  emb = await startEmbeddedTable({ dataDir: dir, tickMs: 20 });
  store = new TableDnsStore(emb.client);
  const after = await store.snapshot();
  t.equal(after.records.length, 2, 'records survived the restart');
  t.match(after.health, [{ ip: '10.0.0.1', status: 'down' }]);
  await store.close();
  await emb.close();
});
