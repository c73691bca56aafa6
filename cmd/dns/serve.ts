// containerdns serve: the ContainerDNS server daemon. Wires config, store, workers, admin HTTP,
// REST API and prober; all DNS logic lives in lib/dns.
//
// Process model: with workers > 1 the primary owns the store (records file, etcd, API and prober
// writes) and the admin endpoint; each cluster worker builds its own index over IPC and serves
// the shared UDP/TCP sockets. Session persistence needs no coordination between workers:
// rendezvous hashing gives every worker the same answer for a client.
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Command } from 'commander';
import promClient from 'prom-client';
import {
  createLogger, createRegistry, describeConfig, errorMessage, loadConfigFile, parseConfig, parseHostPort, startAdminServer,
  type AdminServer, type HostPort, type Logger, type LogLevel, type Registry,
} from '../../lib/common/index.js';
import { serveConfigSpec, type ServeConfig } from '../../lib/dns/config.js';
import { DnsNode, type DnsNodeConfig } from '../../lib/dns/node.js';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { loadRecordsFile, syncRecords } from '../../lib/dns/records.js';
import { TableDnsStore } from '../../lib/dns/tablestore.js';
import { startEmbeddedTable, TableClient } from '../../lib/table/index.js';
import { parseResolvConf } from '../../lib/dns/plugins/forward.js';
import { IpcDnsStore, serveStoreOverIpc } from '../../lib/dns/ipcstore.js';
import type { DnsStore } from '../../lib/dns/store.js';
import { EtcdDnsStore } from '../../lib/dns/etcd/store.js';
import { startDnsApi, type DnsApi } from '../../lib/dns/api/server.js';
import { startProber, type Prober } from '../../lib/dns/prober.js';

type Flags = Record<string, unknown> & { config?: string };

const HELP = `
Serves the configured zones authoritatively from the record store (records file, or etcd),
picks among healthy IPs (all / one / sticky session persistence), and forwards other names to
upstream resolvers. Config precedence: defaults < --config file < env < flags.

Signals: SIGHUP reloads the config file and the records file; SIGINT/SIGTERM shut down cleanly.

Config fields (JSON file keys; the options above set the same fields from the command line):
${describeConfig(serveConfigSpec)}

Example:
  containerdns serve --listen 127.0.0.1:5353 --zones cluster.local --records records.txt --workers 2
`;

export function register(program: Command): void {
  program
    .command('serve')
    .description('run the ContainerDNS server (UDP/TCP DNS, admin /metrics /health /ready)')
    .option('--config <file>', 'JSON config file')
    .option('--listen <addrs>', 'DNS listen addresses, comma separated (host:port, [v6]:port)')
    .option('--zones <zones>', 'zones served, comma separated')
    .option('--reverse-zones <zones>', 'reverse zones with generated PTRs, comma separated')
    .option('--records <file>', 'records file for the in-memory store')
    .option('--pick-mode <mode>', 'all | one | sticky')
    .option('--all-down <policy>', 'all | servfail')
    .option('--upstreams <addrs>', 'upstream resolvers, comma separated')
    .option('--no-forward', 'do not forward names outside our zones (REFUSED)')
    .option('--udp-io <kind>', 'node (dgram) | native (batched recvmmsg/sendmmsg addon)')
    .option('--workers <n>', 'worker processes (0: one per CPU, 1: single process)')
    .option('--admin <hostport>', 'admin HTTP address')
    .option('--rate-limit <n>', 'UDP responses per second per client (0: off)')
    .option('--cache-max <n>', 'answer cache entries')
    .option('--default-ttl <s>', 'TTL of records without one')
    .option('--negative-ttl <s>', 'negative-caching TTL (SOA minimum)')
    .option('--store <kind>', 'memory | table | etcd')
    .option('--data-dir <dir>', 'data directory of the embedded table store')
    .option('--table-endpoints <list>', 'store table: members of a table cluster (host:port,...) instead of the embedded member')
    .option('--etcd-endpoints <urls>', 'etcd endpoints, comma separated')
    .option('--etcd-prefix <prefix>', 'etcd key prefix')
    .option('--api-listen <hostport>', 'serve the REST API on this address')
    .option('--api-token <token>', 'REST API bearer token')
    .option('--probe', 'run the health prober')
    .option('--log-level <level>', 'fatal | error | warn | info | debug | trace | silent')
    .addHelpText('after', HELP)
    .action(async (flags: Flags) => {
      try {
        if (cluster.isWorker) await runWorker();
        else await runPrimary(flags);
      } catch (e) {
        console.error(`containerdns serve: ${errorMessage(e)}`);
        process.exit(1);
      }
    });
}

function loadConfig(flags: Flags): ServeConfig {
  const { config: file, forward, ...rest } = flags;
  const f: Record<string, unknown> = { ...rest };
  // commander's --no-forward defaults `forward` to true; only an explicit --no-forward counts.
  if (forward === false) f.forward = false;
  return parseConfig(serveConfigSpec, { file: file ? loadConfigFile(file) : {}, env: process.env, flags: f });
}

function resolveUpstreams(cfg: ServeConfig, log: Logger): HostPort[] {
  if (!cfg.forward) return [];
  if (cfg.upstreams.length > 0) return cfg.upstreams.map((u) => parseHostPort(u.includes(':') && !u.startsWith('[') && u.split(':').length > 2 ? `[${u}]:53` : /:\d+$/.test(u) ? u : `${u}:53`, 'upstreams'));
  try {
    return parseResolvConf(readFileSync(cfg.resolvConf, 'utf8'));
  } catch (e) {
    log.warn({ err: errorMessage(e), file: cfg.resolvConf }, 'serve: no upstreams (cannot read resolv.conf); forwarding disabled');
    return [];
  }
}

function nodeConfig(cfg: ServeConfig, log: Logger): DnsNodeConfig {
  return { ...cfg, upstreams: resolveUpstreams(cfg, log) };
}

async function openStore(cfg: ServeConfig, log: Logger): Promise<{ store: DnsStore; reloadRecords: (c: ServeConfig) => Promise<void>; closeStore: () => Promise<void> }> {
  let store: DnsStore;
  let closeStore = async (): Promise<void> => store.close();
  if (cfg.store === 'etcd') {
    store = new EtcdDnsStore({ endpoints: cfg.etcdEndpoints, prefix: cfg.etcdPrefix, logger: log });
  } else if (cfg.store === 'table' && cfg.tableEndpoints.length > 0) {
    // A table cluster run by `containerstack table serve`: every DNS replica watches the same one.
    const client = new TableClient({ endpoints: cfg.tableEndpoints, deadlineMs: 5000 });
    store = new TableDnsStore(client);
    closeStore = async () => {
      await store.close();
      await client.close();
    };
    log.info({ endpoints: cfg.tableEndpoints }, 'serve: table cluster store');
  } else if (cfg.store === 'table') {
    const emb = await startEmbeddedTable({ dataDir: cfg.dataDir, logger: log });
    store = new TableDnsStore(emb.client);
    closeStore = async () => {
      await store.close();
      await emb.close();
    };
    log.info({ dataDir: cfg.dataDir, address: emb.address }, 'serve: embedded table store open');
  } else store = new MemoryDnsStore();
  // Takes the config of the moment: a reload may point at another records file. Records from
  // the file are owned by `config`; records written through the API or kubewatch are kept.
  const reloadRecords = async (c: ServeConfig): Promise<void> => {
    if (!c.records) return;
    const file = loadRecordsFile(c.records);
    const r = await syncRecords(store, file, 'config');
    log.info({ file: c.records, records: file.records.length, written: r.put, deleted: r.deleted }, 'serve: records loaded');
  };
  await reloadRecords(cfg);
  return { store, reloadRecords, closeStore };
}

interface ControlPlane {
  api: DnsApi | null;
  prober: Prober | null;
}

async function startControlPlane(cfg: ServeConfig, store: DnsStore, log: Logger, registry: Registry): Promise<ControlPlane> {
  let api: DnsApi | null = null;
  let prober: Prober | null = null;
  if (cfg.apiListen) {
    if (!cfg.apiToken) throw new Error('--api-listen needs --api-token (or CONTAINERDNS_API_TOKEN)');
    const hp = parseHostPort(cfg.apiListen, 'apiListen');
    api = await startDnsApi({ store, host: hp.host, port: hp.port, token: cfg.apiToken, logger: log, registry, domains: cfg.zones });
    log.info({ url: api.url('/') }, 'serve: REST API listening');
  }
  if (cfg.probe) {
    prober = startProber({ store, intervalMs: cfg.probeInterval, timeoutMs: cfg.probeTimeout, logger: log, registry });
    log.info('serve: health prober started');
  }
  return { api, prober };
}

/** Primary (or the only process): store, admin, control plane; DNS in-process or in workers. */
async function runPrimary(flags: Flags): Promise<void> {
  let cfg = loadConfig(flags);
  const log = createLogger({ name: 'containerdns', level: cfg.logLevel as LogLevel });
  const workers = cfg.workers === 0 ? availableParallelism() : cfg.workers;
  const { store, reloadRecords, closeStore } = await openStore(cfg, log);
  const registry = createRegistry();
  const cp = await startControlPlane(cfg, store, log, registry);
  let node: DnsNode | null = null;
  const ready = new Set<number>();
  const stopIpc = new Map<number, () => void>();
  let shuttingDown = false;
  let admin: AdminServer | null = null;
  // Assigned below; the worker-exit handler may need it before the rest of startup finishes.
  let shutdown: (code: number) => Promise<void> = async (code) => process.exit(code);
  // Signals are ours from here on: /ready can answer before start-up has finished, and the
  // default action of SIGHUP would kill the daemon. A SIGHUP before start-up ends is kept and
  // applied then; SIGINT/SIGTERM call whatever shutdown is at that moment.
  let onHup: () => void = () => void (hupPending = true);
  let hupPending = false;
  process.on('SIGHUP', () => onHup());
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  const everReady = new Set<number>();
  const adminHp = parseHostPort(cfg.admin, 'admin');

  if (workers <= 1) {
    node = new DnsNode({ config: nodeConfig(cfg, log), store, registry, logger: log });
    await node.start();
    admin = await startAdminServer({
      host: adminHp.host, port: adminHp.port, registry, logger: log,
      ready: () => node?.ready ?? false,
      health: () => {
        const checks = node?.healthChecks() ?? {};
        const states = Object.values(checks).map((c) => c.status);
        return { status: states.includes('down') ? 'down' : states.includes('degraded') ? 'degraded' : 'ok', checks };
      },
    });
  } else {
    const agg = new promClient.AggregatorRegistry();
    const restarts: number[] = [];
    const fork = (): void => {
      const w = cluster.fork({ CONTAINERDNS_WORKER_ID: String(Object.keys(cluster.workers ?? {}).length + 1) });
      stopIpc.set(w.id, serveStoreOverIpc(store, w));
      w.on('message', (m: { t?: string; error?: string }) => {
        // The worker asks once its listener exists (messages sent earlier would be lost).
        if (m?.t === 'dns-config-req') w.send({ t: 'dns-config', config: nodeConfig(cfg, log), logLevel: cfg.logLevel });
        if (m?.t === 'dns-worker-ready') {
          ready.add(w.id);
          everReady.add(w.id);
        }
        if (m?.t === 'dns-worker-failed') {
          log.error({ worker: w.id, error: m.error }, 'serve: worker failed to start');
          // Nothing has ever served: a bad listen address or config, not a crash to retry.
          if (everReady.size === 0) {
            console.error(`containerdns serve: ${m.error}`);
            void shutdown(1);
          }
        }
      });
    };
    cluster.on('exit', (w, code, signal) => {
      ready.delete(w.id);
      stopIpc.get(w.id)?.();
      stopIpc.delete(w.id);
      if (shuttingDown) return;
      const now = Date.now();
      restarts.push(now);
      while (restarts.length > 0 && restarts[0]! < now - 60_000) restarts.shift();
      // A worker that keeps dying is a bug or a bad config: stop instead of spinning.
      if (restarts.length > 10) {
        log.fatal('serve: workers keep exiting; giving up');
        void shutdown(1);
        return;
      }
      log.warn({ worker: w.id, code, signal }, 'serve: worker exited; starting a new one');
      fork();
    });
    for (let i = 0; i < workers; i++) fork();
    admin = await startAdminServer({
      host: adminHp.host, port: adminHp.port, logger: log,
      registry: { metrics: () => mergedMetrics(agg, registry), contentType: registry.contentType } as unknown as Registry,
      ready: () => ready.size === workers,
      health: () => ({ status: ready.size > 0 ? 'ok' : 'down', checks: { workers: { status: ready.size === workers ? 'ok' : 'degraded', detail: `${ready.size}/${workers} ready` } } }),
    });
    // Wait (bounded) for the workers so "started" in the log means answering.
    for (let i = 0; i < 200 && ready.size < workers; i++) await new Promise((r) => setTimeout(r, 50));
  }
  if (shuttingDown) return;
  log.info({ listen: cfg.listen, zones: cfg.zones, workers, admin: admin.url('/'), pickMode: cfg.pickMode, udpIo: cfg.udpIo }, 'serve: started');

  const reload = async (): Promise<void> => {
    try {
      const next = loadConfig(flags);
      if (JSON.stringify(next.listen) !== JSON.stringify(cfg.listen)) log.warn('serve: listen addresses changed; restart to apply them');
      cfg = { ...next, listen: cfg.listen };
      log.level = cfg.logLevel;
      await reloadRecords(cfg);
      const nc = nodeConfig(cfg, log);
      node?.reload(nc);
      for (const w of Object.values(cluster.workers ?? {})) w?.send({ t: 'dns-reload', config: nc, logLevel: cfg.logLevel });
      log.info('serve: configuration reloaded');
    } catch (e) {
      log.error({ err: errorMessage(e) }, 'serve: reload failed; keeping the running configuration');
    }
  };

  shutdown = async (code: number): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info('serve: shutting down');
    const exits: Promise<void>[] = [];
    for (const w of Object.values(cluster.workers ?? {})) {
      if (!w) continue;
      exits.push(new Promise((r) => w.once('exit', () => r())));
      try {
        w.send({ t: 'dns-shutdown' });
      } catch {
        // already gone
      }
    }
    const deadline = new Promise<void>((r) => setTimeout(r, 5000).unref());
    await Promise.race([Promise.all(exits), deadline]);
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGKILL');
    await node?.close();
    await cp.prober?.stop();
    await cp.api?.close();
    await admin?.close();
    await closeStore();
    await new Promise<void>((r) => {
      log.flush(() => r());
      setTimeout(r, 500).unref();
    });
    process.exit(code);
  };
  onHup = () => void reload();
  if (hupPending) onHup();
}

/** Cluster metrics plus the primary's own (control plane) metrics. */
async function mergedMetrics(agg: promClient.AggregatorRegistry<promClient.RegistryContentType>, own: Registry): Promise<string> {
  const [workers, mine] = await Promise.all([agg.clusterMetrics(), own.metrics()]);
  return `${workers}\n${mine}`;
}

/** A cluster worker: waits for its config from the primary, then serves until told to stop. */
async function runWorker(): Promise<void> {
  const msg = await new Promise<{ config: DnsNodeConfig; logLevel: string }>((resolve) => {
    const on = (m: { t?: string; config?: DnsNodeConfig; logLevel?: string }): void => {
      if (m?.t === 'dns-config' && m.config) {
        process.off('message', on);
        resolve({ config: m.config, logLevel: m.logLevel ?? 'info' });
      }
    };
    process.on('message', on);
    process.send?.({ t: 'dns-config-req' });
  });
  const log = createLogger({ name: 'containerdns', level: msg.logLevel as LogLevel }).child({ worker: cluster.worker?.id });
  const registry = createRegistry({ defaultMetrics: false });
  new promClient.AggregatorRegistry();
  promClient.AggregatorRegistry.setRegistries([registry]);
  const store = new IpcDnsStore(process as unknown as ConstructorParameters<typeof IpcDnsStore>[0]);
  const node = new DnsNode({ config: msg.config, store, registry, logger: log });
  try {
    await node.start();
  } catch (e) {
    process.send?.({ t: 'dns-worker-failed', error: errorMessage(e) });
    throw e;
  }
  process.send?.({ t: 'dns-worker-ready' });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await node.close();
    await store.close();
    process.exit(0);
  };
  process.on('message', (m: { t?: string; config?: DnsNodeConfig; logLevel?: string }) => {
    if (m?.t === 'dns-reload' && m.config) {
      try {
        node.reload(m.config);
        if (m.logLevel) log.level = m.logLevel;
      } catch (e) {
        log.error({ err: errorMessage(e) }, 'serve: worker reload failed');
      }
    } else if (m?.t === 'dns-shutdown') void stop();
  });
  // The primary coordinates shutdown; a terminal's Ctrl-C reaches us too and is handled there.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => void stop());
  process.on('disconnect', () => void stop());
}
