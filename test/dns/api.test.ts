// REST API over a real HTTP listener: auth, CRUD of every type, validation naming the field,
// status codes (400/401/403/404/405/409/413), and the ContainerDNS-style paths.
import t, { type Test } from 'tap';
import { request } from 'node:http';
import fc from 'fast-check';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { startDnsApi, type DnsApi } from '../../lib/dns/api/server.js';
import { fnv32aHex, nameProblem } from '../../lib/dns/api/validate.js';
import { createRegistry } from '../../lib/common/index.js';
import { EtcdDnsStore } from '../../lib/dns/etcd/store.js';
import { EtcdProcess, etcdAvailable } from './etcd-helpers.js';

// Real processes (node, etcd) start slowly on a loaded machine; the runner's own limit still applies.
t.setTimeout(300_000);

const TOKEN = 's3cret';

async function setup(t: Test, opts: { maxBodyBytes?: number } = {}): Promise<{ api: DnsApi; store: MemoryDnsStore; call: Caller }> {
  const store = new MemoryDnsStore();
  const api = await startDnsApi({ store, token: TOKEN, domains: ['cluster.local'], registry: createRegistry({ defaultMetrics: false }), ...opts });
  t.teardown(() => api.close());
  const call: Caller = async (method, path, body, headers = { authorization: `Bearer ${TOKEN}` }) => {
    const res = await fetch(api.url(path), {
      method,
      headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text };
  };
  return { api, store, call };
}
type Caller = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; json: any; text: string }>;

t.test('api: token required', async (t) => {
  const { call } = await setup(t);
  t.equal((await call('GET', '/api/v1/records', undefined, {})).status, 401);
  const bad = await call('GET', '/api/v1/records', undefined, { authorization: 'Bearer nope' });
  t.equal(bad.status, 401);
  t.equal(bad.json.error.code, 'DNS_API_UNAUTHORIZED');
  t.equal((await call('GET', '/api/v1/records', undefined, { authorization: `Basic ${TOKEN}` })).status, 401);
  t.equal((await call('GET', '/api/v1/records?token=' + TOKEN, undefined, {})).status, 401, 'query token only on the ContainerDNS paths');
  t.equal((await call('GET', '/api/v1/records')).status, 200);
  await t.rejects(startDnsApi({ store: new MemoryDnsStore(), token: '' }), { code: 'DNS_API_START' });
});

t.test('api: create/show/list/update/delete of every type', async (t) => {
  const { call, store } = await setup(t);
  const bodies = [
    { name: 'web.cluster.local', type: 'A', value: '10.0.0.1', ttl: 30, probePorts: [80] },
    { name: 'web.cluster.local', type: 'AAAA', value: 'FD00::1' },
    { name: 'alias.cluster.local.', type: 'CNAME', value: 'web.cluster.local.' },
    { name: '_http._tcp.web.cluster.local', type: 'SRV', value: 'web.cluster.local', port: 80, priority: 1, weight: 5 },
    { name: 'cluster.local', type: 'TXT', value: 'v=spf1 -all' },
    { name: 'cluster.local', type: 'MX', value: 'mail.cluster.local', priority: 5 },
    { name: 'cluster.local', type: 'NS', value: 'ns1.cluster.local' },
    { name: '1.0.0.10.in-addr.arpa', type: 'PTR', value: 'web.cluster.local' },
    { name: '*.wild.cluster.local', type: 'A', value: '10.0.0.9' },
  ];
  for (const b of bodies) {
    const r = await call('POST', '/api/v1/records', b);
    t.equal(r.status, 201, `create ${b.type} ${b.name}: ${r.text}`);
    t.equal(r.json.record.owner, 'api');
  }
  const a = await call('GET', '/api/v1/records/web.cluster.local?type=A');
  t.equal(a.status, 200);
  t.same(a.json.records, [{ id: fnv32aHex('10.0.0.1'), name: 'web.cluster.local', type: 'A', value: '10.0.0.1', ttl: 30, probePorts: [80], owner: 'api' }]);
  t.equal((await call('GET', '/api/v1/records/web.cluster.local')).json.records.length, 2);
  t.equal((await call('GET', '/api/v1/records/web.cluster.local?type=AAAA')).json.records[0].value, 'fd00::1', 'IPv6 normalized to lower case');
  const srv = (await store.get('_http._tcp.web.cluster.local', 'SRV'))[0]!;
  t.match(srv, { port: 80, priority: 1, weight: 5, value: 'web.cluster.local' });
  const mx = await call('GET', '/api/v1/records/cluster.local?type=MX');
  t.equal(mx.json.records[0].priority, 5);

  const list = await call('GET', '/api/v1/records');
  t.equal(list.json.total, bodies.length);
  t.equal(list.json.truncated, false);
  const limited = await call('GET', '/api/v1/records?limit=2&suffix=cluster.local');
  t.equal(limited.json.records.length, 2);
  t.equal(limited.json.truncated, true);
  t.equal((await call('GET', '/api/v1/records?type=A')).json.total, 2);

  const id = fnv32aHex('10.0.0.1');
  const one = await call('GET', `/api/v1/records/web.cluster.local/${id}`);
  t.equal(one.json.value, '10.0.0.1');
  const upd = await call('PUT', `/api/v1/records/web.cluster.local/${id}`, { value: '10.0.0.2', ttl: null });
  t.equal(upd.status, 200, upd.text);
  t.same(upd.json.record, { id, name: 'web.cluster.local', type: 'A', value: '10.0.0.2', probePorts: [80], owner: 'api' });
  t.equal((await call('PUT', `/api/v1/records/web.cluster.local/${id}`, { name: 'other.cluster.local' })).json.error.field, 'name');
  t.equal((await call('PUT', '/api/v1/records/web.cluster.local/nope', { value: '10.0.0.3' })).status, 404);
  t.equal((await call('DELETE', `/api/v1/records/web.cluster.local/${id}`)).status, 204);
  t.equal((await call('DELETE', `/api/v1/records/web.cluster.local/${id}`)).status, 404);
  t.equal((await call('GET', '/api/v1/records/nothing.cluster.local')).status, 404);
  const delAll = await call('DELETE', '/api/v1/records/cluster.local?type=TXT');
  t.same(delAll.json, { deleted: 1 });
  t.equal((await call('PATCH', '/api/v1/records/cluster.local')).status, 405);
  t.equal((await call('GET', '/api/v2/records')).status, 404);
});

t.test('api: validation names the field', async (t) => {
  const { call } = await setup(t);
  const cases: [unknown, string, RegExp][] = [
    [{ name: `${'a'.repeat(64)}.cluster.local`, type: 'A', value: '10.0.0.1' }, 'name', /63/],
    [{ name: `${'abcdefghi.'.repeat(25)}${'x'.repeat(10)}.cluster.local`, type: 'A', value: '10.0.0.1' }, 'name', /255/],
    [{ name: 'a..b.cluster.local', type: 'A', value: '10.0.0.1' }, 'name', /empty label/],
    [{ name: 'bad name.cluster.local', type: 'A', value: '10.0.0.1' }, 'name', /ASCII/],
    [{ name: 'x.*.cluster.local', type: 'A', value: '10.0.0.1' }, 'name', /wildcard/],
    [{ name: 'x.cluster.local', type: 'A', value: '10.0.0.256' }, 'value', /IPv4/],
    [{ name: 'x.cluster.local', type: 'A', value: 'fd00::1' }, 'value', /IPv4/],
    [{ name: 'x.cluster.local', type: 'AAAA', value: '10.0.0.1' }, 'value', /IPv6/],
    [{ name: 'x.cluster.local', type: 'A', value: '10.0.0.1', ttl: -1 }, 'ttl', /0\.\./],
    [{ name: 'x.cluster.local', type: 'A', value: '10.0.0.1', ttl: 2 ** 31 }, 'ttl', /2147483647/],
    [{ name: 'x.cluster.local', type: 'A', value: '10.0.0.1', ttl: 1.5 }, 'ttl', /integer/],
    [{ name: '_x._tcp.cluster.local', type: 'SRV', value: 'x.cluster.local' }, 'port', /port/],
    [{ name: '_x._tcp.cluster.local', type: 'SRV', value: 'x.cluster.local', port: 70000 }, 'port', /port/],
    [{ name: '_x._tcp.cluster.local', type: 'SRV', value: 'x.cluster.local', port: 80, weight: -2 }, 'weight', /0\.\.65535/],
    [{ name: 'x.cluster.local', type: 'CNAME', value: 'not a name' }, 'value', /target/],
    [{ name: 'x.cluster.local', type: 'CNAME', value: 'y.cluster.local', port: 80 }, 'port', /only/],
    [{ name: 'x.cluster.local', type: 'BOGUS', value: 'x' }, 'type', /one of/],
    [{ name: 'x.cluster.local', type: 'A', value: '10.0.0.1', colour: 'red' }, 'colour', /unknown field/],
    [{ name: 'x.cluster.local', type: 'A', value: '10.0.0.1', owner: 'kubewatch' }, 'owner', /api/],
    [{ name: 'x.cluster.local', type: 'A', value: '10.0.0.1', probePorts: [0] }, 'probePorts', /1\.\.65535/],
    [{ name: 'x.cluster.local', type: 'A', value: '10.0.0.1', id: 'a/b' }, 'id', /letters/],
    [{ type: 'A', value: '10.0.0.1' }, 'name', /required/],
    [[1, 2], 'body', /object/],
  ];
  for (const [body, field, msg] of cases) {
    const r = await call('POST', '/api/v1/records', body);
    t.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)} -> 400`);
    t.equal(r.json?.error?.field, field, `names ${field}`);
    t.match(r.json?.error?.message, msg);
    t.equal(r.json?.error?.code, 'DNS_API_BAD_FIELD');
  }
  const bad = await call('POST', '/api/v1/records', '{"name": ');
  t.equal(bad.status, 400);
  t.equal(bad.json.error.field, 'body');
  t.equal((await call('GET', '/api/v1/records?type=nope')).json.error.field, 'type');
  t.equal((await call('GET', `/api/v1/records/${'a'.repeat(70)}.local`)).json.error.field, 'name');
  // Exactly at the limits is fine: 63-byte labels, 255 wire bytes.
  t.equal(nameProblem(`${'a'.repeat(63)}.b`), null);
  const n255 = [`${'a'.repeat(63)}`, `${'b'.repeat(63)}`, `${'c'.repeat(63)}`, `${'d'.repeat(61)}`].join('.');
  t.equal(n255.length + 2, 255);
  t.equal(nameProblem(n255), null);
  t.match(nameProblem(n255 + 'x'), /256 bytes/);
});

t.test('api: conflicts are 409, kubewatch records are 403', async (t) => {
  const { call, store } = await setup(t);
  const a = { name: 'web.cluster.local', type: 'A', value: '10.0.0.1' };
  t.equal((await call('POST', '/api/v1/records', a)).status, 201);
  const dup = await call('POST', '/api/v1/records', a);
  t.equal(dup.status, 409);
  t.equal(dup.json.error.code, 'DNS_API_CONFLICT');
  t.equal((await call('POST', '/api/v1/records', { ...a, id: 'other' })).status, 409, 'same value under another id');
  t.equal((await call('POST', '/api/v1/records', { name: 'web.cluster.local', type: 'CNAME', value: 'x.cluster.local' })).status, 409, 'CNAME beside A');
  t.equal((await call('POST', '/api/v1/records', { name: 'c.cluster.local', type: 'CNAME', value: 'x.cluster.local' })).status, 201);
  t.equal((await call('POST', '/api/v1/records', { name: 'c.cluster.local', type: 'A', value: '10.0.0.5' })).status, 409, 'A beside CNAME');
  // Concurrent identical creates: exactly one wins.
  const racers = await Promise.all(Array.from({ length: 8 }, () => call('POST', '/api/v1/records', { name: 'race.cluster.local', type: 'A', value: '10.1.1.1' })));
  t.same(racers.map((r) => r.status).sort(), [201, 409, 409, 409, 409, 409, 409, 409]);

  await store.put({ id: 'k1', name: 'svc1.default.svc.cluster.local', type: 'A', value: '10.96.0.10', owner: 'kubewatch' });
  const base = '/api/v1/records/svc1.default.svc.cluster.local';
  t.equal((await call('GET', base)).status, 200, 'readable');
  const put = await call('PUT', `${base}/k1`, { value: '10.96.0.11' });
  t.equal(put.status, 403);
  t.equal(put.json.error.code, 'DNS_API_READ_ONLY');
  t.equal((await call('DELETE', `${base}/k1`)).status, 403);
  t.equal((await call('DELETE', base)).status, 403);
  t.equal((await call('POST', '/api/v1/records', { name: 'svc1.default.svc.cluster.local', type: 'A', value: '10.0.0.7' })).status, 403);
  t.equal((await store.get('svc1.default.svc.cluster.local')).length, 1);
});

t.test('api: bodies are bounded (413)', async (t) => {
  const { call, api } = await setup(t, { maxBodyBytes: 1024 });
  const big = { name: 'x.cluster.local', type: 'TXT', value: 'x'.repeat(2000) };
  const r = await call('POST', '/api/v1/records', big);
  t.equal(r.status, 413);
  t.equal(r.json.error.code, 'DNS_API_TOO_LARGE');
  // Chunked, no content-length: cut off while streaming.
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(api.url('/api/v1/records'), { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write('{"name":"x.cluster.local","type":"TXT","value":"');
    for (let i = 0; i < 10; i++) req.write('y'.repeat(500));
    req.end('"}');
  });
  t.equal(status, 413);
  t.equal((await call('POST', '/api/v1/records', { name: 'x.cluster.local', type: 'TXT', value: 'small' })).status, 201, 'still serving');
});

t.test('api: health', async (t) => {
  const { call, store } = await setup(t);
  await store.setHealth({ ip: '10.0.0.1', status: 'down', changedAtMs: 5, reporter: 'p' });
  const all = await call('GET', '/api/v1/health');
  t.same(all.json.health, [{ ip: '10.0.0.1', status: 'down', changedAtMs: 5, reporter: 'p' }]);
  t.equal((await call('GET', '/api/v1/health/10.0.0.1')).json.status, 'down');
  t.equal((await call('GET', '/api/v1/health/10.0.0.2')).status, 404);
});

t.test('api: ContainerDNS-style paths', async (t) => {
  const { call, store } = await setup(t);
  const q = `?token=${TOKEN}&user=ops`;
  const post = await call('POST', `/containerdns/api/web.cluster.local${q}`, { type: 'A', ips: ['10.0.0.1', '10.0.0.2'] }, {});
  t.equal(post.status, 200);
  t.equal(post.text, 'OK\n');
  const keys = (await store.get('web.cluster.local')).map((r) => r.id).sort();
  t.same(keys, [fnv32aHex('10.0.0.1'), fnv32aHex('10.0.0.2')].sort(), 'ids are the FNV hash of the IP, as ContainerDNS keyed them');
  t.equal((await call('POST', `/containerdns/api/web.cluster.local${q}`, { type: 'A', ips: ['10.0.0.1'] }, {})).status, 200, 're-post is a no-op');
  const got = await call('GET', `/containerdns/api/web.cluster.local.${q}`, undefined, {});
  t.same(got.json, { 'web.cluster.local.': { type: 'A', ips: ['10.0.0.1', '10.0.0.2'] } });
  t.equal((await call('PUT', `/containerdns/api/web.cluster.local${q}`, { type: 'A', update: { '10.0.0.2': '10.0.0.3' } }, {})).text, 'OK\n');
  t.same((await store.get('web.cluster.local')).map((r) => r.value).sort(), ['10.0.0.1', '10.0.0.3']);
  t.equal((await call('POST', `/containerdns/api/web.cluster.local${q}`, { type: 'CNAME', alias: 'www.cluster.local' }, {})).status, 200);
  t.match(await store.get('www.cluster.local'), [{ type: 'CNAME', value: 'web.cluster.local' }]);
  t.equal((await call('POST', `/containerdns/api/cluster.local${q}`, { type: 'MX', mailHost: 'mx.cluster.local', mailPriority: 3 }, {})).status, 200);
  t.equal((await call('POST', `/containerdns/api/_s._tcp.cluster.local${q}`, { type: 'SRV', ips: ['10.0.0.1'], ports: [8080] }, {})).status, 200);
  t.match(await store.get('_s._tcp.cluster.local'), [{ type: 'SRV', port: 8080 }]);
  const all = await call('GET', `/containerdns/api${q}`, undefined, {});
  t.match(all.json, { 'www.cluster.local.': { type: 'CNAME', 'alias-domain': 'web.cluster.local.' }, 'cluster.local.': { type: 'MX', mailHost: 'mx.cluster.local', mailPriority: 3 } });
  const outside = await call('POST', `/containerdns/api/web.example.com${q}`, { type: 'A', ips: ['10.0.0.1'] }, {});
  t.equal(outside.status, 400);
  t.match(outside.text, /^ERR, the api not support this domain/);
  t.equal((await call('POST', `/containerdns/api/a.default.svc.cluster.local${q}`, { type: 'A', ips: ['10.0.0.1'] }, {})).status, 403);
  t.match((await call('POST', `/containerdns/api/web.cluster.local${q}`, { type: 'A', ips: ['nope'] }, {})).text, /not IP addr/);
  t.equal((await call('POST', `/containerdns/api/web.cluster.local${q}`, { ips: ['10.0.0.1'] }, {})).status, 400, 'type required');
  t.equal((await call('GET', '/containerdns/api/web.cluster.local', undefined, {})).status, 401);
  t.equal((await call('GET', '/containerdns/api/web.cluster.local')).status, 200, 'bearer works too');
  t.equal((await call('DELETE', `/containerdns/api/web.cluster.local${q}`, { type: 'A', ips: ['10.0.0.1'] }, {})).text, 'OK\n');
  t.same((await store.get('web.cluster.local')).map((r) => r.value), ['10.0.0.3']);
  t.equal((await call('DELETE', `/containerdns/api/web.cluster.local${q}`, undefined, {})).status, 200, 'no body: all A records');
  t.equal((await call('GET', `/containerdns/api/web.cluster.local${q}`, undefined, {})).status, 404);
});

t.test('api: arbitrary bodies and paths never crash the server (property test)', async (t) => {
  const { call } = await setup(t);
  const field = fc.oneof(
    fc.constant('name'), fc.constant('type'), fc.constant('value'), fc.constant('ttl'), fc.constant('port'),
    fc.constant('priority'), fc.constant('weight'), fc.constant('probePorts'), fc.constant('id'), fc.string({ maxLength: 8 }),
  );
  const value = fc.oneof(
    fc.string({ maxLength: 70 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null),
    fc.constantFrom('A', 'AAAA', 'SRV', 'CNAME', 'TXT', 'MX', 'NS', 'PTR', '10.0.0.1', 'fd00::1', 'x.cluster.local', '*.cluster.local'),
    fc.array(fc.integer({ min: -5, max: 70000 }), { maxLength: 20 }),
  );
  const body = fc.dictionary(field, value, { maxKeys: 9 });
  let created = 0;
  await fc.assert(
    fc.asyncProperty(body, fc.string({ maxLength: 40 }), async (b, seg) => {
      const r = await call('POST', '/api/v1/records', b);
      if (r.status === 201) created++;
      if (![201, 400, 409].includes(r.status)) throw new Error(`POST ${JSON.stringify(b)} -> ${r.status} ${r.text}`);
      const g = await call('GET', `/api/v1/records/${encodeURIComponent(seg)}`);
      if (![200, 400, 404].includes(g.status)) throw new Error(`GET ${seg} -> ${g.status} ${g.text}`);
      const c = await call('POST', `/containerdns/api/${encodeURIComponent(seg)}.cluster.local`, b);
      if (![200, 400, 403, 404, 409, 413].includes(c.status)) throw new Error(`compat POST ${seg} ${JSON.stringify(b)} -> ${c.status} ${c.text}`);
    }),
    { numRuns: 300, seed: 42 },
  );
  t.pass(`300 random requests answered with client errors or success (${created} created)`);
});

t.test('api over a real etcd: CRUD, and 503 while etcd is down', { skip: etcdAvailable() ? false : 'etcd not installed' }, async (t) => {
  const etcd = await EtcdProcess.start();
  const store = new EtcdDnsStore({ endpoints: [etcd.url], timeoutMs: 1000 });
  const api = await startDnsApi({ store, token: TOKEN });
  t.teardown(async () => {
    await api.close();
    await store.close();
    await etcd.destroy();
  });
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const res = await fetch(api.url(path), {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  };
  const c = await call('POST', '/api/v1/records', { name: 'web.cluster.local', type: 'A', value: '10.0.0.1', probePorts: [80] });
  t.equal(c.status, 201);
  // Stored where ContainerDNS keeps it: /containerdns/<reversed name>/<fnv(ip)>/
  const raw = await store.gateway.range(`/containerdns/local/cluster/web/${fnv32aHex('10.0.0.1')}/`, undefined, 1);
  t.match(JSON.parse(raw.kvs[0]!.value), { host: '10.0.0.1', type: 'A', source: 'api' });
  t.equal((await call('GET', '/api/v1/records/web.cluster.local')).json.records.length, 1);
  t.equal((await call('POST', '/api/v1/records', { name: 'web.cluster.local', type: 'A', value: '10.0.0.1' })).status, 409);
  await etcd.stopProcess();
  const down = await call('GET', '/api/v1/records');
  t.equal(down.status, 503);
  t.equal(down.json.error.code, 'DNS_API_STORE_UNAVAILABLE');
  await etcd.startProcess();
  t.equal((await call('DELETE', `/api/v1/records/web.cluster.local/${fnv32aHex('10.0.0.1')}`)).status, 204);
});
