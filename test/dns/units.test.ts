// Unit tests of the server's pieces: wire parser/writer, picker (rendezvous + sticky), in-memory
// store (revisions, watch, reset), records file parsing, zone index (ENT, PTR, pick sets).
import t from 'tap';
import dnsPacket from 'dns-packet';
import { ManualClock } from '../../lib/common/index.js';
import { MessageWriter, ParsedQuery, parseQuery, ParseStatus, readName, reverseName, ipv6Bytes, TYPE, normalizeClient } from '../../lib/dns/wire.js';
import { Picker, rendezvousOrder, PICK_ALL, PICK_SERVFAIL } from '../../lib/dns/picker.js';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { parseRecordsText } from '../../lib/dns/records.js';
import { makeZones, ZoneIndex, type PickSet } from '../../lib/dns/zoneindex.js';
import { RecordsFileError, StoreInvalidRecordError } from '../../lib/dns/errors.js';
import { RateLimiter, RateDecision } from '../../lib/dns/ratelimit.js';
import type { StoreEvent } from '../../lib/dns/store.js';
import { query } from './helpers.js';

t.test('wire: parseQuery statuses', async (t) => {
  const q = new ParsedQuery();
  const ok = query('Web.Cluster.Local', 28, { edns: { udp: 4096, do: true } });
  t.equal(parseQuery(ok, ok.length, q), ParseStatus.OK);
  t.equal(q.qtype, 28);
  t.equal(q.name(ok), 'web.cluster.local');
  t.ok(q.edns);
  t.equal(q.ednsUdp, 4096);
  t.ok(q.ednsDo);
  t.equal(q.wireKey, q.wireKey.toLowerCase(), 'key lower-cased');
  const small = query('a.b', 1, { edns: { udp: 10 } });
  parseQuery(small, small.length, q);
  t.equal(q.ednsUdp, 512, 'payload size floored at 512');
  t.equal(parseQuery(Buffer.alloc(5), 5, q), ParseStatus.DROP);
  const v1 = query('a.b', 1, { edns: { version: 1 } });
  t.equal(parseQuery(v1, v1.length, q), ParseStatus.BADVERS);
  const op = query('a.b', 1, { opcode: 2 });
  t.equal(parseQuery(op, op.length, q), ParseStatus.NOTIMP);
  t.ok(q.qEnd > 0, 'question parsed for the NOTIMP echo');
  const upd = query('a.b', 6, { opcode: 5 });
  t.equal(parseQuery(upd, upd.length, q), ParseStatus.REFUSED, 'UPDATE is known: REFUSED');
  const longLabel = Buffer.concat([Buffer.from('000001000001000000000000', 'hex'), Buffer.from([64]), Buffer.alloc(64, 97), Buffer.from([0, 0, 1, 0, 1])]);
  t.equal(parseQuery(longLabel, longLabel.length, q), ParseStatus.FORMERR, 'label > 63');
  const parts = [Buffer.from('000001000001000000000000', 'hex')];
  for (let i = 0; i < 10; i++) parts.push(Buffer.from([30]), Buffer.alloc(30, 98));
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  const longName = Buffer.concat(parts);
  t.equal(parseQuery(longName, longName.length, q), ParseStatus.FORMERR, 'name > 255');
});

t.test('wire: readName rejects forward pointers and loops', async (t) => {
  const b = Buffer.from([3, 97, 98, 99, 0, 0xc0, 0, 0xc0, 7]);
  t.same(readName(b, b.length, 5), { name: 'abc', end: 7 });
  t.equal(readName(b, b.length, 7), null, 'self pointer');
  const fwd = Buffer.from([0xc0, 2, 1, 97, 0]);
  t.equal(readName(fwd, fwd.length, 0), null, 'forward pointer');
});

t.test('wire: writer compresses and dns-packet decodes it', async (t) => {
  const w = new MessageWriter(4096);
  w.u16(1);
  w.u16(0x8400);
  w.u16(0);
  w.u16(3);
  w.u16(0);
  w.u16(0);
  w.rr({ name: 'a.example.com', ttl: 5, data: { type: TYPE.A, ip: '1.2.3.4' } });
  w.rr({ name: 'b.example.com', ttl: 5, data: { type: TYPE.SRV, priority: 1, weight: 2, port: 3, target: 'a.example.com' } });
  w.rr({ name: 'example.com', ttl: 5, data: { type: TYPE.SOA, mname: 'ns.example.com', rname: 'h.example.com', serial: 1, refresh: 2, retry: 3, expire: 4, minimum: 5 } });
  const p = dnsPacket.decode(Buffer.from(w.buf.subarray(0, w.off)));
  t.equal(p.answers?.length, 3);
  t.same((p.answers?.[1] as { data: unknown }).data, { priority: 1, weight: 2, port: 3, target: 'a.example.com' });
  t.ok(w.off < 120, `compressed (${w.off} bytes)`);
});

t.test('wire: reverse names and addresses', async (t) => {
  t.equal(reverseName('10.1.2.3'), '3.2.1.10.in-addr.arpa');
  t.equal(reverseName('fd00::1'), '1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa');
  t.equal(reverseName('nope'), null);
  t.equal(ipv6Bytes('::ffff:1.2.3.4').toString('hex'), '00000000000000000000ffff01020304');
  t.equal(normalizeClient('::ffff:127.0.0.1'), '127.0.0.1');
  t.equal(normalizeClient('::1'), '::1');
});

const set = (ips: string[], healthy = ips): PickSet => {
  const idx = new ZoneIndex({ zones: makeZones(['z'], [], { negativeTtl: 5, defaultTtl: 5 }) });
  idx.load(ips.map((ip, i) => ({ id: `r${i}`, name: 'svc.z', type: 'A' as const, value: ip })), ips.filter((ip) => !healthy.includes(ip)).map((ip) => ({ ip, status: 'down' as const, changedAtMs: 0 })), 1);
  return idx.pickSet('k', () => 'svc.z', 4)!;
};

t.test('picker: rendezvous is deterministic across instances (replicas, restarts)', async (t) => {
  const s = set(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
  const a = new Picker({ mode: 'sticky', allDown: 'all', stickyMax: 100, stickyIdleMs: 1000 });
  const b = new Picker({ mode: 'sticky', allDown: 'all', stickyMax: 100, stickyIdleMs: 1000 });
  const counts = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    const c = `192.168.${i >> 8}.${i & 255}`;
    const ip = a.choose(c, s);
    t.equal(b.choose(c, s), ip);
    t.equal(rendezvousOrder(c, s.healthy)[0], ip, 'first in hash order');
    counts.set(ip, (counts.get(ip) ?? 0) + 1);
  }
  t.equal(counts.size, 4, 'every IP gets clients');
  for (const n of counts.values()) t.ok(n > 50, `balanced enough (${n}/400)`);
});

t.test('picker: a down IP moves only its clients, to their next in hash order', async (t) => {
  const ips = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
  const full = set(ips);
  const p = new Picker({ mode: 'sticky', allDown: 'all', stickyMax: 1000, stickyIdleMs: 60_000 });
  const before = new Map<string, string>();
  for (let i = 0; i < 200; i++) before.set(`c${i}`, p.choose(`c${i}`, full));
  const degraded = set(ips, ['10.0.0.1', '10.0.0.3']);
  for (const [c, ip] of before) {
    const now = p.choose(c, degraded);
    if (ip !== '10.0.0.2') t.equal(now, ip, 'unaffected clients stay');
    else t.equal(now, rendezvousOrder(c, ips).filter((x) => x !== '10.0.0.2')[0], 'next by hash order');
  }
});

t.test('picker: sticky keeps clients when an IP is added; idle expiry; size bound', async (t) => {
  const clock = new ManualClock();
  const p = new Picker({ mode: 'sticky', allDown: 'all', stickyMax: 50, stickyIdleMs: 1000, clock });
  const small = set(['10.0.0.1', '10.0.0.2']);
  const big = set(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  const held = new Map<string, string>();
  for (let i = 0; i < 40; i++) held.set(`c${i}`, p.choose(`c${i}`, small));
  let movedByHash = 0;
  for (const [c, ip] of held) {
    t.equal(p.choose(c, big), ip, 'sticky entry holds across the addition');
    if (rendezvousOrder(c, big.healthy)[0] !== ip) movedByHash++;
  }
  t.ok(movedByHash > 0, 'without the table some clients would have moved');
  clock.advance(1001);
  let moved = 0;
  for (const [c, ip] of held) if (p.choose(c, big) !== ip) moved++;
  t.equal(moved, movedByHash, 'after idle expiry the hash decides');
  for (let i = 0; i < 200; i++) p.choose(`x${i}`, big);
  t.ok(p.stickySize <= 50, 'table bounded');
});

t.test('picker: modes and all-down policies', async (t) => {
  const s = set(['10.0.0.1', '10.0.0.2']);
  const down = set(['10.0.0.1', '10.0.0.2'], []);
  t.equal(new Picker({ mode: 'all', allDown: 'all', stickyMax: 1, stickyIdleMs: 1 }).choose('c', s), PICK_ALL);
  t.equal(new Picker({ mode: 'sticky', allDown: 'all', stickyMax: 1, stickyIdleMs: 1 }).choose('c', down), PICK_ALL);
  t.equal(new Picker({ mode: 'sticky', allDown: 'servfail', stickyMax: 1, stickyIdleMs: 1 }).choose('c', down), PICK_SERVFAIL);
  let r = 0;
  const one = new Picker({ mode: 'one', allDown: 'all', stickyMax: 1, stickyIdleMs: 1, random: () => (r++ % 2) * 0.6 });
  t.same([one.choose('c', s), one.choose('c', s)], ['10.0.0.1', '10.0.0.2']);
});

t.test('memstore: revisions, validation, watch from a revision, reset when behind', async (t) => {
  const s = new MemoryDnsStore({ historyMax: 3 });
  const r1 = await s.put({ id: '1', name: 'A.Example.', type: 'A', value: '10.0.0.1' });
  t.equal(r1, 1);
  t.same((await s.get('a.example')).map((r) => r.name), ['a.example'], 'names normalized');
  await t.rejects(s.put({ id: '2', name: 'a.example', type: 'A', value: 'nope' }), StoreInvalidRecordError);
  await t.rejects(s.put({ id: '2', name: 'a'.repeat(64) + '.example', type: 'A', value: '10.0.0.1' }), StoreInvalidRecordError);
  const events: StoreEvent[] = [];
  const w = s.watch(1, (e) => events.push(e));
  await s.put({ id: '2', name: 'a.example', type: 'A', value: '10.0.0.2' });
  t.equal(await s.setHealth({ ip: '10.0.0.2', status: 'down', changedAtMs: 1 }), 3);
  t.equal(await s.setHealth({ ip: '10.0.0.2', status: 'down', changedAtMs: 2 }), 3, 'same status is not a change');
  t.ok(await s.delete('a.example', '1'));
  t.notOk(await s.delete('a.example', '1'));
  t.same(events.map((e) => [e.kind, e.revision]), [['put', 2], ['health', 3], ['delete', 4]]);
  w.close();
  const resumed: StoreEvent[] = [];
  s.watch(2, (e) => resumed.push(e));
  await new Promise((r) => setTimeout(r, 5));
  t.same(resumed.map((e) => e.revision), [3, 4], 'backlog from revision');
  await s.put({ id: '3', name: 'b.example', type: 'A', value: '10.0.0.3' });
  await s.put({ id: '4', name: 'b.example', type: 'A', value: '10.0.0.4' });
  const behind: StoreEvent[] = [];
  s.watch(0, (e) => behind.push(e));
  await new Promise((r) => setTimeout(r, 5));
  t.equal(behind[0]?.kind, 'reset', 'too far behind: reset');
  const ordered: number[] = [];
  s.watch(4, (e) => ordered.push(e.revision));
  await s.put({ id: '5', name: 'c.example', type: 'A', value: '10.0.0.5' });
  await new Promise((r) => setTimeout(r, 5));
  t.same(ordered, [5, 6, 7], 'a put right after watch() is delivered after the backlog');
  await s.delete('c.example', '5');
  const snap = await s.snapshot();
  t.equal(snap.revision, 8);
  t.equal(snap.records.length, 3);
  await s.replaceAll([{ id: '3', name: 'b.example', type: 'A', value: '10.0.0.3' }]);
  t.same((await s.snapshot()).records.map((r) => r.id), ['3'], 'replaceAll keeps only the given records');
  await s.close();
});

t.test('records file: zone-like and JSON, with errors naming the line', async (t) => {
  const z = parseRecordsText(`$TTL 60\nweb.cluster.local. A 10.0.0.1 ; comment\nweb.cluster.local. 30 IN AAAA fd00::1\n_h._tcp.web.cluster.local. SRV 1 2 80 web.cluster.local.\nt.cluster.local. TXT "a b" "c"\nm.cluster.local. MX 5 web.cluster.local.\n`);
  t.equal(z.records.length, 5);
  t.same(z.records.map((r) => r.ttl), [60, 30, 60, 60, 60]);
  t.equal(z.records[3]!.value, 'a bc');
  t.equal(z.records[2]!.port, 80);
  const j = parseRecordsText(JSON.stringify({ records: [{ name: 'x.cluster.local', type: 'a', value: '10.0.0.9' }], health: [{ ip: '10.0.0.9', status: 'down' }] }));
  t.equal(j.records[0]!.type, 'A');
  t.equal(j.health[0]!.status, 'down');
  t.throws(() => parseRecordsText('x.cluster.local. A 999.1.1.1\n', 'f.txt'), RecordsFileError);
  t.throws(() => parseRecordsText('x.cluster.local. HINFO a b\n', 'f.txt'), /f\.txt:1: unsupported type/);
  t.throws(() => parseRecordsText('{nope', 'f.json'), /not valid JSON/);
});

t.test('zone index: existence, PTR refcounts, pick sets follow health', async (t) => {
  const idx = new ZoneIndex({ zones: makeZones(['cluster.local'], ['10.in-addr.arpa'], { negativeTtl: 5, defaultTtl: 5 }) });
  let changes = 0;
  idx.onChange(() => changes++);
  idx.load([
    { id: '1', name: 'a.b.cluster.local', type: 'A', value: '10.0.0.1' },
    { id: '2', name: 'x.cluster.local', type: 'A', value: '10.0.0.1' },
    { id: '3', name: 'x.cluster.local', type: 'A', value: '10.0.0.2' },
  ], [], 3);
  t.ok(idx.exists('b.cluster.local'), 'empty non-terminal');
  t.notOk(idx.exists('c.cluster.local'));
  t.same([...idx.ptrTargets('1.0.0.10.in-addr.arpa')].sort(), ['a.b.cluster.local', 'x.cluster.local']);
  idx.apply({ kind: 'delete', name: 'x.cluster.local', id: '2', revision: 4 });
  t.same([...idx.ptrTargets('1.0.0.10.in-addr.arpa')], ['a.b.cluster.local']);
  t.equal(idx.pickSet('k1', () => 'x.cluster.local', 4), null, 'one address: nothing to pick');
  idx.apply({ kind: 'put', record: { id: '4', name: 'x.cluster.local', type: 'A', value: '10.0.0.4' }, revision: 5 });
  t.same(idx.pickSet('k2', () => 'x.cluster.local', 4)?.healthy, ['10.0.0.2', '10.0.0.4']);
  idx.apply({ kind: 'health', health: { ip: '10.0.0.4', status: 'down', changedAtMs: 0 }, revision: 6 });
  t.same(idx.pickSet('k2', () => 'x.cluster.local', 4)?.healthy, ['10.0.0.2'], 'memo cleared by change');
  idx.apply({ kind: 'health', health: { ip: '10.0.0.4', status: 'up', changedAtMs: 0 }, revision: 5 });
  t.same(idx.pickSet('k2', () => 'x.cluster.local', 4)?.healthy, ['10.0.0.2'], 'stale revision ignored');
  t.equal(changes, 4);
  t.equal(idx.zoneOf('x.cluster.local')?.name, 'cluster.local');
  t.equal(idx.zoneOf('xcluster.local'), null, 'suffix match is label-aligned');
});

t.test('rate limiter: bucket, slip, refill', async (t) => {
  const clock = new ManualClock();
  const rl = new RateLimiter({ perSecond: 10, burst: 3, slip: 2, clientsMax: 2, clock });
  t.same([rl.check('a'), rl.check('a'), rl.check('a')], [RateDecision.ALLOW, RateDecision.ALLOW, RateDecision.ALLOW]);
  t.same([rl.check('a'), rl.check('a')], [RateDecision.DROP, RateDecision.SLIP]);
  t.equal(rl.check('b'), RateDecision.ALLOW, 'per client');
  clock.advance(100);
  t.equal(rl.check('a'), RateDecision.ALLOW, 'refilled');
  t.equal(new RateLimiter({ perSecond: 0, burst: 1, slip: 0, clientsMax: 1 }).check('a'), RateDecision.ALLOW, '0 disables');
});

t.test('resolv.conf parsing', async (t) => {
  const { parseResolvConf } = await import('../../lib/dns/plugins/forward.js');
  t.same(parseResolvConf('# c\nnameserver 10.0.0.53\nsearch x\nnameserver fe80::1%eth0\n'), [{ host: '10.0.0.53', port: 53 }, { host: 'fe80::1', port: 53 }]);
});

t.test('IPC store: calls, watch events, errors and timeouts over a channel pair', async (t) => {
  const { EventEmitter } = await import('node:events');
  const { IpcDnsStore, serveStoreOverIpc } = await import('../../lib/dns/ipcstore.js');
  const { IpcStoreError } = await import('../../lib/dns/errors.js');
  // Two ends of a channel: what one sends, the other receives (asynchronously, like IPC).
  const a = new EventEmitter();
  const b = new EventEmitter();
  const end = (self: InstanceType<typeof EventEmitter>, peer: InstanceType<typeof EventEmitter>) => ({
    send: (m: unknown) => setImmediate(() => peer.emit('message', JSON.parse(JSON.stringify(m)))),
    on: (e: 'message', fn: (m: unknown) => void) => self.on(e, fn),
    off: (e: 'message', fn: (m: unknown) => void) => self.off(e, fn),
  });
  const real = new MemoryDnsStore();
  const stop = serveStoreOverIpc(real, end(a, b));
  const remote = new IpcDnsStore(end(b, a), 500);
  const events: StoreEvent[] = [];
  remote.watch(0, (e) => events.push(e));
  await new Promise((r) => setTimeout(r, 20));
  t.equal(await remote.put({ id: '1', name: 'x.cluster.local', type: 'A', value: '10.0.0.1' }), 1);
  t.equal((await remote.snapshot()).records.length, 1);
  t.same((await remote.get('x.cluster.local')).map((r) => r.value), ['10.0.0.1']);
  await t.rejects(remote.put({ id: '2', name: 'x.cluster.local', type: 'A', value: 'bad' }), IpcStoreError, 'store errors cross the channel');
  await real.setHealth({ ip: '10.0.0.1', status: 'down', changedAtMs: 1 });
  await new Promise((r) => setTimeout(r, 20));
  t.same(events.map((e) => e.kind), ['put', 'health'], 'watch events stream to the worker');
  stop();
  await t.rejects(remote.snapshot(), IpcStoreError, 'a dead primary is a timeout error, not a hang');
  await remote.close();
});
