// The Kubernetes watcher: informers on Services and Endpoints, the records they imply
// (records.ts), and a diff against what the store holds for us, applied as puts and deletes.
// Changes are debounced and applied by one sync at a time; a periodic full reconcile re-reads
// the store, so records left by an earlier run, edited by hand or lost to a failed write are
// corrected, and records of deleted services never linger.
import {
  Counter, Gauge, errorMessage, jitteredBackoffMs, silentLogger, type Logger, type Registry,
} from '../../common/index.js';
import type { DnsRecord, DnsStore } from '../store.js';
import { normalizeDomain } from '../api/validate.js';
import { KubeClient, type KubeClientOptions, type KubeObject } from './client.js';
import { Informer, objectKey, type InformerStats } from './informer.js';
import { endpointsFromSlices, serviceRecords, sliceServiceKey } from './records.js';

export interface KubeWatcherOptions {
  /** An existing client, or the options to make one. */
  client: KubeClient | KubeClientOptions;
  store: DnsStore;
  /** Cluster zone, e.g. `cluster.local`; records are `<svc>.<ns>.svc.<zone>`. */
  zone: string;
  ttl?: number;
  /** Watch one namespace only (default: all). */
  namespace?: string;
  /**
   * Where endpoints of headless services come from: core v1 `endpoints` (default; deprecated
   * since Kubernetes 1.33 but served) or `endpointslices` (discovery.k8s.io/v1).
   */
  endpointsApi?: 'endpoints' | 'endpointslices';
  /** Full reconcile against the store this often. */
  resyncIntervalMs?: number;
  /** Coalesce bursts of events into one sync. */
  debounceMs?: number;
  watchTimeoutSeconds?: number;
  stallTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Most records this watcher writes; beyond it a sync is refused and logged. */
  maxRecords?: number;
  maxObjects?: number;
  /** Objects per list page (limit/continue). */
  pageSize?: number;
  logger?: Logger;
  registry?: Registry;
}

export interface KubeWatcher {
  /** Both resources listed and the first sync applied. */
  ready(): boolean;
  /** Runs a sync now (after pending ones); resolves when applied. */
  syncNow(): Promise<void>;
  /** Re-reads the store, then syncs. */
  reconcileNow(): Promise<void>;
  stats(): { services: InformerStats; endpoints: InformerStats; records: number; syncs: number; puts: number; deletes: number };
  stop(): Promise<void>;
}

const recKey = (r: { name: string; id: string }): string => `${r.name}\0${r.id}`;

function sameRecord(a: DnsRecord, b: DnsRecord): boolean {
  const norm = (r: DnsRecord): string =>
    JSON.stringify([r.name, r.id, r.type, r.value, r.ttl ?? null, r.priority ?? null, r.weight ?? null, r.port ?? null, r.probePorts ?? null, r.owner ?? null]);
  return norm(a) === norm(b);
}

export function startKubeWatcher(opts: KubeWatcherOptions): KubeWatcher {
  const log = opts.logger ?? silentLogger;
  const client = opts.client instanceof KubeClient ? opts.client : new KubeClient(opts.client);
  const zone = normalizeDomain(opts.zone);
  const ours = (name: string): boolean => name.endsWith(`.svc.${zone}`);
  const maxRecords = opts.maxRecords ?? 500_000;
  const debounceMs = opts.debounceMs ?? 50;
  const reg = opts.registry;
  const puts = reg ? new Counter({ name: 'containerdns_kubewatch_puts_total', help: 'Records written', registers: [reg] }) : undefined;
  const dels = reg ? new Counter({ name: 'containerdns_kubewatch_deletes_total', help: 'Records deleted', registers: [reg] }) : undefined;
  const syncErrors = reg ? new Counter({ name: 'containerdns_kubewatch_sync_errors_total', help: 'Failed store writes during a sync', registers: [reg] }) : undefined;
  const recordsGauge = reg ? new Gauge({ name: 'containerdns_kubewatch_records', help: 'Records owned by this watcher', registers: [reg] }) : undefined;

  /** What we believe the store holds of ours. invariant: every entry has owner kubewatch and ours(name). */
  let written = new Map<string, DnsRecord>();
  let storeLoaded = false;
  let firstSyncDone = false;
  let stopped = false;
  let syncs = 0;
  let putCount = 0;
  let delCount = 0;
  let failures = 0;
  let chain: Promise<void> = Promise.resolve();
  let debounce: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  let resync: NodeJS.Timeout | undefined;

  const ns = opts.namespace;
  const path = (res: string, group = '/api/v1'): string => (ns ? `${group}/namespaces/${encodeURIComponent(ns)}/${res}` : `${group}/${res}`);
  const useSlices = opts.endpointsApi === 'endpointslices';
  const common = {
    client,
    logger: log,
    onChange: () => schedule(),
    ...(opts.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: opts.watchTimeoutSeconds } : {}),
    ...(opts.stallTimeoutMs !== undefined ? { stallTimeoutMs: opts.stallTimeoutMs } : {}),
    ...(opts.backoffBaseMs !== undefined ? { backoffBaseMs: opts.backoffBaseMs } : {}),
    ...(opts.backoffMaxMs !== undefined ? { backoffMaxMs: opts.backoffMaxMs } : {}),
    ...(opts.maxObjects !== undefined ? { maxObjects: opts.maxObjects } : {}),
    ...(opts.pageSize !== undefined ? { pageSize: opts.pageSize } : {}),
  };
  const services = new Informer({ ...common, path: path('services') });
  const endpoints = new Informer({ ...common, path: useSlices ? path('endpointslices', '/apis/discovery.k8s.io/v1') : path('endpoints') });

  async function loadStore(): Promise<void> {
    const snap = await opts.store.snapshot();
    const next = new Map<string, DnsRecord>();
    for (const r of snap.records) if (r.owner === 'kubewatch' && ours(r.name)) next.set(recKey(r), r);
    written = next;
    storeLoaded = true;
  }

  /** Endpoints per service key, from core Endpoints or folded from EndpointSlices. */
  function endpointsByService(): Map<string, KubeObject> {
    if (!useSlices) return endpoints.cache;
    const groups = new Map<string, KubeObject[]>();
    for (const sl of endpoints.cache.values()) {
      const k = sliceServiceKey(sl);
      if (k === undefined) continue;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = []));
      g.push(sl);
    }
    return new Map([...groups].map(([k, g]) => [k, endpointsFromSlices(g)]));
  }

  function desired(): Map<string, DnsRecord> {
    const out = new Map<string, DnsRecord>();
    const eps = endpointsByService();
    for (const svc of services.cache.values()) {
      const recs = serviceRecords(svc, eps.get(objectKey(svc)), { zone, ...(opts.ttl !== undefined ? { ttl: opts.ttl } : {}) }, (why) =>
        log.debug({ why }, 'kube: skipped'),
      );
      for (const r of recs) out.set(recKey(r), r);
    }
    return out;
  }

  async function syncOnce(): Promise<void> {
    if (stopped || !services.synced || !endpoints.synced) return;
    if (!storeLoaded) await loadStore();
    const want = desired();
    if (want.size > maxRecords) {
      log.error({ records: want.size, maxRecords }, 'kube: too many records; not syncing');
      return;
    }
    let failed = 0;
    // Deletes first: a service whose IP moved to another service frees its name cleanly.
    for (const [k, r] of written) {
      if (stopped) return;
      if (want.has(k)) continue;
      try {
        await opts.store.delete(r.name, r.id);
        written.delete(k);
        delCount++;
        dels?.inc();
      } catch (err) {
        failed++;
        log.warn({ name: r.name, id: r.id, err: errorMessage(err) }, 'kube: delete failed');
      }
    }
    for (const [k, r] of want) {
      if (stopped) return;
      const cur = written.get(k);
      if (cur && sameRecord(cur, r)) continue;
      try {
        await opts.store.put(r);
        written.set(k, r);
        putCount++;
        puts?.inc();
      } catch (err) {
        failed++;
        log.warn({ name: r.name, id: r.id, err: errorMessage(err) }, 'kube: put failed');
      }
    }
    syncs++;
    recordsGauge?.set(written.size);
    if (failed > 0) {
      syncErrors?.inc(failed);
      // Writes failed (store down?): try again later, backing off.
      const ms = jitteredBackoffMs(failures++, 200, 30_000);
      if (!stopped && !retry) retry = setTimeout(() => {
        retry = undefined;
        schedule(0);
      }, ms);
    } else {
      failures = 0;
      if (!firstSyncDone) log.info({ records: written.size }, 'kube: first sync applied');
      firstSyncDone = true;
    }
  }

  /** Queues a sync behind the current one (syncs never run concurrently). */
  function enqueue(fn: () => Promise<void>): Promise<void> {
    const run = chain.then(fn).catch((err: unknown) => {
      log.warn({ err: errorMessage(err) }, 'kube: sync failed');
      if (!stopped && !retry) retry = setTimeout(() => {
        retry = undefined;
        schedule(0);
      }, jitteredBackoffMs(failures++, 200, 30_000));
    });
    chain = run;
    return run;
  }

  function schedule(delayMs = debounceMs): void {
    if (stopped || debounce) return;
    debounce = setTimeout(() => {
      debounce = undefined;
      void enqueue(syncOnce);
    }, delayMs);
  }

  const reconcileNow = (): Promise<void> =>
    enqueue(async () => {
      await loadStore();
      await syncOnce();
    });

  const resyncMs = opts.resyncIntervalMs ?? 300_000;
  const armResync = (): void => {
    resync = setTimeout(() => {
      void reconcileNow().finally(() => {
        if (!stopped) armResync();
      });
    }, resyncMs);
  };
  armResync();
  if (reg) {
    // Informer counters (lists, watches, 410s, reconnects, stalls, bookmarks, events), read at scrape time.
    new Gauge({
      name: 'containerdns_kubewatch_informer_ops',
      help: 'Informer operations since start, by resource and kind',
      labelNames: ['resource', 'kind'],
      registers: [reg],
      collect() {
        for (const [resource, inf] of [['services', services], ['endpoints', endpoints]] as const) {
          for (const [kind, v] of Object.entries(inf.stats)) this.set({ resource, kind }, v);
        }
      },
    });
  }
  services.start();
  endpoints.start();

  return {
    ready: () => services.synced && endpoints.synced && firstSyncDone,
    syncNow: () => enqueue(syncOnce),
    reconcileNow,
    stats: () => ({ services: { ...services.stats }, endpoints: { ...endpoints.stats }, records: written.size, syncs, puts: putCount, deletes: delCount }),
    stop: async () => {
      stopped = true;
      for (const t of [debounce, retry, resync]) if (t) clearTimeout(t);
      await Promise.all([services.stop(), endpoints.stop()]);
      await chain;
    },
  };
}
