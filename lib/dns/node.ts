// One DNS serving unit: index (from a store) + plugin chain + UDP/TCP server. The daemon runs
// one per worker process; tests run several in one process. No argv, env or exit here.
import { parseHostPort, silentLogger, systemClock, type Clock, type HostPort, type Logger, type Registry } from '../common/index.js';
import type { DnsStore } from './store.js';
import { makeZones, ZoneIndex } from './zoneindex.js';
import { Picker } from './picker.js';
import { RateLimiter } from './ratelimit.js';
import { buildChain, type Handler } from './chain.js';
import { logPlugin } from './plugins/log.js';
import { metricsPlugin } from './plugins/metrics.js';
import { cachePlugin, type CachePlugin } from './plugins/cache.js';
import { pickPlugin } from './plugins/pick.js';
import { zonePlugin } from './plugins/zone.js';
import { Forwarder, forwardPlugin } from './plugins/forward.js';
import { DnsServer } from './server.js';
import type { ServeConfig } from './config.js';

/** The subset of ServeConfig a node uses; upstreams are resolved (resolv.conf read) by the caller. */
export type DnsNodeConfig = Pick<ServeConfig,
  | 'listen' | 'zones' | 'reverseZones' | 'nameservers' | 'defaultTtl' | 'negativeTtl' | 'pickMode' | 'allDown' | 'stickyMax'
  | 'stickyIdle' | 'cacheMax' | 'ednsUdpSize' | 'forwardTimeout' | 'forwardCacheMax' | 'forwardMaxTtl' | 'serveStale'
  | 'forwardInflightMax' | 'upstreamDown' | 'rateLimit' | 'rateLimitBurst' | 'rateLimitSlip' | 'rateLimitClients' | 'tcpIdle'
  | 'tcpConnectionsMax' | 'tcpInflightMax'> & Partial<Pick<ServeConfig, 'udpIo'>> & { upstreams: HostPort[] };

export interface DnsNodeOptions {
  config: DnsNodeConfig;
  store: DnsStore;
  registry?: Registry;
  logger?: Logger;
  /** Seeded randomness for tests (shuffles, random-one picks). */
  random?: () => number;
  /** Time seam for everything that reads time (sticky expiry, rate limits, forward cache). */
  clock?: Clock;
}

export class DnsNode {
  readonly index: ZoneIndex;
  readonly server: DnsServer;
  private picker: Picker;
  private rateLimiter: RateLimiter;
  private forwarder: Forwarder;
  private cache: CachePlugin;
  private cfg: DnsNodeConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly metrics: ReturnType<typeof metricsPlugin> | null;
  private readonly sources = {
    cache: () => this.cache.counts,
    picks: () => this.picker.counts,
    forwardCacheHits: () => this.forwarder.counts.cacheHits,
    rateLimited: () => this.rateLimiter.limited,
    dropped: () => this.server.counts.dropped,
  };

  constructor(private readonly opts: DnsNodeOptions) {
    this.cfg = opts.config;
    this.log = opts.logger ?? silentLogger;
    this.clock = opts.clock ?? systemClock;
    this.index = new ZoneIndex({ zones: this.zoneSpecs(opts.config), logger: this.log });
    this.metrics = opts.registry ? metricsPlugin(opts.registry, this.sources, this.clock) : null;
    const parts = this.build(opts.config);
    this.picker = parts.picker;
    this.rateLimiter = parts.rateLimiter;
    this.forwarder = parts.forwarder;
    this.cache = parts.cache;
    const onLocal = this.metrics?.countResponse;
    this.server = new DnsServer({
      listen: opts.config.listen.map((l) => parseHostPort(l, 'listen')),
      handler: parts.handler,
      ednsUdp: opts.config.ednsUdpSize,
      tcpIdleMs: opts.config.tcpIdle,
      tcpConnectionsMax: opts.config.tcpConnectionsMax,
      tcpInflightMax: opts.config.tcpInflightMax,
      rateLimiter: this.rateLimiter,
      logger: this.log,
      udpIo: opts.config.udpIo === 'native' ? 'native' : 'node',
      clock: this.clock,
      ...(onLocal ? { onLocalAnswer: onLocal } : {}),
    });
  }

  private zoneSpecs(c: DnsNodeConfig) {
    return makeZones(c.zones, c.reverseZones, { negativeTtl: c.negativeTtl, defaultTtl: c.defaultTtl, nameservers: c.nameservers });
  }

  private build(c: DnsNodeConfig, keepPicker?: Picker): { handler: Handler; picker: Picker; rateLimiter: RateLimiter; forwarder: Forwarder; cache: CachePlugin } {
    const random = this.opts.random ?? Math.random;
    const picker = keepPicker ?? new Picker({ mode: c.pickMode as Picker['opts']['mode'], allDown: c.allDown as Picker['opts']['allDown'], stickyMax: c.stickyMax, stickyIdleMs: c.stickyIdle, random, clock: this.clock });
    const rateLimiter = new RateLimiter({ perSecond: c.rateLimit, burst: c.rateLimitBurst, slip: c.rateLimitSlip, clientsMax: c.rateLimitClients, clock: this.clock });
    const forwarder = new Forwarder({
      upstreams: c.upstreams, timeoutMs: c.forwardTimeout, cacheMax: c.forwardCacheMax, maxTtlS: c.forwardMaxTtl,
      staleMaxMs: c.serveStale, inflightMax: c.forwardInflightMax, downMs: c.upstreamDown, logger: this.log, clock: this.clock,
    });
    const pick = pickPlugin(this.index, picker);
    const cache = cachePlugin({ index: this.index, maxEntries: c.cacheMax, variant: pick.prepare, random });
    const handler = buildChain({
      log: logPlugin(this.log),
      ...(this.metrics ? { metrics: this.metrics.plugin } : {}),
      cache: cache.plugin,
      pick: pick.plugin,
      zone: zonePlugin({ index: this.index, allDown: c.allDown as Picker['opts']['allDown'], random }),
      forward: forwardPlugin(forwarder, this.log).plugin,
    });
    return { handler, picker, rateLimiter, forwarder, cache };
  }

  async start(): Promise<void> {
    await this.index.attach(this.opts.store);
    await this.server.start();
  }

  get ready(): boolean {
    return this.index.ready;
  }

  /** Named checks for /health: the index has loaded, and some upstream answers (if any are set). */
  healthChecks(): Record<string, { status: 'ok' | 'degraded' | 'down'; detail?: string }> {
    const ups = this.forwarder.upstreamHealth();
    const upCount = ups.filter((u) => u.up).length;
    return {
      index: { status: this.index.ready ? 'ok' : 'down', detail: `revision ${this.index.revision}` },
      upstreams: ups.length === 0 ? { status: 'ok', detail: 'forwarding off' } : { status: upCount > 0 ? 'ok' : 'degraded', detail: `${upCount}/${ups.length} up` },
    };
  }

  get config(): DnsNodeConfig {
    return this.cfg;
  }

  /**
   * Applies a new config without dropping sockets. Listen addresses cannot change in place
   * (the caller restarts for that); everything else does. Sticky entries survive unless the
   * pick settings changed.
   */
  reload(c: DnsNodeConfig): void {
    const keepPicker = c.pickMode === this.cfg.pickMode && c.allDown === this.cfg.allDown && c.stickyMax === this.cfg.stickyMax && c.stickyIdle === this.cfg.stickyIdle;
    this.index.setZones(this.zoneSpecs(c));
    const oldForwarder = this.forwarder;
    const oldCache = this.cache;
    const parts = this.build(c, keepPicker ? this.picker : undefined);
    this.cfg = c;
    this.picker = parts.picker;
    this.rateLimiter = parts.rateLimiter;
    this.forwarder = parts.forwarder;
    this.cache = parts.cache;
    this.server.setHandler(parts.handler);
    this.server.setRateLimiter(parts.rateLimiter);
    oldCache.dispose();
    oldForwarder.close();
  }

  async close(): Promise<void> {
    await this.server.close();
    this.index.detach();
    this.forwarder.close();
  }
}
