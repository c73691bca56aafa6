// `containerdns kubewatch` as a real process: fake Kubernetes API in, real etcd out, admin
// endpoints up, clean exit on SIGTERM.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EtcdDnsStore } from '../../lib/dns/etcd/store.js';
import { EtcdProcess, etcdAvailable } from './etcd-helpers.js';
import { FakeKubeApi, service } from './kube-fake.js';

// Real processes (node, etcd) start slowly on a loaded machine; the runner's own limit still applies.
t.setTimeout(300_000);

const CLI = fileURLToPath(new URL('../../cmd/containerdns.js', import.meta.url));

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

t.test('kubewatch daemon: k8s -> etcd, /metrics, /ready, SIGTERM', { skip: etcdAvailable() ? false : 'etcd not installed' }, async (t) => {
  const etcd = await EtcdProcess.start();
  const api = new FakeKubeApi();
  await api.start();
  const store = new EtcdDnsStore({ endpoints: [etcd.url] });
  // A record left by an earlier run: the daemon's first sync removes it.
  await store.put({ id: 'old', name: 'gone.default.svc.cluster.local', type: 'A', value: '10.9.9.9', owner: 'kubewatch' });
  api.upsert('services', service('default', 'web', { clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80 }] }));
  const child = spawn(process.execPath, [
    CLI, 'kubewatch', '--api-server', api.url, '--token', api.token, '--etcd-endpoints', etcd.url,
    '--admin-listen', '127.0.0.1:0', '--log-level', 'warn', '--resync-interval', '2s',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await store.close();
    await api.close();
    await etcd.destroy();
  });

  await until('admin url', () => /admin on (http:\/\/[^\s]+)/.test(stderr));
  const admin = /admin on (http:\/\/[^\s]+)/.exec(stderr)![1]!.replace(/\/$/, '');
  await until('record in etcd', async () => (await store.get('web.default.svc.cluster.local', 'A')).length === 1);
  t.match(await store.get('web.default.svc.cluster.local', 'A'), [{ value: '10.96.0.10', owner: 'kubewatch', ttl: 30 }]);
  t.equal((await store.get('_http._tcp.web.default.svc.cluster.local', 'SRV'))[0]?.port, 80);
  await until('stale record removed', async () => (await store.get('gone.default.svc.cluster.local')).length === 0);
  await until('ready', async () => (await fetch(`${admin}/ready`)).status === 200);
  const health = (await (await fetch(`${admin}/health`)).json()) as { status: string };
  t.equal(health.status, 'ok');
  const metrics = await (await fetch(`${admin}/metrics`)).text();
  t.match(metrics, /containerdns_kubewatch_puts_total(\{[^}]*\})? [1-9]\d*/);
  t.match(metrics, /containerdns_kubewatch_informer_ops\{[^}]*resource="services"[^}]*kind="lists"[^}]*\} [1-9]/);

  api.remove('services', 'default', 'web');
  await until('record deleted', async () => (await store.get('web.default.svc.cluster.local')).length === 0);

  child.kill('SIGTERM');
  t.equal(await exited, 0, `clean exit (stderr: ${stderr.slice(-500)})`);
});

t.test('kubewatch daemon: bad config is a clear error with exit code 2', async (t) => {
  const run = (args: string[]): Promise<{ code: number | null; err: string }> =>
    new Promise((resolve) => {
      const c = spawn(process.execPath, [CLI, 'kubewatch', ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, KUBERNETES_SERVICE_HOST: '' } });
      let err = '';
      c.stderr.on('data', (d: Buffer) => (err += d.toString()));
      c.on('exit', (code) => resolve({ code, err }));
    });
  let r = await run(['--api-server', 'http://127.0.0.1:1']);
  t.equal(r.code, 2);
  t.match(r.err, /give exactly one store: --etcd-endpoints or --table-endpoints/);
  r = await run(['--api-server', 'http://127.0.0.1:1', '--etcd-endpoints', 'http://127.0.0.1:2', '--ttl', 'abc']);
  t.equal(r.code, 2);
  t.match(r.err, /ttl \(flag\): expected a number/);
  r = await run(['--api-server', 'http://127.0.0.1:1', '--etcd-endpoints', 'http://127.0.0.1:2', '--ca-file', '/nonexistent/ca.pem']);
  t.equal(r.code, 2);
  t.match(r.err, /cannot read CA file/);
});
