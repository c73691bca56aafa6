// ContainerDNS server behaviour with real clients (dig, kdig) and raw packets against an
// in-process DnsNode on loopback.
import t from 'tap';
import dnsPacket from 'dns-packet';
import { createRegistry } from '../../lib/common/index.js';
import { DnsNode } from '../../lib/dns/node.js';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { dig, digShort, freePort, kdig, query, rcodeOf, section, startNode, status, tcpExchange, testConfig, udpExchange, sleep, baseRecords } from './helpers.js';

// Real processes start slowly on a loaded machine; the runner's own per-file limit still applies.
t.setTimeout(300_000);

const node = await startNode({ reverseZones: ['10.in-addr.arpa'], negativeTtl: 15, defaultTtl: 30 });
const port = node.port;
t.teardown(() => node.close());

t.test('A, AAAA and case-insensitive names with 0x20 echo', async (t) => {
  t.same(await digShort(port, ['one.cluster.local', 'A']), ['10.0.1.1']);
  t.same(await digShort(port, ['one.cluster.local', 'AAAA']), ['fd00::1']);
  const out = await dig(port, ['OnE.ClUsTeR.LoCaL', 'A', '+noall', '+answer']);
  t.match(out, /^OnE\.ClUsTeR\.LoCaL\.\s+60\s+IN\s+A\s+10\.0\.1\.1/m, 'owner echoes the query case');
  // Byte for byte: the question section of the answer equals the query's (cache hit and miss).
  for (let i = 0; i < 2; i++) {
    const q = query('oNe.CLUSTER.local', 1, { id: 777 + i });
    const r = await udpExchange(port, q);
    t.ok(r);
    t.same(r!.subarray(12, q.length), q.subarray(12), `question echoed exactly (try ${i})`);
    t.equal(r!.readUInt16BE(0), 777 + i, 'id patched');
  }
  t.equal(status(await dig(port, ['one.cluster.local', 'A'])), 'NOERROR');
  t.match(await dig(port, ['one.cluster.local', 'A']), /flags: qr aa rd/, 'authoritative, RD echoed, no RA');
});

t.test('CNAME chased within the zone; out-of-zone target left to the resolver', async (t) => {
  const out = await dig(port, ['alias2.cluster.local', 'A', '+noall', '+answer']);
  t.match(out, /alias2\.cluster\.local\.\s+\d+\s+IN\s+CNAME\s+alias\.cluster\.local\./);
  t.match(out, /alias\.cluster\.local\.\s+\d+\s+IN\s+CNAME\s+web\.default\.svc\.cluster\.local\./);
  t.match(out, /web\.default\.svc\.cluster\.local\.\s+\d+\s+IN\s+A\s+10\.0\.0\.\d/);
  const ext = await dig(port, ['outside.cluster.local', 'A']);
  t.equal(status(ext), 'NOERROR');
  t.same(section(ext, 'ANSWER').length, 1, 'only the CNAME');
  const dangling = await dig(port, ['dangling.cluster.local', 'A']);
  t.equal(status(dangling), 'NXDOMAIN', 'rcode of the last name in the chain (RFC 6604)');
  t.match(section(dangling, 'ANSWER').join('\n'), /CNAME/);
  const asCname = await digShort(port, ['alias.cluster.local', 'CNAME']);
  t.same(asCname, ['web.default.svc.cluster.local.']);
});

t.test('SRV with target addresses in additional; MX; TXT; NS and SOA at the apex', async (t) => {
  const srv = await dig(port, ['_http._tcp.web.default.svc.cluster.local', 'SRV']);
  t.match(section(srv, 'ANSWER').join('\n'), /SRV\s+10 5 80 web\.default\.svc\.cluster\.local\./);
  t.equal(section(srv, 'ADDITIONAL').filter((l) => /\sA\s/.test(l)).length, 3, 'all healthy target addresses');
  const mx = await dig(port, ['mail.cluster.local', 'MX']);
  t.match(section(mx, 'ANSWER').join('\n'), /MX\s+10 one\.cluster\.local\./);
  t.match(section(mx, 'ADDITIONAL').join('\n'), /10\.0\.1\.1/);
  t.match(section(mx, 'ADDITIONAL').join('\n'), /fd00::1/);
  t.same(await digShort(port, ['txt.cluster.local', 'TXT']), ['"hello world"']);
  t.same(await digShort(port, ['cluster.local', 'NS']), ['ns.cluster.local.']);
  const soa = await digShort(port, ['cluster.local', 'SOA']);
  t.match(soa[0], /^ns\.cluster\.local\. hostmaster\.cluster\.local\. \d+ 3600 600 86400 15$/);
});

t.test('PTR generated from A records in a reverse zone', async (t) => {
  t.same(await digShort(port, ['-x', '10.0.1.1']), ['one.cluster.local.']);
  t.equal(status(await dig(port, ['-x', '10.9.9.9'])), 'NXDOMAIN');
  const ptr6 = await dig(port, ['-x', 'fd00::1']);
  t.equal(status(ptr6), 'REFUSED', 'ip6.arpa not configured: neither served nor forwarded');
});

t.test('wildcards (RFC 4592)', async (t) => {
  t.same(await digShort(port, ['anything.wild.cluster.local', 'A']), ['10.0.2.1']);
  t.same(await digShort(port, ['a.b.wild.cluster.local', 'A']), ['10.0.2.1'], 'covers deeper names');
  const explicit = await dig(port, ['host.wild.cluster.local', 'A']);
  t.equal(status(explicit), 'NOERROR');
  t.equal(section(explicit, 'ANSWER').length, 0, 'an existing name is not synthesized (NODATA)');
  t.equal(status(await dig(port, ['x.host.wild.cluster.local', 'A'])), 'NXDOMAIN', 'no wildcard below an existing node');
  const w = await dig(port, ['XyZ.wild.cluster.local', 'A', '+noall', '+answer']);
  t.match(w, /^XyZ\.wild\.cluster\.local\./m, 'synthesized owner is the query name');
});

t.test('NXDOMAIN vs NODATA, SOA in authority with negative TTL, empty non-terminals', async (t) => {
  const nx = await dig(port, ['nope.cluster.local', 'A']);
  t.equal(status(nx), 'NXDOMAIN');
  const auth = section(nx, 'AUTHORITY');
  t.equal(auth.length, 1);
  t.match(auth[0], /^cluster\.local\.\s+15\s+IN\s+SOA/, 'TTL = min(SOA TTL, minimum)');
  const nodata = await dig(port, ['one.cluster.local', 'TXT']);
  t.equal(status(nodata), 'NOERROR');
  t.equal(section(nodata, 'ANSWER').length, 0);
  t.match(section(nodata, 'AUTHORITY')[0], /SOA/);
  for (const ent of ['svc.cluster.local', 'default.svc.cluster.local', '_tcp.web.default.svc.cluster.local']) {
    const o = await dig(port, [ent, 'A']);
    t.equal(status(o), 'NOERROR', `${ent} is an empty non-terminal`);
    t.match(section(o, 'AUTHORITY')[0], /SOA/);
  }
});

t.test('minimal ANY (RFC 8482)', async (t) => {
  const any = await dig(port, ['one.cluster.local', 'ANY']);
  t.equal(status(any), 'NOERROR');
  t.equal(section(any, 'ANSWER').length, 1, 'one RRset');
});

t.test('EDNS0: OPT echoed, payload floor, BADVERS, two OPTs FORMERR, DO echoed', async (t) => {
  const out = await dig(port, ['one.cluster.local', 'A', '+edns=0', '+bufsize=4096']);
  t.match(out, /EDNS: version: 0, flags:; udp: 1232/);
  const noEdns = await dig(port, ['one.cluster.local', 'A', '+noedns']);
  t.notMatch(noEdns, /OPT PSEUDOSECTION/);
  const bad = await dig(port, ['one.cluster.local', 'A', '+edns=1', '+noednsnegotiation']);
  t.equal(status(bad), 'BADVERS');
  const k = await kdig(port, ['one.cluster.local', 'A', '+edns=1']);
  t.match(k, /BADVERS/);
  const dnssec = await dig(port, ['one.cluster.local', 'A', '+dnssec']);
  t.match(dnssec, /flags: do;/, 'DO echoed');
  // Two OPT records.
  const q = query('one.cluster.local', 1, { edns: {} });
  const twoOpt = Buffer.concat([q, q.subarray(q.length - 11)]);
  twoOpt.writeUInt16BE(2, 10);
  t.equal(rcodeOf(await udpExchange(port, twoOpt)), 1, 'FORMERR');
  // A tiny advertised size is floored to 512, not obeyed.
  const tiny = dnsPacket.decode((await udpExchange(port, query('one.cluster.local', 1, { edns: { udp: 100 } })))!);
  t.equal(tiny.answers?.length, 1);
});

t.test('truncation over UDP, full answer over TCP', async (t) => {
  const many = [];
  for (let i = 1; i <= 60; i++) many.push({ id: `big${i}`, name: 'big.cluster.local', type: 'TXT' as const, value: `record number ${i} with some padding to make it long enough` });
  for (const r of many) await node.store.put(r);
  const udp = await dig(port, ['big.cluster.local', 'TXT', '+ignore', '+noedns']);
  t.match(udp, /flags: qr aa tc rd/, 'TC set');
  const tcp = await dig(port, ['big.cluster.local', 'TXT', '+tcp']);
  t.equal(section(tcp, 'ANSWER').length, 60, 'full answer over TCP');
  const auto = await dig(port, ['big.cluster.local', 'TXT']);
  t.equal(section(auto, 'ANSWER').length, 60, 'dig retries over TCP on TC');
  const k = await kdig(port, ['big.cluster.local', 'TXT', '+tcp']);
  t.match(k, /ANSWER: 60/);
});

t.test('TCP: pipelined queries on one connection, garbage closes it', async (t) => {
  const frames = [query('one.cluster.local', 1, { id: 1 }), query('txt.cluster.local', 16, { id: 2 }), query('nope.cluster.local', 1, { id: 3 })];
  const answers = await tcpExchange(port, frames, 3);
  t.equal(answers.length, 3);
  t.same(answers.map((a) => a.readUInt16BE(0)).sort(), [1, 2, 3]);
  t.same(answers.map((a) => rcodeOf(a)).sort(), [0, 0, 3]);
  const garbage = await tcpExchange(port, [Buffer.from([1, 2, 3])], 1, 1000);
  t.equal(garbage.length, 0, 'a frame shorter than a header gets no answer');
  t.same(await digShort(port, ['one.cluster.local', 'A', '+tcp']), ['10.0.1.1'], 'still serving');
});

t.test('opcodes, classes, REFUSED, malformed', async (t) => {
  t.equal(rcodeOf(await udpExchange(port, query('one.cluster.local', 1, { opcode: 2 }))), 4, 'STATUS opcode: NOTIMP');
  t.equal(rcodeOf(await udpExchange(port, query('one.cluster.local', 1, { opcode: 3 }))), 4, 'unassigned opcode 3: NOTIMP');
  t.equal(rcodeOf(await udpExchange(port, query('cluster.local', 6, { opcode: 5 }))), 5, 'UPDATE (known, declined): REFUSED, not NOTIMP');
  t.equal(rcodeOf(await udpExchange(port, query('cluster.local', 6, { opcode: 4 }))), 5, 'NOTIFY (known, declined): REFUSED');
  const upd = await udpExchange(port, query('cluster.local', 6, { opcode: 5, id: 99 }));
  t.equal((upd![2]! >> 3) & 0xf, 5, 'opcode echoed');
  t.equal(rcodeOf(await udpExchange(port, query('example.org', 1))), 5, 'not our zone, no forwarding: REFUSED');
  t.equal(status(await dig(port, ['example.org', 'A'])), 'REFUSED');
  t.equal(rcodeOf(await udpExchange(port, query('one.cluster.local', 1, { qclass: 3 }))), 5, 'CHAOS class: REFUSED');
  t.equal(rcodeOf(await udpExchange(port, query('cluster.local', 252))), 5, 'AXFR refused');
  const noQ = query('one.cluster.local', 1);
  noQ.writeUInt16BE(0, 4);
  t.equal(rcodeOf(await udpExchange(port, noQ)), 1, 'QDCOUNT 0: FORMERR');
  const cut = query('one.cluster.local', 1).subarray(0, 20);
  t.equal(rcodeOf(await udpExchange(port, cut)), 1, 'truncated question: FORMERR');
  const loop = Buffer.concat([Buffer.from('abcd01000001000000000000', 'hex'), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
  t.equal(rcodeOf(await udpExchange(port, loop)), 1, 'compression pointer loop: FORMERR');
  t.equal(await udpExchange(port, Buffer.from([1, 2, 3]), { timeoutMs: 300 }), null, 'shorter than a header: dropped');
  const huge = Buffer.concat([query('one.cluster.local', 1), Buffer.alloc(30_000, 0xee)]);
  t.equal(rcodeOf(await udpExchange(port, huge)), 0, 'oversized datagram: trailing bytes ignored, question answered');
  const hugeCounts = Buffer.concat([query('one.cluster.local', 1), Buffer.alloc(30_000, 0xee)]);
  hugeCounts.writeUInt16BE(65535, 10);
  t.equal(rcodeOf(await udpExchange(port, hugeCounts)), 1, 'oversized with bogus record counts: FORMERR');
  const resp = query('one.cluster.local', 1);
  resp[2]! |= 0x80;
  t.equal(await udpExchange(port, resp, { timeoutMs: 300 }), null, 'responses are never answered');
});

t.test('health: only healthy IPs; unknown counts as healthy; cache invalidated', async (t) => {
  const n = await startNode({ pickMode: 'all' });
  t.teardown(() => n.close());
  const ips = async (): Promise<string[]> => (await digShort(n.port, ['web.default.svc.cluster.local', 'A'])).sort();
  t.same(await ips(), ['10.0.0.1', '10.0.0.2', '10.0.0.3'], 'unknown health = healthy');
  await n.store.setHealth({ ip: '10.0.0.2', status: 'down', changedAtMs: Date.now() });
  t.same(await ips(), ['10.0.0.1', '10.0.0.3'], 'down IP removed (cached answer invalidated)');
  await n.store.setHealth({ ip: '10.0.0.2', status: 'up', changedAtMs: Date.now() });
  t.same(await ips(), ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  // Shuffled: over many cached answers, more than one order shows up.
  const orders = new Set<string>();
  for (let i = 0; i < 30; i++) orders.add((await digShort(n.port, ['web.default.svc.cluster.local', 'A'])).join(','));
  t.ok(orders.size > 1, `answers are shuffled (${orders.size} orders)`);
  for (const ip of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) await n.store.setHealth({ ip, status: 'down', changedAtMs: Date.now() });
  t.same(await ips(), ['10.0.0.1', '10.0.0.2', '10.0.0.3'], 'all down, policy all: answer all');
});

t.test('pick modes: one (random), sticky, all-down SERVFAIL', async (t) => {
  const one = await startNode({ pickMode: 'one' });
  t.teardown(() => one.close());
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const a = await digShort(one.port, ['web.default.svc.cluster.local', 'A']);
    t.equal(a.length, 1);
    seen.add(a[0]!);
  }
  t.ok(seen.size > 1, 'random-one spreads across IPs');
  const sticky = await startNode({ pickMode: 'sticky', allDown: 'servfail' });
  t.teardown(() => sticky.close());
  const first = await digShort(sticky.port, ['web.default.svc.cluster.local', 'A']);
  for (let i = 0; i < 10; i++) t.same(await digShort(sticky.port, ['web.default.svc.cluster.local', 'A']), first, 'same client, same IP');
  t.same(await digShort(sticky.port, ['alias2.cluster.local', 'A']).then((l) => l.slice(-1)), first, 'via CNAME too');
  await sticky.store.setHealth({ ip: first[0]!, status: 'down', changedAtMs: Date.now() });
  const moved = await digShort(sticky.port, ['web.default.svc.cluster.local', 'A']);
  t.not(moved[0], first[0], 'moves off the down IP');
  for (const ip of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) await sticky.store.setHealth({ ip, status: 'down', changedAtMs: Date.now() });
  t.equal(status(await dig(sticky.port, ['web.default.svc.cluster.local', 'A'])), 'SERVFAIL', 'all down, policy servfail');
});

t.test('sticky: different client IPs spread, each is stable (dig -b)', async (t) => {
  const seen = new Map<string, string>();
  for (let i = 1; i <= 12; i++) {
    const src = `127.0.0.${i + 10}`;
    const a = await digShort(port, ['-b', src, 'web.default.svc.cluster.local', 'A']);
    t.equal(a.length, 1);
    seen.set(src, a[0]!);
    t.same(await digShort(port, ['-b', src, 'web.default.svc.cluster.local', 'A']), a, `${src} stable`);
  }
  t.ok(new Set(seen.values()).size > 1, 'clients spread over IPs');
});

t.test('wildcard names with several IPs are picked persistently too', async (t) => {
  for (const [i, ip] of ['10.0.7.1', '10.0.7.2', '10.0.7.3'].entries()) await node.store.put({ id: `m${i}`, name: '*.multi.cluster.local', type: 'A', value: ip });
  const seen = new Set<string>();
  for (let i = 0; i < 8; i++) {
    const src = `127.0.0.${70 + i}`;
    const a = await digShort(port, ['-b', src, 'host.multi.cluster.local', 'A']);
    t.equal(a.length, 1, 'one IP');
    t.same(await digShort(port, ['-b', src, 'HOST.multi.cluster.local', 'A']), a, `${src} stable`);
    seen.add(a[0]!);
  }
  t.ok(seen.size > 1, 'clients spread');
});

t.test('store changes reach the index (watch) and the cache', async (t) => {
  t.equal(status(await dig(port, ['new.cluster.local', 'A'])), 'NXDOMAIN');
  await node.store.put({ id: 'n1', name: 'new.cluster.local', type: 'A', value: '10.0.5.5' });
  t.same(await digShort(port, ['new.cluster.local', 'A']), ['10.0.5.5']);
  await node.store.delete('new.cluster.local', 'n1');
  t.equal(status(await dig(port, ['new.cluster.local', 'A'])), 'NXDOMAIN');
});

t.test('IPv6 listener', async (t) => {
  const p = await freePort('::1');
  const store = new MemoryDnsStore();
  for (const r of baseRecords) await store.put(r);
  const n = new DnsNode({ config: testConfig(p, { listen: [`[::1]:${p}`] }), store });
  try {
    await n.start();
  } catch (e) {
    t.comment(`no IPv6 loopback here: ${(e as Error).message}`);
    return;
  }
  t.teardown(() => n.close());
  t.same(await digShort(p, ['one.cluster.local', 'A'], '::1'), ['10.0.1.1']);
  t.same(await digShort(p, ['one.cluster.local', 'AAAA', '+tcp'], '::1'), ['fd00::1']);
});

t.test('response-rate limiting per client', async (t) => {
  const n = await startNode({ rateLimit: 5, rateLimitBurst: 5, rateLimitSlip: 2 });
  t.teardown(() => n.close());
  const answers: (Buffer | null)[] = [];
  for (let i = 0; i < 20; i++) answers.push(await udpExchange(n.port, query('one.cluster.local', 1, { id: i }), { timeoutMs: 200 }));
  const full = answers.filter((a) => a !== null && !(a[2]! & 0x02)).length;
  const slipped = answers.filter((a) => a !== null && (a[2]! & 0x02) !== 0).length;
  const dropped = answers.filter((a) => a === null).length;
  t.ok(full >= 5 && full < 20, `limited (${full} full answers)`);
  t.ok(slipped > 0, `some truncated slips (${slipped})`);
  t.ok(dropped > 0, `some dropped (${dropped})`);
  t.same(await digShort(n.port, ['one.cluster.local', 'A', '+tcp']), ['10.0.1.1'], 'TCP is not limited');
});

t.test('metrics from the chain', async (t) => {
  const p = await freePort();
  const store = new MemoryDnsStore();
  for (const r of baseRecords) await store.put(r);
  const registry = createRegistry({ defaultMetrics: false });
  const n = new DnsNode({ config: testConfig(p), store, registry });
  await n.start();
  t.teardown(async () => n.close());
  for (let i = 0; i < 3; i++) await digShort(p, ['web.default.svc.cluster.local', 'A']);
  await dig(p, ['nope.cluster.local', 'A']);
  await sleep(10);
  const text = await registry.metrics();
  t.match(text, /dns_queries_total\{type="A"\} 4/);
  t.match(text, /dns_responses_total\{rcode="NXDOMAIN"\} 1/);
  t.match(text, /dns_cache_hits_total\{cache="answer"\} 2/);
  t.match(text, /dns_picks_total\{outcome="sticky_hit"\} 2/);
  t.match(text, /dns_picks_total\{outcome="hashed"\} 1/);
  t.match(text, /dns_request_duration_seconds_count 4/);
});

t.test('unknown query types get NODATA, not NOTIMP', async (t) => {
  const r = await udpExchange(port, query('one.cluster.local', 99));
  t.equal(rcodeOf(r), 0);
  t.equal(r!.readUInt16BE(6), 0, 'no answers');
  t.equal(r!.readUInt16BE(8), 1, 'SOA in authority');
  t.equal(rcodeOf(await udpExchange(port, query('nope.cluster.local', 65280))), 3, 'private type at a missing name: NXDOMAIN');
});

t.test('TCP connection limit', async (t) => {
  const n = await startNode({ tcpConnectionsMax: 2 });
  t.teardown(() => n.close());
  const { connect } = await import('node:net');
  const open = (): Promise<import('node:net').Socket> => new Promise((resolve) => {
    const s = connect({ port: n.port, host: '127.0.0.1' }, () => resolve(s));
    s.on('error', () => undefined);
  });
  const a = await open();
  const b = await open();
  const c = await open();
  const closed = await new Promise<boolean>((resolve) => {
    c.on('close', () => resolve(true));
    setTimeout(() => resolve(false), 2000);
  });
  t.ok(closed, 'the connection over the limit is closed');
  a.destroy();
  b.destroy();
  await sleep(50);
  t.same(await digShort(n.port, ['one.cluster.local', 'A', '+tcp']), ['10.0.1.1'], 'serves again once below the limit');
});

t.test('log plugin: one structured line per query at debug level', async (t) => {
  const { pino } = await import('pino');
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(s) });
  const p = await freePort();
  const store = new MemoryDnsStore();
  for (const r of baseRecords) await store.put(r);
  const n = new DnsNode({ config: testConfig(p), store, logger });
  await n.start();
  t.teardown(() => n.close());
  await digShort(p, ['one.cluster.local', 'A']);
  await digShort(p, ['one.cluster.local', 'A']);
  const q = lines.map((l) => JSON.parse(l) as { msg: string; name?: string; rcode?: string; cached?: boolean }).filter((l) => l.msg === 'dns query');
  t.equal(q.length, 2);
  t.same(q.map((l) => [l.name, l.rcode, l.cached]), [['one.cluster.local', 'NOERROR', false], ['one.cluster.local', 'NOERROR', true]]);
});

t.test('reload in place: zones and modes change, sticky sessions survive an unrelated change', async (t) => {
  const n = await startNode({ pickMode: 'sticky' });
  t.teardown(() => n.close());
  const before = await digShort(n.port, ['web.default.svc.cluster.local', 'A']);
  // A new IP that rendezvous would prefer for some clients; the sticky entry keeps this one.
  await n.store.put({ id: 'a4', name: 'web.default.svc.cluster.local', type: 'A', value: '10.0.0.4' });
  await n.store.put({ id: 'a5', name: 'web.default.svc.cluster.local', type: 'A', value: '10.0.0.5' });
  t.same(await digShort(n.port, ['web.default.svc.cluster.local', 'A']), before, 'sticky across IP additions');
  n.node.reload({ ...n.node.config, defaultTtl: 99, zones: ['cluster.local', 'other.test'] });
  t.same(await digShort(n.port, ['web.default.svc.cluster.local', 'A']), before, 'sticky across a reload that keeps pick settings');
  t.equal(status(await dig(n.port, ['x.other.test', 'A'])), 'NXDOMAIN', 'new zone served');
  t.match(await dig(n.port, ['txt.cluster.local', 'TXT', '+noall', '+answer']), /\s99\s+IN\s+TXT/, 'new default TTL');
  n.node.reload({ ...n.node.config, pickMode: 'all' });
  t.equal((await digShort(n.port, ['web.default.svc.cluster.local', 'A'])).length, 5, 'mode switched to all');
});

t.test('sticky entry holds across IP additions until it idles out (manual clock, through the cache)', async (t) => {
  const { ManualClock } = await import('../../lib/common/index.js');
  const { rendezvousOrder } = await import('../../lib/dns/picker.js');
  const clock = new ManualClock();
  const p = await freePort();
  const store = new MemoryDnsStore();
  const base = ['10.0.9.1', '10.0.9.2', '10.0.9.3'];
  for (const [i, ip] of base.entries()) await store.put({ id: `b${i}`, name: 'idle.cluster.local', type: 'A', value: ip });
  const n = new DnsNode({ config: testConfig(p, { pickMode: 'sticky', stickyIdle: 1000 }), store, clock });
  await n.start();
  t.teardown(() => n.close());
  const held = (await digShort(p, ['idle.cluster.local', 'A']))[0]!;
  t.equal(held, rendezvousOrder('127.0.0.1', base)[0], 'first pick by hash');
  // Add one IP that the hash prefers over the held one for this client (searched, bounded).
  let preferred = held;
  for (let i = 0; i < 4096 && preferred === held; i++) {
    const cand = `10.1.${i >> 8}.${i & 255}`;
    if (rendezvousOrder('127.0.0.1', [...base, cand])[0] === cand) preferred = cand;
  }
  await store.put({ id: 'new', name: 'idle.cluster.local', type: 'A', value: preferred });
  t.not(preferred, held, 'the hash now prefers another IP');
  clock.advance(500);
  t.same(await digShort(p, ['idle.cluster.local', 'A']), [held], 'the session holds');
  clock.advance(1500);
  t.same(await digShort(p, ['idle.cluster.local', 'A']), [preferred], 'after idling out, the hash decides');
});
