// Health prober with real sockets on loopback: rise/fall thresholds, writes only on change,
// following the store's records, bounded concurrency, and the timer-driven mode.
import t from 'tap';
import { createServer, type Server } from 'node:net';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { startProber } from '../../lib/dns/prober.js';
import type { DnsStore, IpHealth } from '../../lib/dns/store.js';
import { createRegistry } from '../../lib/common/index.js';
import { freePorts } from './etcd-helpers.js';

// Real processes (node, etcd) start slowly on a loaded machine; the runner's own limit still applies.
t.setTimeout(300_000);

async function listen(host = '127.0.0.1'): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, host, r));
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : 0 };
}

/** Counts setHealth calls on top of a real store. */
function counting(store: DnsStore): { store: DnsStore; writes: IpHealth[] } {
  const writes: IpHealth[] = [];
  const wrapped = Object.create(store) as DnsStore;
  wrapped.setHealth = async (h: IpHealth) => {
    writes.push(h);
    return store.setHealth(h);
  };
  return { store: wrapped, writes };
}

async function statusOf(store: DnsStore, ip: string): Promise<string | undefined> {
  return (await store.snapshot()).health.find((h) => h.ip === ip)?.status;
}

t.test('prober: rise/fall with real sockets, writes only on change', async (t) => {
  const { server, port: openPort } = await listen();
  const [closedPort] = await freePorts(1);
  const mem = new MemoryDnsStore();
  const { store, writes } = counting(mem);
  await mem.put({ id: '1', name: 'up.cluster.local', type: 'A', value: '127.0.0.1', probePorts: [openPort] });
  await mem.put({ id: '2', name: 'down.cluster.local', type: 'A', value: '127.0.0.2', port: closedPort });
  await mem.put({ id: '3', name: 'noports.cluster.local', type: 'A', value: '127.0.0.3' });
  const registry = createRegistry({ defaultMetrics: false });
  const p = startProber({ store, manual: true, rise: 2, fall: 3, timeoutMs: 1000, reporter: 'test', registry });
  t.teardown(async () => {
    await p.stop();
    server.close();
  });

  await p.probeNow();
  t.equal(writes.length, 0, 'one success is below rise, one failure below fall');
  await p.probeNow();
  t.equal(await statusOf(mem, '127.0.0.1'), 'up', 'up after `rise` successes');
  t.equal(await statusOf(mem, '127.0.0.2'), undefined, 'not yet down');
  await p.probeNow();
  t.equal(await statusOf(mem, '127.0.0.2'), 'down', 'down after `fall` failures');
  t.equal(await statusOf(mem, '127.0.0.3'), undefined, 'records without ports are not probed');
  t.same(writes.map((w) => `${w.ip}=${w.status}`), ['127.0.0.1=up', '127.0.0.2=down']);
  t.equal(writes[0]!.reporter, 'test');
  await p.probeNow();
  await p.probeNow();
  t.equal(writes.length, 2, 'steady state writes nothing');

  // The service stops listening: down after `fall` failed rounds, not before.
  await new Promise<void>((r) => server.close(() => r()));
  await p.probeNow();
  await p.probeNow();
  t.equal(await statusOf(mem, '127.0.0.1'), 'up');
  await p.probeNow();
  t.equal(await statusOf(mem, '127.0.0.1'), 'down');
  t.equal(writes.length, 3);
  const metrics = await registry.metrics();
  t.match(metrics, /containerdns_probes_total\{result="ok"\} \d+/);
  t.match(metrics, /containerdns_probe_status_changes_total\{status="down"\} 2/);
});

t.test('prober: follows store changes and health written by another prober', async (t) => {
  const { server, port } = await listen();
  const mem = new MemoryDnsStore();
  const { store, writes } = counting(mem);
  const p = startProber({ store, manual: true, rise: 1, fall: 1 });
  t.teardown(async () => {
    await p.stop();
    server.close();
  });
  await p.probeNow();
  t.equal(writes.length, 0, 'nothing to probe yet');
  await mem.put({ id: 'a', name: 'web.cluster.local', type: 'A', value: '127.0.0.1', probePorts: [port] });
  await p.probeNow();
  t.same(writes.map((w) => w.status), ['up']);
  // Another replica's prober already wrote "down"; our next success must correct it once.
  await mem.setHealth({ ip: '127.0.0.1', status: 'down', changedAtMs: 1, reporter: 'other' });
  await p.probeNow();
  t.same(writes.map((w) => w.status), ['up', 'up']);
  await p.probeNow();
  t.equal(writes.length, 2);
  // Record removed: no more probes of it.
  await mem.delete('web.cluster.local', 'a');
  await new Promise<void>((r) => server.close(() => r()));
  await p.probeNow();
  t.equal(writes.length, 2, 'a deleted record is not probed (its closed port would write down)');
});

t.test('prober: concurrency is bounded', async (t) => {
  const mem = new MemoryDnsStore();
  for (let i = 1; i <= 40; i++) await mem.put({ id: String(i), name: `n${i}.cluster.local`, type: 'A', value: `127.0.1.${i}`, probePorts: [80] });
  let inFlight = 0;
  let maxInFlight = 0;
  let calls = 0;
  const p = startProber({
    store: mem, manual: true, rise: 1, fall: 1, concurrency: 4,
    probe: async () => {
      calls++;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 2));
      inFlight--;
      return true;
    },
  });
  t.teardown(() => p.stop());
  await p.probeNow();
  t.equal(calls, 40);
  t.equal(maxInFlight, 4, 'never more than `concurrency` probes at once, and it is used');
  t.equal((await mem.snapshot()).health.filter((h) => h.status === 'up').length, 40);
});

t.test('prober: timer mode runs rounds on its own and stops cleanly', async (t) => {
  const { server, port } = await listen();
  const mem = new MemoryDnsStore();
  await mem.put({ id: 'a', name: 'web.cluster.local', type: 'A', value: '127.0.0.1', probePorts: [port] });
  const p = startProber({ store: mem, intervalMs: 20, rise: 2, fall: 2 });
  t.teardown(() => server.close());
  const end = Date.now() + 10_000;
  while ((await statusOf(mem, '127.0.0.1')) !== 'up' && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  t.equal(await statusOf(mem, '127.0.0.1'), 'up');
  await p.stop();
  t.throws(() => startProber({ store: mem, rise: 0 }), { code: 'DNS_PROBER_CONFIG' });
});

t.test('prober: AAAA records are probed over IPv6; several ports must all answer', async (t) => {
  let v6: { server: Server; port: number } | undefined;
  try {
    v6 = await listen('::1');
  } catch {
    // No IPv6 loopback in this environment.
  }
  if (!v6) {
    t.pass('no IPv6 loopback here; skipped');
    return;
  }
  const other = await listen('::1');
  const [closed] = await freePorts(1);
  const mem = new MemoryDnsStore();
  await mem.put({ id: 'a', name: 'v6.cluster.local', type: 'AAAA', value: '::1', probePorts: [v6.port, other.port] });
  const p = startProber({ store: mem, manual: true, rise: 1, fall: 1 });
  t.teardown(async () => {
    await p.stop();
    v6?.server.close();
    other.server.close();
  });
  await p.probeNow();
  t.equal(await statusOf(mem, '::1'), 'up');
  await mem.put({ id: 'a', name: 'v6.cluster.local', type: 'AAAA', value: '::1', probePorts: [v6.port, closed!] });
  await p.probeNow();
  t.equal(await statusOf(mem, '::1'), 'down', 'one closed port of the IP takes it down');
});
