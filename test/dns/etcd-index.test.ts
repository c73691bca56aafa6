// The contract between the etcd store and its main consumer, the server's ZoneIndex: the index
// follows puts, deletes and health through the watch, and re-lists on `reset` (here: etcd
// rebuilt from scratch, so its revision went backwards).
import t from 'tap';
import { EtcdDnsStore } from '../../lib/dns/etcd/store.js';
import { ZoneIndex } from '../../lib/dns/zoneindex.js';
import { EtcdProcess, etcdAvailable } from './etcd-helpers.js';

// Real processes (node, etcd) start slowly on a loaded machine; the runner's own limit still applies.
t.setTimeout(300_000);

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('ZoneIndex on EtcdDnsStore: follows changes and re-lists on reset', { skip: etcdAvailable() ? false : 'etcd not installed' }, async (t) => {
  const etcd = await EtcdProcess.start();
  const store = new EtcdDnsStore({ endpoints: [etcd.url], reconnectBaseMs: 20, reconnectMaxMs: 200, timeoutMs: 2000 });
  const index = new ZoneIndex({ zones: [{ name: 'cluster.local', nameservers: ['ns.cluster.local'], hostmaster: 'hostmaster.cluster.local', negativeTtl: 30, defaultTtl: 30, reverse: false }] });
  t.teardown(async () => {
    index.detach();
    await store.close();
    await etcd.destroy();
  });
  await store.put({ id: 'a', name: 'web.cluster.local', type: 'A', value: '10.0.0.1' });
  await index.attach(store);
  const values = (name: string): string[] => [...index.recordsAt(name)].map((r) => r.value).sort();
  t.same(values('web.cluster.local'), ['10.0.0.1'], 'snapshot loaded');
  await store.put({ id: 'b', name: 'web.cluster.local', type: 'A', value: '10.0.0.2' });
  await until('put seen', () => values('web.cluster.local').length === 2);
  await store.setHealth({ ip: '10.0.0.2', status: 'down', changedAtMs: 1 });
  await until('health seen', () => index.healthOf('10.0.0.2') === 'down');
  await store.delete('web.cluster.local', 'a');
  await until('delete seen', () => values('web.cluster.local').join() === '10.0.0.2');

  // etcd rebuilt empty on the same address: the store reports reset, the index re-lists.
  await etcd.wipe();
  await etcd.startProcess();
  await store.put({ id: 'n', name: 'new.cluster.local', type: 'A', value: '10.0.0.9' });
  await until('re-listed from the new cluster', () => values('new.cluster.local').join() === '10.0.0.9' && values('web.cluster.local').length === 0);
  t.pass('index matches the rebuilt etcd');
});
