// Kubernetes watcher against the fake API server (kube-fake.ts): record mapping, live updates,
// relist after 410 (event and HTTP), reconnect after dropped and stalled streams, bookmarks,
// pagination, and the periodic reconcile that deletes stale records.
import t, { type Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { startKubeWatcher, type KubeWatcher } from '../../lib/dns/kube/watcher.js';
import { serviceRecords } from '../../lib/dns/kube/records.js';
import { KubeClient } from '../../lib/dns/kube/client.js';
import type { DnsStore } from '../../lib/dns/store.js';
import { FakeKubeApi, endpointSlice, endpoints, service } from './kube-fake.js';
import { tempDirFor } from '../lib/tmp.js';

// Real processes (node, etcd) start slowly on a loaded machine; the runner's own limit still applies.
t.setTimeout(300_000);

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function view(store: DnsStore): Promise<string[]> {
  const snap = await store.snapshot();
  return snap.records
    .filter((r) => r.owner === 'kubewatch')
    .map((r) => `${r.name} ${r.type} ${r.value}${r.port !== undefined ? `:${r.port}` : ''}`)
    .sort();
}

async function has(store: DnsStore, line: string): Promise<boolean> {
  return (await view(store)).includes(line);
}

const web = service('default', 'web', { type: 'ClusterIP', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { port: 9000, protocol: 'UDP' }] });

t.test('kube records: cluster IP, external IPs, headless, ExternalName', async (t) => {
  const zone = { zone: 'cluster.local' };
  t.same(
    serviceRecords(web, undefined, zone).map((r) => `${r.name} ${r.type} ${r.value} ${r.port ?? ''} ${r.probePorts ?? ''} ${r.owner}`),
    ['web.default.svc.cluster.local A 10.96.0.10  80 kubewatch', '_http._tcp.web.default.svc.cluster.local SRV web.default.svc.cluster.local 80  kubewatch'],
  );
  const ext = service('prod', 'api', { type: 'LoadBalancer', clusterIP: '10.96.0.11', externalIPs: ['203.0.113.5'], ports: [{ port: 443 }] }, { loadBalancer: { ingress: [{ ip: '2001:db8::5' }] } });
  t.same(serviceRecords(ext, undefined, zone).map((r) => `${r.type} ${r.value}`), ['A 203.0.113.5', 'AAAA 2001:db8::5'], 'external IPs instead of the cluster IP');
  const headless = service('default', 'db', { clusterIP: 'None', ports: [{ name: 'pg', port: 5432 }] });
  const eps = endpoints('default', 'db', [{
    addresses: [{ ip: '10.1.0.1', hostname: 'db-0' }, { ip: '10.1.0.2' }],
    notReadyAddresses: [{ ip: '10.1.0.3' }],
    ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }],
  }]);
  t.same(serviceRecords(headless, eps, zone).map((r) => `${r.name} ${r.type} ${r.value}${r.port ? ':' + r.port : ''}`).sort(), [
    '10-1-0-2.db.default.svc.cluster.local A 10.1.0.2',
    '_pg._tcp.db.default.svc.cluster.local SRV 10-1-0-2.db.default.svc.cluster.local:5432',
    '_pg._tcp.db.default.svc.cluster.local SRV db-0.db.default.svc.cluster.local:5432',
    'db-0.db.default.svc.cluster.local A 10.1.0.1',
    'db.default.svc.cluster.local A 10.1.0.1',
    'db.default.svc.cluster.local A 10.1.0.2',
  ], 'per-endpoint A records and SRV per named port; not-ready addresses left out');
  const en = service('default', 'ext', { type: 'ExternalName', externalName: 'Example.COM.' });
  t.same(serviceRecords(en, undefined, zone).map((r) => `${r.type} ${r.value}`), ['CNAME example.com']);
  const skipped: string[] = [];
  t.same(serviceRecords(service('default', 'bad', { clusterIP: 'nonsense' }), undefined, zone, (w) => skipped.push(w)), []);
  t.match(skipped, [/not an IP/]);
});

async function start(t: Test, extra: Partial<Parameters<typeof startKubeWatcher>[0]> = {}): Promise<{ api: FakeKubeApi; store: MemoryDnsStore; w: KubeWatcher }> {
  const api = new FakeKubeApi();
  await api.start();
  const store = new MemoryDnsStore();
  const w = startKubeWatcher({
    client: { server: api.url, token: api.token, requestTimeoutMs: 2000 },
    store, zone: 'cluster.local', debounceMs: 5, backoffBaseMs: 10, backoffMaxMs: 100, watchTimeoutSeconds: 30,
    ...extra,
  });
  t.teardown(async () => {
    await w.stop();
    await api.close();
  });
  return { api, store, w };
}

t.test('kube watcher: initial list, live updates, deletes', async (t) => {
  const { api, store, w } = await start(t);
  api.upsert('services', web);
  await until('ready', () => w.ready());
  await until('web record', () => has(store, 'web.default.svc.cluster.local A 10.96.0.10'));
  t.ok(await has(store, '_http._tcp.web.default.svc.cluster.local SRV web.default.svc.cluster.local:80'));
  // Watch params as a reflector sends them.
  await until('watch sent', () => api.watchRequests('services').length >= 1);
  const q = api.watchRequests('services')[0]!;
  t.equal(q.get('allowWatchBookmarks'), 'true');
  t.equal(q.get('timeoutSeconds'), '30');
  t.ok(Number(q.get('resourceVersion')) > 0, 'watch starts at the list resourceVersion');

  api.upsert('services', service('default', 'db', { clusterIP: 'None', ports: [{ name: 'pg', port: 5432 }] }));
  api.upsert('endpoints', endpoints('default', 'db', [{ addresses: [{ ip: '10.1.0.1', hostname: 'db-0' }], ports: [{ name: 'pg', port: 5432 }] }]));
  await until('headless records', () => has(store, '_pg._tcp.db.default.svc.cluster.local SRV db-0.db.default.svc.cluster.local:5432'));
  api.upsert('endpoints', endpoints('default', 'db', [{ addresses: [{ ip: '10.1.0.9', hostname: 'db-0' }], ports: [{ name: 'pg', port: 5432 }] }]));
  await until('endpoint moved', async () => (await has(store, 'db.default.svc.cluster.local A 10.1.0.9')) && !(await has(store, 'db.default.svc.cluster.local A 10.1.0.1')));
  api.upsert('services', { ...web, spec: { ...(web.spec as object), clusterIP: '10.96.0.20' } });
  await until('cluster IP changed', async () => (await has(store, 'web.default.svc.cluster.local A 10.96.0.20')) && !(await has(store, 'web.default.svc.cluster.local A 10.96.0.10')));
  api.remove('services', 'default', 'db');
  await until('db gone', async () => !(await view(store)).some((l) => l.includes('db.default')));
  t.same(await view(store), [
    '_http._tcp.web.default.svc.cluster.local SRV web.default.svc.cluster.local:80',
    'web.default.svc.cluster.local A 10.96.0.20',
  ]);
  t.equal((await store.get('web.default.svc.cluster.local'))[0]!.owner, 'kubewatch');
});

t.test('kube watcher: 410 Gone (ERROR event and HTTP) -> relist; changes while away converge', async (t) => {
  const { api, store, w } = await start(t);
  api.upsert('services', web);
  api.upsert('services', service('default', 'old', { clusterIP: '10.96.0.30' }));
  await until('ready', () => w.ready());
  await until('old', () => has(store, 'old.default.svc.cluster.local A 10.96.0.30'));
  const listsBefore = w.stats().services.lists;

  // Cut the stream, change things, compact history: the resumed watch gets a 410 ERROR event.
  api.dropWatches();
  api.remove('services', 'default', 'old');
  api.upsert('services', service('default', 'new', { clusterIP: '10.96.0.31' }));
  api.compact();
  await until('relisted and converged', async () => (await has(store, 'new.default.svc.cluster.local A 10.96.0.31')) && !(await has(store, 'old.default.svc.cluster.local A 10.96.0.30')));
  t.ok(w.stats().services.gone >= 1, 'saw 410');
  t.ok(w.stats().services.lists > listsBefore, 'relisted');

  // Injected 410 as an HTTP status on the next watch.
  api.injectGoneHttp(1);
  api.dropWatches();
  const gone = w.stats().services.gone + w.stats().endpoints.gone;
  await until('http 410 handled', () => w.stats().services.gone + w.stats().endpoints.gone > gone);
  api.upsert('services', service('default', 'after', { clusterIP: '10.96.0.32' }));
  await until('still following', () => has(store, 'after.default.svc.cluster.local A 10.96.0.32'));

  // An ERROR event 410 on an otherwise healthy reconnect.
  api.injectGoneEvent(2);
  api.dropWatches();
  api.upsert('services', service('default', 'after2', { clusterIP: '10.96.0.33' }));
  await until('after2', () => has(store, 'after2.default.svc.cluster.local A 10.96.0.33'));
});

t.test('kube watcher: dropped and stalled streams reconnect from the last version', async (t) => {
  const { api, store, w } = await start(t, { stallTimeoutMs: 300 });
  api.upsert('services', web);
  await until('ready', () => w.ready());
  const lists = w.stats().services.lists;
  api.dropWatches();
  api.upsert('services', service('default', 'a', { clusterIP: '10.96.1.1' }));
  await until('a', () => has(store, 'a.default.svc.cluster.local A 10.96.1.1'));
  t.equal(w.stats().services.lists, lists, 'a reconnect resumes the watch; no relist needed');
  t.ok(w.stats().services.reconnects >= 1);

  // The stream goes silent (no events, no bookmarks): the watcher gives up on it and resumes.
  await until('watches open', () => api.openWatches >= 2);
  api.stallWatches();
  api.upsert('services', service('default', 'b', { clusterIP: '10.96.1.2' }));
  await until('b after stall', () => has(store, 'b.default.svc.cluster.local A 10.96.1.2'));
  t.ok(w.stats().services.stalls >= 1, 'stall detected');
  t.equal(w.stats().services.lists, lists, 'resumed from history, no relist');
});

t.test('kube watcher: bookmarks advance the resume version', async (t) => {
  const { api, w } = await start(t);
  api.upsert('services', web);
  await until('ready', () => w.ready());
  await until('watch open', () => api.openWatches >= 2);
  // Changes to endpoints only move the global version; a bookmark tells the services watch.
  api.upsert('endpoints', endpoints('default', 'other', []));
  api.upsert('endpoints', endpoints('default', 'other2', []));
  const rv = api.rv;
  api.bookmark();
  await until('bookmark seen', () => w.stats().services.bookmarks >= 1);
  api.dropWatches();
  await until('rewatch', () => api.watchRequests('services').length >= 2);
  const last = api.watchRequests('services').at(-1)!;
  t.equal(last.get('resourceVersion'), String(rv), 'resumed from the bookmark version');
});

t.test('kube watcher: pagination, namespace, periodic reconcile removes stale records only', async (t) => {
  const api = new FakeKubeApi();
  await api.start();
  for (let i = 0; i < 23; i++) api.upsert('services', service('team', `s${i}`, { clusterIP: `10.96.2.${i + 1}` }));
  api.upsert('services', service('elsewhere', 'x', { clusterIP: '10.96.3.1' }));
  const store = new MemoryDnsStore();
  // Left behind by an earlier run, an API-owned record, and a record of another zone.
  await store.put({ id: 'stale', name: 'gone.team.svc.cluster.local', type: 'A', value: '10.9.9.9', owner: 'kubewatch' });
  await store.put({ id: 'mine', name: 'manual.cluster.local', type: 'A', value: '10.9.9.8', owner: 'api' });
  await store.put({ id: 'z', name: 'x.team.svc.other.zone', type: 'A', value: '10.9.9.7', owner: 'kubewatch' });
  const client = new KubeClient({ server: api.url, token: api.token });
  const w = startKubeWatcher({ client, store, zone: 'cluster.local', namespace: 'team', pageSize: 5, debounceMs: 5, resyncIntervalMs: 100, backoffBaseMs: 10 });
  t.teardown(async () => {
    await w.stop();
    await api.close();
  });
  await until('ready', () => w.ready());
  await until('all 23', async () => (await view(store)).filter((l) => l.includes('.team.svc.cluster.local A')).length === 23);
  t.notOk(await has(store, 'gone.team.svc.cluster.local A 10.9.9.9'), 'stale kubewatch record deleted');
  t.notOk((await view(store)).some((l) => l.includes('elsewhere')), 'other namespaces ignored');
  t.ok(api.requests.some((r) => r.path === '/api/v1/namespaces/team/services' && r.query.get('continue')), 'list was paginated');
  t.equal((await store.get('manual.cluster.local')).length, 1, 'API records untouched');
  t.equal((await store.get('x.team.svc.other.zone')).length, 1, 'other zones untouched');

  // Someone deletes/edits our records behind our back: the periodic reconcile repairs it.
  await store.delete('s1.team.svc.cluster.local', (await store.get('s1.team.svc.cluster.local'))[0]!.id);
  await store.put({ id: 'stale2', name: 's2.team.svc.cluster.local', type: 'A', value: '10.8.8.8', owner: 'kubewatch' });
  await until('repaired', async () => (await has(store, 's1.team.svc.cluster.local A 10.96.2.2')) && !(await has(store, 's2.team.svc.cluster.local A 10.8.8.8')));
});

t.test('kube watcher: wrong token never syncs, and stops cleanly', async (t) => {
  const api = new FakeKubeApi();
  await api.start();
  const store = new MemoryDnsStore();
  const w = startKubeWatcher({ client: { server: api.url, token: 'wrong' }, store, zone: 'cluster.local', backoffBaseMs: 10, backoffMaxMs: 50 });
  await until('a few attempts', () => api.requests.length >= 3);
  t.notOk(w.ready());
  await w.stop();
  await api.close();
});

const opensslOk = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
t.test('kube client: HTTPS with a CA file and a rotating token file', { skip: opensslOk ? false : 'openssl not installed' }, async (t) => {
  const dir = tempDirFor(t, 'kube-tls-');
  const gen = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  t.equal(gen.status, 0, 'self-signed certificate generated');
  const api = new FakeKubeApi();
  await api.start({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) });
  t.teardown(() => api.close());
  api.upsert('services', web);
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, `${api.token}\n`);
  const ca = readFileSync(join(dir, 'cert.pem'));
  const ok = new KubeClient({ server: api.url, tokenFile, ca });
  const list = (await ok.get('/api/v1/services')) as { items: unknown[] };
  t.equal(list.items.length, 1, 'verified against the CA, token read from the file');
  const noCa = new KubeClient({ server: api.url, tokenFile });
  await t.rejects(noCa.get('/api/v1/services'), { code: 'DNS_KUBE_UNAVAILABLE' }, 'unknown CA is refused');
  const badToken = new KubeClient({ server: api.url, token: 'nope', ca });
  await t.rejects(badToken.get('/api/v1/services'), { code: 'DNS_KUBE_STATUS', status: 401 });
  const missing = new KubeClient({ server: api.url, tokenFile: join(dir, 'missing'), ca });
  await t.rejects(missing.get('/api/v1/services'), { code: 'DNS_KUBE_UNAVAILABLE', message: /cannot read token file/ });
});

t.test('kube watcher: failed store writes are retried until they land', async (t) => {
  const api = new FakeKubeApi();
  await api.start();
  const mem = new MemoryDnsStore();
  let failuresLeft = 5;
  const flaky = Object.create(mem) as DnsStore;
  flaky.put = async (r) => {
    if (failuresLeft > 0) {
      failuresLeft--;
      throw new Error('store: injected failure');
    }
    return mem.put(r);
  };
  api.upsert('services', web);
  const w = startKubeWatcher({ client: { server: api.url, token: api.token }, store: flaky, zone: 'cluster.local', debounceMs: 5, backoffBaseMs: 10 });
  t.teardown(async () => {
    await w.stop();
    await api.close();
  });
  await until('converged despite failures', () => has(mem, 'web.default.svc.cluster.local A 10.96.0.10'));
  await until('srv too', () => has(mem, '_http._tcp.web.default.svc.cluster.local SRV web.default.svc.cluster.local:80'));
  t.equal(failuresLeft, 0, 'the failures happened');
  await until('ready after a clean sync', () => w.ready());
});

t.test('kube watcher: stop() does not wait for a hung list', async (t) => {
  const api = new FakeKubeApi();
  await api.start();
  api.holdLists = true;
  const w = startKubeWatcher({ client: { server: api.url, token: api.token, requestTimeoutMs: 600_000 }, store: new MemoryDnsStore(), zone: 'cluster.local' });
  await until('list sent', () => api.requests.length >= 2);
  // Guard only against a hang; the stop itself should be immediate.
  const guard = new Promise<string>((r) => setTimeout(() => r('hung'), 20_000).unref());
  t.equal(await Promise.race([w.stop().then(() => 'stopped'), guard]), 'stopped');
  await api.close();
});

t.test('kube watcher: EndpointSlices (discovery.k8s.io/v1) for headless services', async (t) => {
  const { api, store, w } = await start(t, { endpointsApi: 'endpointslices' });
  api.upsert('services', service('default', 'db', { clusterIP: 'None', ports: [{ name: 'pg', port: 5432 }] }));
  api.upsert('endpointslices', endpointSlice('default', 'db-abc', 'db', [
    { addresses: ['10.1.0.1'], hostname: 'db-0', conditions: { ready: true } },
    { addresses: ['10.1.0.2'], conditions: { ready: false } },
  ], [{ name: 'pg', port: 5432, protocol: 'TCP' }]));
  api.upsert('endpointslices', endpointSlice('default', 'db-def', 'db', [{ addresses: ['10.1.0.3'] }], [{ name: 'pg', port: 5432 }]));
  // A slice not owned by a service is ignored.
  api.upsert('endpointslices', { ...endpointSlice('default', 'orphan', 'x', [{ addresses: ['10.9.9.9'] }], []), metadata: { name: 'orphan', namespace: 'default' } });
  await until('ready', () => w.ready());
  await until('slices folded', async () => (await view(store)).filter((l) => l.startsWith('db.default.svc.cluster.local A')).length === 2);
  t.same((await view(store)).filter((l) => l.startsWith('db.default')), ['db.default.svc.cluster.local A 10.1.0.1', 'db.default.svc.cluster.local A 10.1.0.3'], 'ready endpoints of both slices; not-ready left out');
  t.ok(await has(store, '_pg._tcp.db.default.svc.cluster.local SRV db-0.db.default.svc.cluster.local:5432'));
  t.ok(api.requests.some((r) => r.path === '/apis/discovery.k8s.io/v1/endpointslices'), 'listed the discovery API');
  await until('watching the discovery API', () => api.watchRequests('endpointslices').length >= 1);
  api.remove('endpointslices', 'default', 'db-def');
  await until('slice removed', async () => !(await has(store, 'db.default.svc.cluster.local A 10.1.0.3')));
  t.notOk((await view(store)).some((l) => l.includes('10.9.9.9')));
});
