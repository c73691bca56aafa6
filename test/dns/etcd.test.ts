// EtcdDnsStore against a real etcd 3.4: layout compatibility with ContainerDNS keys, put/get/
// delete, health, watch ordering, reset after compaction, and resuming after an etcd restart.
import t from 'tap';
import { createServer } from 'node:http';
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { EtcdDnsStore } from '../../lib/dns/etcd/store.js';
import { decodeRecord, encodeRecord, LEGACY_ID, recordKey } from '../../lib/dns/etcd/layout.js';
import type { StoreEvent } from '../../lib/dns/store.js';
import { readFileSync } from 'node:fs';
import { EtcdProcess, etcdAvailable, freePorts, makeTestPki } from './etcd-helpers.js';
import { tempDirFor } from '../lib/tmp.js';

// Real processes (node, etcd) start slowly on a loaded machine; the runner's own limit still applies.
t.setTimeout(300_000);

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('layout: ContainerDNS keys and values decode; ours round-trip', async (t) => {
  const p = '/containerdns';
  // What ContainerDNS's API wrote for an A record (id = fnv hash of the IP, trailing slash).
  const a = decodeRecord(p, '/containerdns/local/containerdns/web/a1b2c3d4/', '{"host":"10.0.0.1","type":"A","ttl":30,"cluster":"c1","user":"u"}');
  t.same(a, { id: 'a1b2c3d4', name: 'web.containerdns.local', type: 'A', value: '10.0.0.1', ttl: 30 });
  // CNAME at the bare name path.
  const c = decodeRecord(p, '/containerdns/local/containerdns/alias/', '{"host":"web.containerdns.local.","type":"CNAME","ttl":30}');
  t.same(c, { id: LEGACY_ID, name: 'alias.containerdns.local', type: 'CNAME', value: 'web.containerdns.local', ttl: 30 });
  // SkyDNS style, no type: inferred from host and port.
  const s = decodeRecord('/skydns', '/skydns/local/skydns/east/rails/1', '{"host":"service.example.com","port":8080,"priority":10,"weight":10}');
  t.same(s, { id: '1', name: 'rails.east.skydns.local', type: 'SRV', value: 'service.example.com', port: 8080, priority: 10, weight: 10 });
  t.equal(decodeRecord(p, '/containerdns/x/y/', 'not json'), undefined, 'garbage is skipped, not thrown');
  const rec = { id: 'k1', name: 'mail.cluster.local', type: 'MX' as const, value: 'mx.cluster.local', priority: 5, ttl: 60, owner: 'api' as const };
  const key = recordKey(p, rec.name, rec.id);
  t.equal(key, '/containerdns/local/cluster/mail/k1/');
  t.same(decodeRecord(p, key, encodeRecord(rec)), rec);
  const txt = { id: LEGACY_ID, name: 'txt.cluster.local', type: 'TXT' as const, value: 'hello world' };
  t.same(decodeRecord(p, recordKey(p, txt.name, txt.id), encodeRecord(txt)), txt);
});

const skip = etcdAvailable() ? false : 'etcd not installed (apt-get install etcd-server)';

t.test('etcd store: put/get/delete/health/snapshot', { skip }, async (t) => {
  const etcd = await EtcdProcess.start();
  const store = new EtcdDnsStore({ endpoints: [etcd.url] });
  t.teardown(async () => {
    await store.close();
    await etcd.destroy();
  });
  const r1 = await store.put({ id: 'a', name: 'Web.Cluster.Local.', type: 'A', value: '10.0.0.1', ttl: 30, probePorts: [80], owner: 'api' });
  const r2 = await store.put({ id: 'b', name: 'web.cluster.local', type: 'A', value: '10.0.0.2' });
  t.ok(r2 > r1, 'revisions increase');
  await store.put({ id: 's1', name: '_http._tcp.web.cluster.local', type: 'SRV', value: 'web.cluster.local', port: 80, priority: 10, weight: 5 });
  await store.put({ id: 'x', name: 'sub.web.cluster.local', type: 'A', value: '10.0.0.9' });
  const got = await store.get('web.cluster.local');
  t.same(got.map((r) => r.id).sort(), ['a', 'b'], 'only the name itself, not names below it');
  t.same(got.find((r) => r.id === 'a'), { id: 'a', name: 'web.cluster.local', type: 'A', value: '10.0.0.1', ttl: 30, probePorts: [80], owner: 'api' });
  t.same(await store.get('web.cluster.local', 'AAAA'), []);
  t.equal((await store.get('_http._tcp.web.cluster.local', 'SRV'))[0]?.port, 80);
  // The key is where ContainerDNS tools look for it.
  const raw = await store.gateway.range('/containerdns/local/cluster/web/a/', undefined, 1);
  t.match(JSON.parse(raw.kvs[0]!.value), { host: '10.0.0.1', type: 'A', ttl: 30 });
  // A record written by the original ContainerDNS API is visible.
  await store.gateway.put('/containerdns/local/cluster/legacy/', '{"host":"web.cluster.local","type":"CNAME","ttl":30}');
  t.same(await store.get('legacy.cluster.local'), [{ id: LEGACY_ID, name: 'legacy.cluster.local', type: 'CNAME', value: 'web.cluster.local', ttl: 30 }]);
  t.equal(await store.delete('legacy.cluster.local', LEGACY_ID), true);
  t.equal(await store.delete('web.cluster.local', 'b'), true);
  t.equal(await store.delete('web.cluster.local', 'b'), false, 'second delete finds nothing');
  // Health keeps fields other writers put there.
  await store.gateway.put('/containerdns/monitor/status/10.0.0.1', '{"status":"UP","domains":["web.cluster.local."]}');
  await store.setHealth({ ip: '10.0.0.1', status: 'down', changedAtMs: 123, reporter: 'p1' });
  const hv = JSON.parse((await store.gateway.range('/containerdns/monitor/status/10.0.0.1', undefined, 1)).kvs[0]!.value);
  t.same(hv, { status: 'DOWN', domains: ['web.cluster.local.'], changedAtMs: 123, reporter: 'p1' });
  const snap = await store.snapshot();
  t.same(snap.records.map((r) => `${r.name}/${r.id}`).sort(), ['_http._tcp.web.cluster.local/s1', 'sub.web.cluster.local/x', 'web.cluster.local/a']);
  t.same(snap.health, [{ ip: '10.0.0.1', status: 'down', changedAtMs: 123, reporter: 'p1' }]);
  t.ok(snap.revision > r2);
  await t.rejects(store.put({ id: 'bad/id', name: 'x.local', type: 'A', value: '1.1.1.1' }), { code: 'DNS_ETCD_BAD_RECORD' });
});

t.test('etcd store: watch in order, compaction -> reset, resume after restart', { skip }, async (t) => {
  const etcd = await EtcdProcess.start();
  const store = new EtcdDnsStore({ endpoints: [etcd.url], reconnectBaseMs: 20, reconnectMaxMs: 200, timeoutMs: 2000 });
  t.teardown(async () => {
    await store.close();
    await etcd.destroy();
  });
  await store.put({ id: 'a', name: 'w.cluster.local', type: 'A', value: '10.0.0.1' });
  const snap = await store.snapshot();
  const events: StoreEvent[] = [];
  const w = store.watch(snap.revision, (e) => events.push(e));
  await store.put({ id: 'b', name: 'w.cluster.local', type: 'A', value: '10.0.0.2' });
  await store.setHealth({ ip: '10.0.0.2', status: 'up', changedAtMs: 1 });
  await store.delete('w.cluster.local', 'a');
  await until('3 events', () => events.length >= 3);
  t.same(events.map((e) => e.kind), ['put', 'health', 'delete']);
  t.match(events[0], { kind: 'put', record: { id: 'b', value: '10.0.0.2' } });
  t.match(events[1], { kind: 'health', health: { ip: '10.0.0.2', status: 'up' } });
  t.match(events[2], { kind: 'delete', name: 'w.cluster.local', id: 'a' });
  const revs = events.map((e) => e.revision);
  t.same(revs, [...revs].sort((a, b) => a - b), 'revisions ascending');
  t.ok(revs[0]! > snap.revision, 'nothing at or before the snapshot revision');

  // Restart etcd (same data dir and port): the watch resumes from its revision, nothing lost.
  await etcd.stopProcess();
  const writer = new EtcdDnsStore({ endpoints: [etcd.url] });
  t.teardown(() => writer.close());
  await etcd.startProcess();
  await writer.put({ id: 'c', name: 'w.cluster.local', type: 'A', value: '10.0.0.3' });
  await until('event after restart', () => events.some((e) => e.kind === 'put' && e.record.id === 'c'));
  t.notOk(events.some((e) => e.kind === 'reset'), 'no reset needed when history is intact');
  w.close();

  // A watch from a compacted revision gets a reset with the current revision, then follows on.
  const cur = (await store.snapshot()).revision;
  await store.gateway.compact(cur);
  const ev2: StoreEvent[] = [];
  const w2 = store.watch(snap.revision, (e) => ev2.push(e));
  t.teardown(() => w2.close());
  await until('reset', () => ev2.length >= 1);
  t.match(ev2[0], { kind: 'reset' });
  t.ok(ev2[0]!.revision >= cur);
  await store.put({ id: 'd', name: 'w.cluster.local', type: 'A', value: '10.0.0.4' });
  await until('event after reset', () => ev2.some((e) => e.kind === 'put' && e.record.id === 'd'));
  t.equal(ev2.filter((e) => e.kind === 'reset').length, 1);
});

t.test('etcd store: unreachable etcd is a typed error, not a hang', async (t) => {
  const store = new EtcdDnsStore({ endpoints: ['http://127.0.0.1:1'], timeoutMs: 500 });
  t.teardown(() => store.close());
  await t.rejects(store.get('x.local'), { code: 'DNS_ETCD_UNAVAILABLE' });
});

t.test('etcd store: fails over past a dead endpoint; validates; refuses use after close', { skip }, async (t) => {
  const etcd = await EtcdProcess.start();
  const [deadPort] = await freePorts(1);
  const store = new EtcdDnsStore({ endpoints: [`http://127.0.0.1:${deadPort}`, etcd.url], timeoutMs: 1000, reconnectBaseMs: 10, reconnectMaxMs: 50 });
  t.teardown(async () => {
    await store.close();
    await etcd.destroy();
  });
  const events: StoreEvent[] = [];
  // The watch starts on the dead endpoint and must move on to the live one.
  const w = store.watch(0, (e) => events.push(e));
  t.teardown(() => w.close());
  await store.put({ id: 'a', name: 'f.cluster.local', type: 'A', value: '10.0.0.1' });
  t.equal((await store.get('f.cluster.local')).length, 1, 'unary calls fail over');
  await until('watch event via the second endpoint', () => events.some((e) => e.kind === 'put'));
  await t.rejects(store.put({ id: 'b', name: 'f.cluster.local', type: 'A', value: 'not-an-ip' }), { code: 'DNS_INVALID_RECORD' });
  await t.rejects(store.put({ id: 'c', name: 'f.cluster.local', type: 'SRV', value: 'x.cluster.local' }), { code: 'DNS_INVALID_RECORD' }, 'SRV without port');
  await store.close();
  await t.rejects(store.get('f.cluster.local'), { code: 'DNS_STORE_CLOSED' });
});

t.test('etcd store: replacing a slash-less twin key is one put event per revision', { skip }, async (t) => {
  const etcd = await EtcdProcess.start();
  const store = new EtcdDnsStore({ endpoints: [etcd.url] });
  t.teardown(async () => {
    await store.close();
    await etcd.destroy();
  });
  // SkyDNS-style key without the trailing slash, same (name, id) as the one we write.
  await store.gateway.put('/containerdns/local/cluster/tw/a', '{"host":"10.0.0.1"}');
  t.same((await store.get('tw.cluster.local')).map((r) => r.id), ['a']);
  const rev = (await store.snapshot()).revision;
  const events: StoreEvent[] = [];
  const w = store.watch(rev, (e) => events.push(e));
  t.teardown(() => w.close());
  await store.put({ id: 'a', name: 'tw.cluster.local', type: 'A', value: '10.0.0.2' });
  await store.put({ id: 'z', name: 'tw.cluster.local', type: 'A', value: '10.0.0.3' });
  await until('events', () => events.length >= 2);
  t.same(events.map((e) => e.kind), ['put', 'put'], 'the twin delete in the same transaction is not reported');
  t.same((await store.get('tw.cluster.local')).map((r) => `${r.id}=${r.value}`).sort(), ['a=10.0.0.2', 'z=10.0.0.3'], 'one key per (name, id)');
});

t.test('etcd store: a silent watch stream (half-open connection) is reopened', async (t) => {
  // A stand-in gateway that accepts watches, says "created", then never writes again.
  const watchBodies: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.url === '/v3/watch') {
        watchBodies.push(body);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"result":{"header":{"revision":"7"},"created":true}}\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"header":{"revision":"7"}}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const store = new EtcdDnsStore({ endpoints: [`http://127.0.0.1:${port}`], watchStallMs: 150, reconnectBaseMs: 5, reconnectMaxMs: 20 });
  const w = store.watch(7, () => {});
  t.teardown(async () => {
    w.close();
    await store.close();
    server.closeAllConnections();
    server.close();
  });
  await until('reopened twice', () => watchBodies.length >= 3);
  const startRev = (b: string): string => JSON.parse(b).create_request.start_revision;
  t.same(watchBodies.slice(0, 3).map(startRev), ['8', '8', '8'], 'each reopen resumes at the next revision');
});

t.test('etcd store: many open watches do not starve unary calls', { skip }, async (t) => {
  const etcd = await EtcdProcess.start();
  const store = new EtcdDnsStore({ endpoints: [etcd.url], timeoutMs: 3000 });
  t.teardown(async () => {
    await store.close();
    await etcd.destroy();
  });
  const rev = (await store.snapshot()).revision;
  const got = new Array<number>(24).fill(0);
  const watches = got.map((_, i) => store.watch(rev, () => got[i]!++));
  t.teardown(() => watches.forEach((w) => w.close()));
  await store.put({ id: 'a', name: 'many.cluster.local', type: 'A', value: '10.0.0.1' });
  t.equal((await store.get('many.cluster.local')).length, 1, 'unary calls still go through');
  await until('every watch saw the put', () => got.every((n) => n >= 1));
  t.pass('24 watches delivered');
});

t.test('etcd store: invalid records written by other tools are skipped, not served', { skip }, async (t) => {
  const etcd = await EtcdProcess.start();
  const store = new EtcdDnsStore({ endpoints: [etcd.url] });
  t.teardown(async () => {
    await store.close();
    await etcd.destroy();
  });
  await store.gateway.put('/containerdns/local/cluster/bad/1/', '{"host":"not-an-ip","type":"A"}');
  await store.gateway.put('/containerdns/local/cluster/bad/2/', '{"host":"10.0.0.1","type":"AAAA"}');
  await store.gateway.put('/containerdns/local/cluster/bad/3/', '{garbage');
  await store.gateway.put('/containerdns/local/cluster/bad/4/', '{"host":"10.0.0.4","type":"A"}');
  t.same((await store.get('bad.cluster.local')).map((r) => r.id), ['4']);
  t.same((await store.snapshot()).records.map((r) => r.id), ['4']);
  // Overwriting a good record with garbage reads as a delete to watchers.
  const events: StoreEvent[] = [];
  const w = store.watch((await store.snapshot()).revision, (e) => events.push(e));
  t.teardown(() => w.close());
  await store.gateway.put('/containerdns/local/cluster/bad/4/', '{garbage');
  await until('delete event', () => events.length >= 1);
  t.match(events[0], { kind: 'delete', name: 'bad.cluster.local', id: '4' });
});

t.test('etcd store: https endpoints with client certificates (unary and watch)', { skip }, async (t) => {
  const dir = tempDirFor(t, 'etcd-pki-');
  const pki = makeTestPki(dir);
  if (!pki) {
    t.pass('openssl not available; TLS path not exercised');
    return;
  }
  const etcd = await EtcdProcess.start(pki);
  const tls = { ca: readFileSync(pki.caFile), cert: readFileSync(pki.clientCertFile), key: readFileSync(pki.clientKeyFile) };
  const store = new EtcdDnsStore({ endpoints: [etcd.url], ...tls });
  t.teardown(async () => {
    await store.close();
    await etcd.destroy();
  });
  const events: StoreEvent[] = [];
  const w = store.watch((await store.snapshot()).revision, (e) => events.push(e));
  t.teardown(() => w.close());
  await store.put({ id: 'a', name: 'tls.cluster.local', type: 'A', value: '10.0.0.1' });
  t.equal((await store.get('tls.cluster.local')).length, 1);
  await until('watch over TLS', () => events.length >= 1);
  const noCert = new EtcdDnsStore({ endpoints: [etcd.url], ca: tls.ca, timeoutMs: 2000 });
  t.teardown(() => noCert.close());
  await t.rejects(noCert.get('tls.cluster.local'), { code: 'DNS_ETCD_UNAVAILABLE' }, 'no client certificate, no access');
});

t.test('etcd store: user/password auth, token expiry and restart re-authenticate', { skip }, async (t) => {
  const etcd = await EtcdProcess.start(undefined, ['--auth-token-ttl', '1']);
  t.teardown(() => etcd.destroy());
  const ctl = (args: string[]): number | null => spawnSync('etcdctl', ['--endpoints', etcd.url, ...args], { stdio: 'ignore', env: { ...process.env, ETCDCTL_API: '3' } }).status;
  t.equal(ctl(['user', 'add', 'root:rootpw']), 0);
  t.equal(ctl(['auth', 'enable']), 0);

  const store = new EtcdDnsStore({ endpoints: [etcd.url], username: 'root', password: 'rootpw', reconnectBaseMs: 20, reconnectMaxMs: 200, timeoutMs: 2000 });
  t.teardown(() => store.close());
  const events: StoreEvent[] = [];
  const w = store.watch((await store.snapshot()).revision, (e) => events.push(e));
  t.teardown(() => w.close());
  await store.put({ id: 'a', name: 'auth.cluster.local', type: 'A', value: '10.0.0.1' });
  await until('watch with a token', () => events.length >= 1);
  // Simple tokens live 1s here: the next call finds its token expired and gets a new one.
  await new Promise((r) => setTimeout(r, 2500));
  await store.put({ id: 'b', name: 'auth.cluster.local', type: 'A', value: '10.0.0.2' });
  t.equal((await store.get('auth.cluster.local')).length, 2, 're-authenticated after expiry');
  // A restart forgets every token: the watch must re-authenticate to resume.
  await etcd.stopProcess();
  await etcd.startProcess();
  await store.put({ id: 'c', name: 'auth.cluster.local', type: 'A', value: '10.0.0.3' });
  await until('watch resumed after restart', () => events.some((e) => e.kind === 'put' && e.record.id === 'c'));

  const anon = new EtcdDnsStore({ endpoints: [etcd.url], timeoutMs: 2000 });
  t.teardown(() => anon.close());
  await t.rejects(anon.get('auth.cluster.local'), { code: 'DNS_ETCD_UNAVAILABLE', message: /user name is empty/ });
  const wrong = new EtcdDnsStore({ endpoints: [etcd.url], username: 'root', password: 'nope', timeoutMs: 2000 });
  t.teardown(() => wrong.close());
  await t.rejects(wrong.get('auth.cluster.local'), { code: 'DNS_ETCD_AUTH' });
});
