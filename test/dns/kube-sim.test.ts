// Seeded fault simulation of the Kubernetes watcher: random service/endpoint churn interleaved
// with dropped streams, compaction, injected 410s (event and HTTP), stalls and bookmarks; then
// faults stop and the store must converge to exactly the records the final cluster state
// implies. Replay a failure with KUBE_SIM_SEED=<seed printed in the test name>.
import t from 'tap';
import { Prng, randomSeed } from '../../lib/common/index.js';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { startKubeWatcher } from '../../lib/dns/kube/watcher.js';
import { endpointsFromSlices, serviceRecords } from '../../lib/dns/kube/records.js';
import type { KubeObject } from '../../lib/dns/kube/client.js';
import { FakeKubeApi, endpointSlice, endpoints, service } from './kube-fake.js';

// Real processes (node, etcd) start slowly on a loaded machine; the runner's own limit still applies.
t.setTimeout(300_000);

const seeds = process.env.KUBE_SIM_SEED ? [Number(process.env.KUBE_SIM_SEED)] : [randomSeed(), randomSeed(), randomSeed()];

for (const seed of seeds) {
  t.test(`kube sim seed=${seed}`, async (t) => {
    const rng = new Prng(seed);
    const api = new FakeKubeApi();
    await api.start();
    const store = new MemoryDnsStore();
    const slices = rng.chance(0.5);
    t.comment(`endpoints from ${slices ? 'EndpointSlices' : 'Endpoints'}`);
    const w = startKubeWatcher({
      endpointsApi: slices ? 'endpointslices' : 'endpoints',
      client: { server: api.url, token: api.token, requestTimeoutMs: 2000 },
      store, zone: 'cluster.local', debounceMs: rng.int(20), backoffBaseMs: 5, backoffMaxMs: 50,
      stallTimeoutMs: 150, watchTimeoutSeconds: 1 + rng.int(3), resyncIntervalMs: 200 + rng.int(500), pageSize: 1 + rng.int(5),
    });
    t.teardown(async () => {
      await w.stop();
      await api.close();
    });
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const nss = ['default', 'prod'];
    const ip = (): string => `10.${rng.int(4)}.${rng.int(4)}.${1 + rng.int(6)}`;
    // Safety phase: churn and faults.
    for (let step = 0; step < 120; step++) {
      const ns = nss[rng.int(nss.length)]!;
      const name = names[rng.int(names.length)]!;
      const r = rng.int(100);
      if (r < 30) {
        const headless = rng.chance(0.4);
        api.upsert('services', service(ns, name, { clusterIP: headless ? 'None' : ip(), ports: [{ name: 'http', port: 80 + rng.int(3) }] }));
      } else if (r < 45) {
        api.remove('services', ns, name);
      } else if (r < 65) {
        const addrs = Array.from({ length: rng.int(4) }, (_, i) => ({ ip: ip(), ...(rng.chance(0.5) ? { hostname: `h${i}` } : {}) }));
        if (slices) {
          const eps = addrs.map((a) => ({ addresses: [a.ip], ...(a.hostname ? { hostname: a.hostname } : {}), conditions: { ready: rng.chance(0.8) } }));
          api.upsert('endpointslices', endpointSlice(ns, `${name}-${rng.int(2)}`, name, eps, [{ name: 'http', port: 8080 }]));
        } else {
          api.upsert('endpoints', endpoints(ns, name, [{ addresses: addrs, ports: [{ name: 'http', port: 8080 }] }]));
        }
      } else if (r < 70) {
        if (slices) api.remove('endpointslices', ns, `${name}-${rng.int(2)}`);
        else api.remove('endpoints', ns, name);
      } else if (r < 77) {
        api.dropWatches();
      } else if (r < 81) {
        api.compact();
      } else if (r < 84) {
        api.injectGoneEvent(1);
      } else if (r < 87) {
        api.injectGoneHttp(1);
      } else if (r < 90) {
        api.stallWatches();
      } else {
        api.bookmark();
      }
      if (rng.chance(0.3)) await new Promise((res) => setTimeout(res, rng.int(30)));
    }
    // Liveness phase: no more faults; the store must converge exactly.
    const eps = new Map<string, KubeObject>();
    if (slices) {
      const groups = new Map<string, KubeObject[]>();
      for (const sl of api.current('endpointslices')) {
        const k = `${sl.metadata.namespace}/${(sl.metadata as { labels?: Record<string, string> }).labels?.['kubernetes.io/service-name']}`;
        groups.set(k, [...(groups.get(k) ?? []), sl]);
      }
      for (const [k, g] of groups) eps.set(k, endpointsFromSlices(g));
    } else {
      for (const e of api.current('endpoints')) eps.set(`${e.metadata.namespace}/${e.metadata.name}`, e);
    }
    const want = api.current('services')
      .flatMap((s) => serviceRecords(s, eps.get(`${s.metadata.namespace}/${s.metadata.name}`), { zone: 'cluster.local' }))
      .map((r) => `${r.name} ${r.id} ${r.type} ${r.value} ${r.port ?? ''}`)
      .sort();
    const have = async (): Promise<string[]> =>
      (await store.snapshot()).records.filter((r) => r.owner === 'kubewatch').map((r) => `${r.name} ${r.id} ${r.type} ${r.value} ${r.port ?? ''}`).sort();
    const end = Date.now() + 20_000;
    let last: string[] = [];
    while (Date.now() < end) {
      last = await have();
      if (JSON.stringify(last) === JSON.stringify(want)) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    t.same(last, want, `converged to the cluster state (seed ${seed}; replay with KUBE_SIM_SEED=${seed})`);
    const s = w.stats();
    t.comment(`seed ${seed}: ${want.length} records; services lists=${s.services.lists} gone=${s.services.gone} stalls=${s.services.stalls} reconnects=${s.services.reconnects}`);
  });
}
