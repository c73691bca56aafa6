// `containerdns kubewatch --table-endpoints`: Kubernetes services (from the fake API server in
// test/dns) written into a replicated table that DNS servers read, instead of etcd.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TableClient } from '../../lib/table/index.js';
import { TableDnsStore } from '../../lib/dns/tablestore.js';
import { FakeKubeApi, service } from '../dns/kube-fake.js';
import { freePort, killAndWait } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

t.setTimeout(180_000);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('kubewatch writes services into a table cluster', async (t) => {
  const port = await freePort();
  const children: ChildProcess[] = [];
  const dir = tempDirFor(t, 'kw-table-');
  t.teardown(() => killAndWait(children));
  children.push(spawn(process.execPath, [join(root, 'cmd/containerstack.js'), 'table', 'serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dir, '--admin-listen', '127.0.0.1:0', '--tick-ms', '20', '--log-level', 'error'], { stdio: 'ignore' }));
  const client = new TableClient({ endpoints: [`127.0.0.1:${port}`], deadlineMs: 10_000 });
  const store = new TableDnsStore(client);
  const api = new FakeKubeApi();
  await api.start();
  t.teardown(async () => {
    await store.close();
    await client.close();
    await api.close();
  });
  api.upsert('services', service('default', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] }));
  children.push(spawn(process.execPath, [join(root, 'cmd/containerdns.js'), 'kubewatch', '--api-server', api.url, '--token', api.token, '--table-endpoints', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0', '--log-level', 'warn', '--resync-interval', '2s'], { stdio: 'ignore' }));
  await until('the service record', async () => (await store.get('web.default.svc.cluster.local', 'A')).length === 1);
  t.match(await store.get('web.default.svc.cluster.local', 'A'), [{ value: '10.96.0.10', owner: 'kubewatch' }]);
  // kubewatch puts a service's records one at a time: the SRV may land just after the A.
  await until('the SRV record', async () => (await store.get('_http._tcp.web.default.svc.cluster.local', 'SRV')).length === 1);
  t.equal((await store.get('_http._tcp.web.default.svc.cluster.local', 'SRV'))[0]?.port, 80, 'SRV per named port');
  api.remove('services', 'default', 'web');
  await until('the record removed', async () => (await store.get('web.default.svc.cluster.local')).length === 0);
  t.pass('deleting the service deletes its records');
  const both = spawnSync(process.execPath, [join(root, 'cmd/containerdns.js'), 'kubewatch', '--api-server', api.url, '--token', api.token, '--table-endpoints', `127.0.0.1:${port}`, '--etcd-endpoints', 'http://127.0.0.1:1'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(both.status, 2);
  t.match(both.stderr, /exactly one store/);
});
