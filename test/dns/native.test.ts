// The batched native UDP path against the dgram path: byte-identical answers for the same
// packets, the same client hashing (so session persistence holds whichever path a replica
// uses), error answers, truncation, asynchronous (forwarded) answers, IPv6, and survival of
// mutated packets. Skipped with a reason where the addon cannot be built.
import t from 'tap';
import { createSocket } from 'node:dgram';
import { loadUdpBatch } from '../../lib/dns/native/udpbatch.js';
import { ipv6Text } from '../../lib/dns/server.js';
import { Prng } from '../../lib/common/index.js';
import { dig, digShort, freePort, query, rcodeOf, startNode, status, udpExchange, section } from './helpers.js';

// Real processes start slowly on a loaded machine; the runner's own per-file limit still applies.
t.setTimeout(300_000);

const loaded = loadUdpBatch();
if (!('addon' in loaded)) {
  t.comment(`native UDP unavailable: ${loaded.error}`);
  t.pass('skipped: addon not buildable here');
} else {
  const nat = await startNode({ udpIo: 'native', reverseZones: ['10.in-addr.arpa'] });
  const ref = await startNode({ udpIo: 'node', reverseZones: ['10.in-addr.arpa'] });
  t.teardown(async () => {
    await nat.close();
    await ref.close();
  });

  t.test('native path is in use', async (t) => {
    t.equal(nat.node.server.udpIoInUse, 'native');
    t.equal(ref.node.server.udpIoInUse, 'node');
  });

  t.test('byte-identical answers to the dgram path', async (t) => {
    const packets = [
      query('one.cluster.local', 1), query('OnE.cluster.LOCAL', 28, { edns: { do: true } }), query('alias2.cluster.local', 1),
      query('_http._tcp.web.default.svc.cluster.local', 33, { edns: {} }), query('nope.cluster.local', 1), query('svc.cluster.local', 1),
      query('1.1.0.10.in-addr.arpa', 12), query('x.wild.cluster.local', 1), query('cluster.local', 6), query('example.org', 1),
      query('one.cluster.local', 1, { opcode: 2 }), query('one.cluster.local', 1, { edns: { version: 1 } }),
      query('web.default.svc.cluster.local', 1, { id: 4242 }),
      // Oversized datagrams (the native slot is 4096 bytes; the rest is cut, as trailing bytes).
      Buffer.concat([query('one.cluster.local', 1), Buffer.alloc(20_000, 0xee)]),
    ];
    const bogus = Buffer.concat([query('one.cluster.local', 1), Buffer.alloc(20_000, 0xee)]);
    bogus.writeUInt16BE(65535, 10);
    packets.push(bogus);
    for (const p of packets) {
      for (let i = 0; i < 2; i++) {
        const a = await udpExchange(nat.port, p);
        const b = await udpExchange(ref.port, p);
        t.ok(a !== null && b !== null);
        t.same(a, b, `same answer (${i === 0 ? 'miss' : 'cache hit'}) for query ${p.subarray(12, 30).toString('latin1').replace(/[^\x20-\x7e]/g, '.')}`);
      }
    }
    const formerr = Buffer.concat([Buffer.from('abcd01000001000000000000', 'hex'), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
    t.equal(rcodeOf(await udpExchange(nat.port, formerr)), 1, 'FORMERR');
    t.equal(await udpExchange(nat.port, Buffer.from([1, 2, 3]), { timeoutMs: 300 }), null, 'runt dropped');
  });

  t.test('same client hashing as dgram: sticky answers agree per source IP', async (t) => {
    for (let i = 0; i < 10; i++) {
      const src = `127.0.0.${40 + i}`;
      t.same(await digShort(nat.port, ['-b', src, 'web.default.svc.cluster.local', 'A']), await digShort(ref.port, ['-b', src, 'web.default.svc.cluster.local', 'A']), src);
    }
  });

  t.test('truncation on UDP, full over TCP', async (t) => {
    for (let i = 1; i <= 60; i++) await nat.store.put({ id: `big${i}`, name: 'big.cluster.local', type: 'TXT', value: `record number ${i} with some padding to make it long enough` });
    t.match(await dig(nat.port, ['big.cluster.local', 'TXT', '+ignore', '+noedns']), /flags: qr aa tc rd/);
    t.equal(section(await dig(nat.port, ['big.cluster.local', 'TXT']), 'ANSWER').length, 60);
  });

  t.test('asynchronous answers (forwarding) are sent back by the native socket', async (t) => {
    const up = createSocket('udp4');
    const upPort = await freePort();
    up.on('message', (m, r) => {
      const resp = Buffer.from(m);
      resp[2] = 0x81;
      resp[3] = 0x83; // NXDOMAIN, RA
      up.send(resp, r.port, r.address);
    });
    await new Promise<void>((r) => up.bind(upPort, '127.0.0.1', () => r()));
    t.teardown(() => up.close());
    const fw = await startNode({ udpIo: 'native', upstreams: [{ host: '127.0.0.1', port: upPort }], forwardTimeout: 500 });
    t.teardown(() => fw.close());
    t.equal(status(await dig(fw.port, ['forwarded.example', 'A'])), 'NXDOMAIN');
  });

  t.test('IPv6 clients on a native socket', async (t) => {
    const p = await freePort('::1').catch(() => 0);
    if (p === 0) {
      t.pass('no IPv6 loopback');
      return;
    }
    const n6 = await startNode({ udpIo: 'native', listen: [`[::1]:${p}`] });
    t.teardown(() => n6.close());
    t.same(await digShort(p, ['one.cluster.local', 'A'], '::1'), ['10.0.1.1']);
  });

  t.test('ipv6Text matches the canonical form dgram reports', async (t) => {
    const { ipv6Bytes } = await import('../../lib/dns/wire.js');
    const cases: [string, string][] = [['::1', '::1'], ['fd00::1', 'fd00::1'], ['2001:db8::8:800:200c:417a', '2001:db8::8:800:200c:417a'], ['fe80::', 'fe80::'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'], ['::', '::'], ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7']];
    for (const [input, canonical] of cases) t.equal(ipv6Text(ipv6Bytes(input), 0), canonical, input);
  });

  t.test('response-rate limiting on the native path: slips and drops', async (t) => {
    const n = await startNode({ udpIo: 'native', rateLimit: 5, rateLimitBurst: 5, rateLimitSlip: 2 });
    t.teardown(() => n.close());
    const got: (Buffer | null)[] = [];
    for (let i = 0; i < 20; i++) got.push(await udpExchange(n.port, query('one.cluster.local', 1, { id: i }), { timeoutMs: 200 }));
    t.ok(got.filter((a) => a !== null && !(a[2]! & 0x02)).length < 20, 'limited');
    t.ok(got.some((a) => a !== null && (a[2]! & 0x02) !== 0), 'truncated slips sent');
    t.ok(got.some((a) => a === null), 'some dropped');
  });

  t.test('survives mutated packets and answers afterwards', async (t) => {
    const p = new Prng(7);
    const sock = createSocket('udp4');
    sock.on('message', () => undefined);
    const base = query('web.default.svc.cluster.local', 1, { edns: {} });
    for (let i = 0; i < 3000; i++) {
      const b = Buffer.from(base.subarray(0, p.int(base.length + 1)));
      for (let k = 0; k < 4 && b.length > 0; k++) {
        const j = p.int(b.length);
        b[j] = p.int(256);
      }
      sock.send(b, nat.port, '127.0.0.1');
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 200));
    sock.close();
    t.same(await digShort(nat.port, ['one.cluster.local', 'A']), ['10.0.1.1']);
    t.equal(nat.node.server.counts.errors, 0);
  });
}
