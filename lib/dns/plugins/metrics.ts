// metrics: queries by type, responses by rcode, latency histogram. The hot path bumps plain
// typed-array counters; prom-client reads them only when /metrics is scraped (collect()), so a
// query costs a few array writes instead of several label lookups.
import type { Handler, Plugin } from '../chain.js';
import { isPromise } from '../chain.js';
import { Counter, Gauge, LATENCY_BUCKETS_S, systemClock, type Clock, type Registry } from '../../common/index.js';
import { RCODE_NAMES, TYPE_NAMES } from '../wire.js';
import type { CacheCounts } from './cache.js';
import type { PickCounts } from '../picker.js';

export interface DnsMetricsSources {
  cache?: () => CacheCounts;
  picks?: () => PickCounts;
  forwardCacheHits?: () => number;
  rateLimited?: () => number;
  dropped?: () => number;
}

export interface MetricsPlugin {
  plugin: Plugin;
  /** For callers outside the chain (FORMERR paths in the server). */
  countResponse(qtype: number, rcode: number): void;
}

export function metricsPlugin(registry: Registry, sources: DnsMetricsSources, clock: Clock = systemClock): MetricsPlugin {
  const byType = new Float64Array(65536);
  const byRcode = new Float64Array(4096);
  const latency = new FastHistogram('dns_request_duration_seconds', 'Time to answer a query (handler only, not socket I/O)', LATENCY_BUCKETS_S);
  registry.registerMetric(latency as unknown as Parameters<Registry['registerMetric']>[0]);
  new Counter({
    name: 'dns_queries_total', help: 'Queries by type', labelNames: ['type'], registers: [registry],
    collect() {
      this.reset();
      for (let t = 0; t < byType.length; t++) if (byType[t]! > 0) this.inc({ type: TYPE_NAMES[t] ?? `TYPE${t}` }, byType[t]!);
    },
  });
  new Counter({
    name: 'dns_responses_total', help: 'Responses by rcode', labelNames: ['rcode'], registers: [registry],
    collect() {
      this.reset();
      for (let r = 0; r < byRcode.length; r++) if (byRcode[r]! > 0) this.inc({ rcode: RCODE_NAMES[r] ?? `RCODE${r}` }, byRcode[r]!);
    },
  });
  new Counter({
    name: 'dns_cache_hits_total', help: 'Answers served from the wire cache', labelNames: ['cache'], registers: [registry],
    collect() {
      this.reset();
      const c = sources.cache?.();
      if (c) this.inc({ cache: 'answer' }, c.hits);
      const f = sources.forwardCacheHits?.();
      if (f !== undefined) this.inc({ cache: 'forward' }, f);
    },
  });
  new Counter({
    name: 'dns_cache_misses_total', help: 'Answer cache misses', registers: [registry],
    collect() {
      this.reset();
      const c = sources.cache?.();
      if (c) this.inc(c.misses);
    },
  });
  new Gauge({
    name: 'dns_cache_entries', help: 'Entries in the answer cache', registers: [registry],
    collect() {
      this.set(sources.cache?.().entries ?? 0);
    },
  });
  new Counter({
    name: 'dns_picks_total', help: 'Address picks by outcome', labelNames: ['outcome'], registers: [registry],
    collect() {
      this.reset();
      const p = sources.picks?.();
      if (!p) return;
      this.inc({ outcome: 'sticky_hit' }, p.stickyHit);
      this.inc({ outcome: 'hashed' }, p.hashed);
      this.inc({ outcome: 'random' }, p.random);
      this.inc({ outcome: 'all' }, p.all);
      this.inc({ outcome: 'all_down' }, p.allDown);
    },
  });
  new Counter({
    name: 'dns_rate_limited_total', help: 'Queries refused by response-rate limiting', registers: [registry],
    collect() {
      this.reset();
      this.inc(sources.rateLimited?.() ?? 0);
    },
  });
  new Counter({
    name: 'dns_dropped_total', help: 'Packets dropped without an answer (too short, responses)', registers: [registry],
    collect() {
      this.reset();
      this.inc(sources.dropped?.() ?? 0);
    },
  });

  const countResponse = (qtype: number, rcode: number): void => {
    byType[qtype & 0xffff]!++;
    byRcode[rcode & 0xfff]!++;
  };
  const rcodeOf = (r: Buffer | null): number => (r === null || r.length < 4 ? -1 : r[3]! & 0x0f);
  const plugin: Plugin = (next: Handler): Handler => (ctx) => {
    const qtype = ctx.q.qtype;
    const t0 = ctx.nowMs;
    const r = next(ctx);
    if (isPromise(r)) {
      return r.then((b) => {
        latency.observeMs(clock.monotonicMs() - t0);
        byType[qtype]!++;
        const rc = rcodeOf(b);
        if (rc >= 0) byRcode[rc]!++;
        return b;
      });
    }
    latency.observeMs(clock.monotonicMs() - t0);
    byType[qtype]!++;
    const rc = rcodeOf(r);
    if (rc >= 0) byRcode[rc]!++;
    return r;
  };
  return { plugin, countResponse };
}

/**
 * A Prometheus histogram counted in a typed array: prom-client's Histogram costs a label-hash
 * lookup and several property writes per observation, which showed up at ~10% of the hot path.
 * It presents prom-client's metric interface (name, get) so registries and the cluster
 * aggregator treat it like any histogram.
 */
export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly boundsMs: Float64Array;
  private readonly counts: Float64Array;
  private sumMs = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, private readonly boundsS: readonly number[]) {
    this.boundsMs = Float64Array.from(boundsS, (b) => b * 1000);
    this.counts = new Float64Array(boundsS.length + 1);
  }
  observeMs(ms: number): void {
    const b = this.boundsMs;
    let i = 0;
    while (i < b.length && ms > b[i]!) i++;
    this.counts[i]!++;
    this.sumMs += ms;
    this.count++;
  }
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    let acc = 0;
    this.boundsS.forEach((le, i) => {
      acc += this.counts[i]!;
      values.push({ labels: { le }, value: acc, metricName: `${this.name}_bucket` });
    });
    values.push({ labels: { le: '+Inf' }, value: this.count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: this.sumMs / 1000, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.count, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
  reset(): void {
    this.counts.fill(0);
    this.sumMs = 0;
    this.count = 0;
  }
}
