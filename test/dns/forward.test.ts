// Forwarding to upstream resolvers, against fake upstreams on loopback: ID/question matching,
// TTL cache, negative caching, failover, TCP retry on TC, serve-stale, SERVFAIL when all fail.
import t from 'tap';
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import dnsPacket from 'dns-packet';
import { dig, digShort, freePort, query, rcodeOf, section, sleep, startNode, status, udpExchange } from './helpers.js';

// Real processes start slowly on a loaded machine; the runner's own per-file limit still applies.
t.setTimeout(300_000);

interface FakeUpstream {
  port: number;
  queries: string[];
  silent: boolean;
  /** Answers wait this long (to hold queries in flight). */
  delayMs: number;
  close(): Promise<void>;
}

type Answer = (q: dnsPacket.Packet) => dnsPacket.Packet[] | null;

async function fakeUpstream(answer: Answer): Promise<FakeUpstream> {
  const port = await freePort();
  const sock: Socket = createSocket('udp4');
  const up: FakeUpstream = { port, queries: [], silent: false, delayMs: 0, close: async () => undefined };
  sock.on('message', (m, rinfo) => {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(m);
    } catch {
      return;
    }
    up.queries.push(`${q.questions?.[0]?.name} ${q.questions?.[0]?.type}`);
    if (up.silent) return;
    const send = (): void => {
      for (const r of answer(q) ?? []) sock.send(dnsPacket.encode(r), rinfo.port, rinfo.address);
    };
    if (up.delayMs > 0) setTimeout(send, up.delayMs);
    else send();
  });
  await new Promise<void>((r) => sock.bind(port, '127.0.0.1', () => r()));
  // TCP side for truncated answers: answers the full version.
  const tcp: Server = createServer((s) => {
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      const q = dnsPacket.decode(d.subarray(2));
      up.queries.push(`tcp ${q.questions?.[0]?.name}`);
      const r = answer({ ...q, flags: 0x8000 } as dnsPacket.Packet)?.[0];
      if (r) {
        const b = dnsPacket.encode({ ...r, flags: (r.flags ?? 0) & ~0x0200 });
        s.end(Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]));
      }
    });
  });
  await new Promise<void>((r) => tcp.listen(port, '127.0.0.1', () => r()));
  up.close = async () => {
    sock.close();
    await new Promise<void>((r) => tcp.close(() => r()));
  };
  return up;
}

const resp = (q: dnsPacket.Packet, extra: Partial<dnsPacket.Packet>): dnsPacket.Packet => ({
  id: q.id, type: 'response', flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions, ...extra,
});

const upstream = await fakeUpstream((q) => {
  const name = q.questions?.[0]?.name ?? '';
  const lname = name.toLowerCase();
  if (lname === 'example.org') return [resp(q, { answers: [{ name, type: 'A', ttl: 300, data: '192.0.2.1' }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 } as dnsPacket.Answer] })];
  if (lname === 'spoof.example.org') {
    // A forged answer (wrong ID) arrives first; the real one second.
    return [{ ...resp(q, { answers: [{ name, type: 'A', ttl: 300, data: '6.6.6.6' }] }), id: ((q.id ?? 0) + 1) & 0xffff }, resp(q, { answers: [{ name, type: 'A', ttl: 300, data: '192.0.2.7' }] })];
  }
  if (lname === 'short.example.org') return [resp(q, { answers: [{ name, type: 'A', ttl: 1, data: '192.0.2.9' }] })];
  if (lname === 'big.example.org') {
    const answers: dnsPacket.Answer[] = [];
    for (let i = 0; i < 40; i++) answers.push({ name, type: 'TXT', ttl: 60, data: `text record ${i} padded padded padded padded` });
    return q.flags === 0x8000 ? [resp(q, { answers })] : [{ ...resp(q, {}), flags: dnsPacket.TRUNCATED_RESPONSE | dnsPacket.RECURSION_AVAILABLE }];
  }
  // dns-packet takes the rcode from the low flag bits: 3 = NXDOMAIN.
  return [resp(q, {
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | 3,
    authorities: [{ name: 'example.org', type: 'SOA', ttl: 600, data: { mname: 'ns.example.org', rname: 'h.example.org', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 120 } }],
  } as Partial<dnsPacket.Packet>)];
});
const deadPort = await freePort();
t.teardown(() => upstream.close());

const n = await startNode({ upstreams: [{ host: '127.0.0.1', port: deadPort }, { host: '127.0.0.1', port: upstream.port }], forwardTimeout: 300, upstreamDown: 60_000, serveStale: 60_000 });
t.teardown(() => n.close());

t.test('forwards, fails over from a dead upstream, caches for the TTL', async (t) => {
  const out = await dig(n.port, ['ExAmple.org', 'A']);
  t.equal(status(out), 'NOERROR');
  t.match(section(out, 'ANSWER')[0], /^ExAmple\.org\.\s+300\s+IN\s+A\s+192\.0\.2\.1/);
  const before = upstream.queries.length;
  const again = await dig(n.port, ['example.org', 'A']);
  t.match(section(again, 'ANSWER')[0], /192\.0\.2\.1/);
  t.equal(upstream.queries.length, before, 'served from the forward cache');
  const ttl = Number(/\s(\d+)\s+IN\s+A/.exec(section(again, 'ANSWER')[0] ?? '')?.[1]);
  t.ok(ttl <= 300 && ttl >= 290, `TTL ages (${ttl})`);
  t.notMatch(await dig(n.port, ['example.org', 'A', '+noedns']), /OPT PSEUDOSECTION/, 'no OPT to a client that sent none');
  // The dead upstream is now marked down, so the next new name goes straight to the live one.
  const t0 = Date.now();
  t.same(await digShort(n.port, ['spoof.example.org', 'A']), ['192.0.2.7'], 'forged answer with a wrong ID ignored');
  t.ok(Date.now() - t0 < 2000);
});

t.test('negative answers cached for the SOA minimum', async (t) => {
  const out = await dig(n.port, ['nx.example.org', 'A']);
  t.equal(status(out), 'NXDOMAIN');
  t.match(section(out, 'AUTHORITY')[0], /SOA/);
  const before = upstream.queries.length;
  t.equal(status(await dig(n.port, ['nx.example.org', 'A'])), 'NXDOMAIN');
  t.equal(upstream.queries.length, before, 'negative cache hit');
});

t.test('truncated upstream answer retried over TCP', async (t) => {
  const out = await dig(n.port, ['big.example.org', 'TXT', '+tcp']);
  t.equal(section(out, 'ANSWER').length, 40);
  t.ok(upstream.queries.some((q) => q.startsWith('tcp big.example.org')));
  const udp = await dig(n.port, ['big.example.org', 'TXT', '+ignore', '+noedns']);
  t.match(udp, /flags: qr.* tc/, 'a too-big cached answer is truncated to the UDP client');
});

t.test('serve-stale when every upstream fails; SERVFAIL with nothing cached', async (t) => {
  t.same(await digShort(n.port, ['short.example.org', 'A']), ['192.0.2.9']);
  await sleep(1100);
  upstream.silent = true;
  t.teardown(() => {
    upstream.silent = false;
  });
  const stale = await dig(n.port, ['short.example.org', 'A', '+time=5']);
  t.equal(status(stale), 'NOERROR');
  t.match(section(stale, 'ANSWER')[0], /\s1\s+IN\s+A\s+192\.0\.2\.9/, 'stale answer (TTL capped at its original 1s)');
  const none = await udpExchange(n.port, query('never.example.org', 1), { timeoutMs: 4000 });
  t.equal(rcodeOf(none), 2, 'SERVFAIL');
});

t.test('concurrent identical misses share one upstream query', async (t) => {
  const slow = await fakeUpstream((q) => [resp(q, { answers: [{ name: q.questions?.[0]?.name ?? '', type: 'A', ttl: 60, data: '192.0.2.44' }] })]);
  t.teardown(() => slow.close());
  const m = await startNode({ upstreams: [{ host: '127.0.0.1', port: slow.port }], forwardTimeout: 1000 });
  t.teardown(() => m.close());
  // Answers are held back so all five client queries arrive while the first is in flight.
  slow.delayMs = 300;
  const asks = Array.from({ length: 5 }, (_, i) => udpExchange(m.port, query(i % 2 ? 'BURST.example.org' : 'burst.example.org', 1, { id: 100 + i }), { timeoutMs: 3000 }));
  const answers = await Promise.all(asks);
  t.equal(slow.queries.length, 1, 'one upstream query for five clients');
  t.same(answers.map((a) => rcodeOf(a)), [0, 0, 0, 0, 0], 'every client answered');
  t.same(answers.map((a) => a!.readUInt16BE(0)), [100, 101, 102, 103, 104], 'each with its own ID');
  t.same(answers.map((a, i) => a!.subarray(12, 12 + 19).toString('latin1').includes(i % 2 ? 'BURST' : 'burst')), [true, true, true, true, true], 'and its own question case');
});

t.test('no forwarding configured: REFUSED', async (t) => {
  const m = await startNode({ upstreams: [] });
  t.teardown(() => m.close());
  t.equal(status(await dig(m.port, ['example.org', 'A'])), 'REFUSED');
});
