// Fuzz: seeded mutations of valid queries (bit flips, truncation, extension, hostile counts,
// compression pointers, random garbage) fed to the parser directly and to a running server over
// UDP and TCP. The server must never throw or stop, and must answer a valid query afterwards.
// Replay a failure with DNS_FUZZ_SEED=<seed printed in the test name>.
import t from 'tap';
import { Prng, randomSeed } from '../../lib/common/index.js';
import { ParsedQuery, parseQuery, readName, skipRecord } from '../../lib/dns/wire.js';
import { digShort, query, startNode, tcpExchange, udpExchange } from './helpers.js';
import { createSocket } from 'node:dgram';

// Real processes start slowly on a loaded machine; the runner's own per-file limit still applies.
t.setTimeout(300_000);

const seed = Number(process.env.DNS_FUZZ_SEED ?? randomSeed());
const prng = new Prng(seed);

const seeds = [
  query('web.default.svc.cluster.local', 1),
  query('one.cluster.local', 28, { edns: { udp: 4096, do: true } }),
  query('_http._tcp.web.default.svc.cluster.local', 33, { edns: {} }),
  query('1.0.0.10.in-addr.arpa', 12),
  query('example.org', 255),
  query('x.wild.cluster.local', 16, { opcode: 0 }),
];

function mutate(p: Prng): Buffer {
  const base = Buffer.from(p.pick(seeds));
  switch (p.int(8)) {
    case 0: {
      for (let i = 0, n = 1 + p.int(8); i < n; i++) {
        const k = p.int(base.length);
        base[k] = base[k]! ^ (1 << p.int(8));
      }
      return base;
    }
    case 1:
      return base.subarray(0, p.int(base.length + 1));
    case 2:
      return Buffer.concat([base, Buffer.from(Array.from({ length: p.int(600) }, () => p.int(256)))]);
    case 3: {
      // Hostile section counts.
      base.writeUInt16BE(p.int(65536), 4 + 2 * p.int(4));
      return base;
    }
    case 4: {
      // Compression pointers anywhere, including loops.
      const at = 12 + p.int(Math.max(1, base.length - 13));
      base[at] = 0xc0 | p.int(64);
      if (at + 1 < base.length) base[at + 1] = p.int(base.length);
      return base;
    }
    case 5:
      return Buffer.from(Array.from({ length: p.int(700) }, () => p.int(256)));
    case 6: {
      // Large label lengths.
      base[12 + p.int(Math.max(1, base.length - 12))] = 1 + p.int(255);
      return base;
    }
    default: {
      base[2] = p.int(256);
      base[3] = p.int(256);
      return base;
    }
  }
}

t.test(`parser never throws on mutated input (seed ${seed})`, async (t) => {
  const q = new ParsedQuery();
  const p = prng.fork();
  let ok = 0;
  let bad = 0;
  for (let i = 0; i < 50_000; i++) {
    const b = mutate(p);
    const st = parseQuery(b, b.length, q);
    if (st === 0) {
      ok++;
      if (q.qEnd > b.length || q.qEnd < 17) bad++;
    }
    readName(b, b.length, 12);
    skipRecord(b, b.length, 12);
  }
  t.ok(ok > 0, `${ok} mutated packets still parsed`);
  t.equal(bad, 0, 'a parsed question always lies inside the packet');
});

t.test(`server survives mutated packets over UDP and TCP (seed ${seed})`, async (t) => {
  const n = await startNode({ reverseZones: ['10.in-addr.arpa'] });
  t.teardown(() => n.close());
  const p = prng.fork();
  const sock = createSocket('udp4');
  sock.on('message', () => undefined);
  // Bounded: 4000 packets, paced in small bursts so the socket buffer is not the thing tested.
  for (let i = 0; i < 4000; i++) {
    sock.send(mutate(p), n.port, '127.0.0.1');
    if (i % 50 === 49) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 200));
  sock.close();
  for (let i = 0; i < 20; i++) {
    const frames = Array.from({ length: 1 + p.int(4) }, () => mutate(p));
    await tcpExchange(n.port, frames, frames.length, 300);
  }
  t.same(await digShort(n.port, ['web.default.svc.cluster.local', 'A']).then((a) => a.length), 1, 'answers a valid UDP query afterwards');
  t.same(await digShort(n.port, ['one.cluster.local', 'A', '+tcp']), ['10.0.1.1'], 'and a TCP one');
  const r = await udpExchange(n.port, query('one.cluster.local', 1));
  t.ok(r, 'raw query answered');
  t.equal(n.node.server.counts.errors, 0, 'no handler threw');
});
