// containerdns kubewatch: the daemon that watches Kubernetes Services and Endpoints and keeps
// their DNS records (owner `kubewatch`) in the etcd store the DNS servers read. Config file +
// env + flags, JSON logs on stderr, /metrics /health /ready on the admin address, clean exit on
// SIGINT/SIGTERM (a second signal forces it).
import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  createLogger, createRegistry, describeConfig, errorMessage, loadConfigFile, parseConfig, parseHostPort, startAdminServer,
  LOG_LEVELS, type ConfigSpec, type LogLevel,
} from '../../lib/common/index.js';
import { EtcdDnsStore } from '../../lib/dns/etcd/store.js';
import { TableDnsStore } from '../../lib/dns/tablestore.js';
import type { DnsStore } from '../../lib/dns/store.js';
import { TableClient } from '../../lib/table/index.js';
import { startKubeWatcher } from '../../lib/dns/kube/watcher.js';

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

const spec = {
  apiServer: { type: 'string', env: 'KUBEWATCH_API_SERVER', description: 'Kubernetes API URL (default: in-cluster https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)' },
  token: { type: 'string', env: 'KUBEWATCH_TOKEN', description: 'bearer token (prefer tokenFile)' },
  tokenFile: { type: 'string', env: 'KUBEWATCH_TOKEN_FILE', description: `file with the bearer token, re-read as it rotates (default in-cluster ${SA_DIR}/token)` },
  caFile: { type: 'string', env: 'KUBEWATCH_CA_FILE', description: `PEM CA to verify the API server (default in-cluster ${SA_DIR}/ca.crt)` },
  insecureSkipTlsVerify: { type: 'boolean', default: false, description: 'do not verify the API server certificate (debugging only)' },
  namespace: { type: 'string', env: 'KUBEWATCH_NAMESPACE', description: 'watch one namespace only (default: all)' },
  endpointsApi: { type: 'string', default: 'endpoints', enum: ['endpoints', 'endpointslices'], env: 'KUBEWATCH_ENDPOINTS_API', description: 'endpoints source for headless services: core v1 endpoints or discovery.k8s.io/v1 endpointslices' },
  zone: { type: 'string', default: 'cluster.local', env: 'KUBEWATCH_ZONE', description: 'cluster zone; records are <svc>.<ns>.svc.<zone>' },
  ttl: { type: 'int', default: 30, min: 0, max: 2_147_483_647, description: 'TTL of the records written' },
  resyncInterval: { type: 'duration', default: 300_000, min: 1000, description: 'full reconcile against the store this often' },
  watchTimeout: { type: 'duration', default: 300_000, min: 1000, description: 'server-side watch timeout (timeoutSeconds)' },
  etcdEndpoints: { type: 'string[]', env: 'KUBEWATCH_ETCD_ENDPOINTS', maxItems: 16, description: 'etcd client URLs, comma-separated (this or --table-endpoints)' },
  tableEndpoints: { type: 'string[]', default: [], env: 'KUBEWATCH_TABLE_ENDPOINTS', maxItems: 16, description: 'members of the table cluster that `containerdns serve --store table --table-endpoints` reads (instead of etcd)' },
  etcdPrefix: { type: 'string', default: '/containerdns', description: 'etcd record prefix (ContainerDNS layout)' },
  etcdHealthPrefix: { type: 'string', default: '/containerdns/monitor/status/', description: 'etcd health prefix' },
  etcdCaFile: { type: 'string', description: 'PEM CA for https etcd endpoints' },
  etcdCertFile: { type: 'string', description: 'client certificate for etcd' },
  etcdKeyFile: { type: 'string', description: 'client key for etcd' },
  etcdUsername: { type: 'string', env: 'KUBEWATCH_ETCD_USERNAME', description: 'etcd user (clusters with auth enabled)' },
  etcdPassword: { type: 'string', env: 'KUBEWATCH_ETCD_PASSWORD', description: 'etcd password (prefer the env var or config file)' },
  adminListen: { type: 'hostport', default: '127.0.0.1:9154', env: 'KUBEWATCH_ADMIN_LISTEN', description: 'address of /metrics, /health and /ready' },
  logLevel: { type: 'string', default: 'info', enum: LOG_LEVELS, env: 'KUBEWATCH_LOG_LEVEL', description: 'log level' },
} as const satisfies ConfigSpec;

function readOptional(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

async function run(flags: Record<string, unknown>): Promise<void> {
  let cfg: ReturnType<typeof parseConfig<typeof spec>>;
  try {
    const file = typeof flags.config === 'string' ? loadConfigFile(flags.config) : undefined;
    const { config: _ignored, ...rest } = flags;
    cfg = parseConfig(spec, { ...(file ? { file } : {}), env: process.env, flags: rest });
  } catch (err) {
    console.error(`containerdns kubewatch: ${errorMessage(err)}`);
    process.exitCode = 2;
    return;
  }
  const inCluster = process.env.KUBERNETES_SERVICE_HOST !== undefined && existsSync(`${SA_DIR}/token`);
  const host = process.env.KUBERNETES_SERVICE_HOST ?? '';
  const apiServer = cfg.apiServer ?? (inCluster ? `https://${host.includes(':') ? `[${host}]` : host}:${process.env.KUBERNETES_SERVICE_PORT ?? '443'}` : undefined);
  if (!apiServer) {
    console.error('containerdns kubewatch: no API server: pass --api-server (or run in a cluster)');
    process.exitCode = 2;
    return;
  }
  const tokenFile = cfg.tokenFile ?? (cfg.token === undefined && inCluster ? `${SA_DIR}/token` : undefined);
  const caFile = cfg.caFile ?? (inCluster && existsSync(`${SA_DIR}/ca.crt`) ? `${SA_DIR}/ca.crt` : undefined);

  const log = createLogger({ name: 'containerdns-kubewatch', level: cfg.logLevel as LogLevel });
  const registry = createRegistry({ labels: { daemon: 'containerdns-kubewatch' } });
  let store: DnsStore;
  let ca: Buffer | undefined;
  let table: TableClient | undefined;
  try {
    ca = readOptional(caFile, 'CA file');
    const etcdEndpoints = cfg.etcdEndpoints ?? [];
    if ((etcdEndpoints.length > 0) === (cfg.tableEndpoints.length > 0)) {
      throw new Error('give exactly one store: --etcd-endpoints or --table-endpoints');
    }
    if (cfg.tableEndpoints.length > 0) {
      table = new TableClient({ endpoints: cfg.tableEndpoints, deadlineMs: 5000 });
      store = new TableDnsStore(table);
    } else store = new EtcdDnsStore({
      endpoints: etcdEndpoints,
      prefix: cfg.etcdPrefix,
      healthPrefix: cfg.etcdHealthPrefix,
      logger: log,
      ...(cfg.etcdCaFile ? { ca: readOptional(cfg.etcdCaFile, 'etcd CA file')! } : {}),
      ...(cfg.etcdCertFile ? { cert: readOptional(cfg.etcdCertFile, 'etcd cert file')! } : {}),
      ...(cfg.etcdKeyFile ? { key: readOptional(cfg.etcdKeyFile, 'etcd key file')! } : {}),
      ...(cfg.etcdUsername ? { username: cfg.etcdUsername, password: cfg.etcdPassword ?? '' } : {}),
    });
  } catch (err) {
    console.error(`containerdns kubewatch: ${errorMessage(err)}`);
    process.exitCode = 2;
    return;
  }
  const watcher = startKubeWatcher({
    client: {
      server: apiServer,
      ...(cfg.token !== undefined ? { token: cfg.token } : {}),
      ...(tokenFile !== undefined ? { tokenFile } : {}),
      ...(ca ? { ca } : {}),
      insecureSkipVerify: cfg.insecureSkipTlsVerify,
    },
    store,
    zone: cfg.zone,
    ttl: cfg.ttl,
    endpointsApi: cfg.endpointsApi as 'endpoints' | 'endpointslices',
    ...(cfg.namespace ? { namespace: cfg.namespace } : {}),
    resyncIntervalMs: cfg.resyncInterval,
    watchTimeoutSeconds: Math.max(1, Math.round(cfg.watchTimeout / 1000)),
    logger: log,
    registry,
  });
  const { host: adminHost, port: adminPort } = parseHostPort(cfg.adminListen, 'adminListen');
  let admin: Awaited<ReturnType<typeof startAdminServer>>;
  try {
    admin = await startAdminServer({
      host: adminHost,
      port: adminPort,
      registry,
      logger: log,
      ready: () => watcher.ready(),
      health: () => {
        const s = watcher.stats();
        return {
          status: watcher.ready() ? 'ok' : 'degraded',
          checks: {
            services: { status: s.services.lists > 0 ? 'ok' : 'degraded', detail: `lists=${s.services.lists} watches=${s.services.watches} gone=${s.services.gone} stalls=${s.services.stalls}` },
            endpoints: { status: s.endpoints.lists > 0 ? 'ok' : 'degraded', detail: `lists=${s.endpoints.lists} watches=${s.endpoints.watches} gone=${s.endpoints.gone} stalls=${s.endpoints.stalls}` },
            records: { status: 'ok', detail: `records=${s.records} syncs=${s.syncs}` },
          },
        };
      },
    });
  } catch (err) {
    console.error(`containerdns kubewatch: cannot serve admin on ${cfg.adminListen}: ${errorMessage(err)}`);
    await watcher.stop();
    await store.close();
    await table?.close();
    process.exitCode = 1;
    return;
  }
  log.info({ apiServer, zone: cfg.zone, namespace: cfg.namespace ?? '(all)', admin: admin.url('/') }, 'kubewatch: started');
  // Tests and supervisors read the admin port from here when it was chosen by the OS (":0").
  console.error(`containerdns kubewatch: admin on ${admin.url('/')}`);

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) {
      log.warn({ signal }, 'kubewatch: second signal, exiting now');
      process.exit(130);
    }
    stopping = true;
    log.info({ signal }, 'kubewatch: shutting down');
    const force = setTimeout(() => {
      log.error('kubewatch: shutdown timed out');
      process.exit(1);
    }, 10_000);
    force.unref();
    (async () => {
      await watcher.stop();
      await store.close();
      await table?.close();
      await admin.close();
    })().then(
      () => {
        log.info('kubewatch: stopped');
        log.flush();
        process.exitCode = 0;
      },
      (err: unknown) => {
        log.error({ err: errorMessage(err) }, 'kubewatch: error during shutdown');
        process.exitCode = 1;
      },
    );
  };
  process.once('SIGINT', () => {
    shutdown('SIGINT');
    process.on('SIGINT', () => shutdown('SIGINT'));
  });
  process.once('SIGTERM', () => {
    shutdown('SIGTERM');
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  });
}

export function register(program: Command): void {
  program
    .command('kubewatch')
    .description('watch Kubernetes Services/Endpoints and keep their DNS records in etcd')
    .option('--config <file>', 'JSON config file (fields below)')
    .option('--api-server <url>', 'Kubernetes API URL')
    .option('--token <token>', 'bearer token')
    .option('--token-file <file>', 'file with the bearer token')
    .option('--ca-file <file>', 'PEM CA of the API server')
    .option('--insecure-skip-tls-verify', 'do not verify the API server certificate')
    .option('--namespace <ns>', 'watch one namespace only')
    .option('--zone <zone>', 'cluster zone')
    .option('--endpoints-api <api>', 'endpoints | endpointslices')
    .option('--ttl <seconds>', 'record TTL')
    .option('--resync-interval <duration>', 'full reconcile period, e.g. 5m')
    .option('--watch-timeout <duration>', 'server-side watch timeout, e.g. 5m')
    .option('--etcd-endpoints <urls>', 'etcd client URLs, comma-separated')
    .option('--table-endpoints <list>', 'table cluster members (host:port,...) instead of etcd')
    .option('--etcd-prefix <prefix>', 'etcd record prefix')
    .option('--etcd-health-prefix <prefix>', 'etcd health prefix')
    .option('--etcd-ca-file <file>', 'PEM CA for etcd')
    .option('--etcd-cert-file <file>', 'client certificate for etcd')
    .option('--etcd-key-file <file>', 'client key for etcd')
    .option('--etcd-username <user>', 'etcd user')
    .option('--etcd-password <password>', 'etcd password (visible in ps: prefer the env var)')
    .option('--admin-listen <host:port>', 'admin address (/metrics, /health, /ready)')
    .option('--log-level <level>', `one of ${LOG_LEVELS.join(', ')}`)
    .addHelpText('after', `\nConfig fields (defaults < config file < env < flags):\n${describeConfig(spec)}\n\nRecords: <svc>.<ns>.svc.<zone> (external IPs, else cluster IP), SRV _<port>._<proto>.<svc>.<ns>.svc.<zone> per named port, headless services as per-endpoint A records plus SRV. All are owned by "kubewatch" and read-only through the REST API.`)
    .action(async (opts: Record<string, unknown>) => {
      await run(opts);
    });
}
