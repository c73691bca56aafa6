// Prometheus metrics. Each daemon owns one Registry (not prom-client's global one) so several
// components can run in one process, as `containerstack up` does, without name clashes.
import client from 'prom-client';

export type Registry = client.Registry;
export { Counter, Gauge, Histogram, Summary } from 'prom-client';

export function createRegistry(opts: { defaultMetrics?: boolean; labels?: Record<string, string> } = {}): Registry {
  const registry = new client.Registry();
  if (opts.labels) registry.setDefaultLabels(opts.labels);
  // The event-loop delay histogram samples at 1 s, not prom-client's 10 ms: at 10 ms its timer
  // woke every daemon 100 times a second (an idle datanode used 5 ms of CPU per second, 2 at
  // 1 s), and on a small machine running a whole cluster those wake-ups add up.
  if (opts.defaultMetrics ?? true) client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });
  return registry;
}

/** Latency buckets in seconds, from 50µs to 10s: wide enough for RPC, disk and DNS. */
export const LATENCY_BUCKETS_S = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
