#!/usr/bin/env node
// containerstack: runs the embedded local stack on one machine (`containerstack up`, what
// `npm start` runs): the node's RPC endpoint and admin endpoint, and ContainerFS — a master,
// three metanodes and three datanodes as child processes (each stops if this process dies), a
// default volume, and its FUSE mount. Ports are chosen once and kept under the data directory,
// so a restart finds its data again.
import { Command } from 'commander';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { LocalCluster, type LocalClusterOptions } from './fs/mount.js';
import { RpcServer, echoService } from '../lib/rpc/index.js';
import { describeConfig, parseHostPort, LOG_LEVELS, type LogLevel } from '../lib/common/index.js';
import { loadDaemonConfig, runDaemon } from './lib/daemon.js';
import { register as registerTable } from './table.js';

const upSpec = {
  dataDir: { type: 'string', default: './data', description: 'where the stack keeps its state', env: 'CONTAINERSTACK_DATA_DIR' },
  rpcListen: { type: 'hostport', default: '127.0.0.1:7000', description: 'RPC endpoint of this node', env: 'CONTAINERSTACK_RPC_LISTEN' },
  adminListen: { type: 'hostport', default: '127.0.0.1:7070', description: 'HTTP endpoint for /health, /ready and /metrics', env: 'CONTAINERSTACK_ADMIN_LISTEN' },
  token: { type: 'string', description: 'shared cluster token required of RPC peers', env: 'CONTAINERSTACK_TOKEN' },
  logLevel: { type: 'string', default: 'info', enum: LOG_LEVELS, description: 'log level', env: 'CONTAINERSTACK_LOG_LEVEL' },
  fs: { type: 'boolean', default: true, description: 'run ContainerFS (master, 3 metanodes, 3 datanodes) and mount its default volume', env: 'CONTAINERSTACK_FS' },
  volume: { type: 'string', default: 'default', description: 'the ContainerFS volume created and mounted', env: 'CONTAINERSTACK_VOLUME' },
  mount: { type: 'string', description: 'where the volume is mounted (default: mnt beside the data directory, ./mnt with defaults); "none": no mount', env: 'CONTAINERSTACK_MOUNT' },
  fuseEngine: { type: 'string', default: 'auto', enum: ['auto', 'kernel', 'libfuse'], description: 'FUSE engine of the mount: kernel (/dev/fuse spoken directly; root, or fusermount with the native addon), libfuse (fuse-native), auto (kernel when it can mount)', env: 'CONTAINERSTACK_FUSE_ENGINE' },
} as const;

/** Free loopback port, or `preferred` when it is free. */
async function port(preferred = 0): Promise<number> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => (preferred === 0 ? res(0) : port(0).then(res)));
    s.listen(preferred, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

type Ports = Pick<LocalClusterOptions, 'master' | 'metas' | 'datas'> & { mountAdmin: string };

/** The ContainerFS addresses: chosen at the first start (next to the RPC port when it is fixed), then kept. */
async function fsPorts(dir: string, rpcPort: number): Promise<Ports> {
  const file = join(dir, 'ports.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Ports;
  const pick = async (offset: number): Promise<string> => `127.0.0.1:${await port(rpcPort === 0 ? 0 : rpcPort + offset)}`;
  const a = async (o: number): Promise<{ address: string; admin: string }> => ({ address: await pick(o), admin: await pick(o + 100) });
  const ports: Ports = { master: await a(1), metas: [await a(11), await a(12), await a(13)], datas: [await a(21), await a(22), await a(23)], mountAdmin: await pick(171) };
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, JSON.stringify(ports, null, 2));
  return ports;
}

const program = new Command('containerstack')
  .description('containerstack: the storage and naming layer of a container data center (ContainerFS, ContainerDNS)')
  .showHelpAfterError();

program
  .command('up')
  .description('start the embedded local stack in the foreground; Ctrl-C stops it cleanly')
  .option('-c, --config <file>', 'JSON config file')
  .option('--data-dir <dir>', upSpec.dataDir.description)
  .option('--rpc-listen <host:port>', upSpec.rpcListen.description)
  .option('--admin-listen <host:port>', upSpec.adminListen.description)
  .option('--token <token>', upSpec.token.description)
  .option('--log-level <level>', upSpec.logLevel.description)
  .option('--no-fs', 'do not run ContainerFS')
  .option('--volume <name>', upSpec.volume.description)
  .option('--mount <dir>', upSpec.mount.description)
  .option('--fuse-engine <engine>', upSpec.fuseEngine.description)
  .addHelpText('after', `\nConfig file fields (flags and env override the file):\n${describeConfig(upSpec)}\n`)
  .action(async (flags: Record<string, unknown>) => {
    // commander gives a negatable flag the value true when absent: only an explicit --no-fs
    // (false) is a flag; otherwise the config file or env decide.
    if (flags.fs === true) delete flags.fs;
    const cfg = loadDaemonConfig('containerstack up', upSpec, flags);
    const dataDir = resolve(cfg.dataDir);
    let rpc: RpcServer | undefined;
    let cluster: LocalCluster | undefined;
    let mountDir: string | undefined;
    let mountNote = '';
    const { admin } = await runDaemon({
      name: 'containerstack',
      logLevel: cfg.logLevel as LogLevel,
      adminListen: cfg.adminListen,
      // Stopping flushes and unmounts the volume, then stops seven daemons.
      shutdownTimeoutMs: 40_000,
      start: async ({ log, registry }) => {
        mkdirSync(dataDir, { recursive: true });
        rpc = new RpcServer({ name: 'containerstack', logger: log, registry, ...(cfg.token ? { token: cfg.token } : {}) });
        // Echo answers peer liveness checks (and `containerstack` tooling) on the node endpoint.
        rpc.unary(echoService.echo, (req) => ({ payload: req.payload, text: req.text, seq: req.seq }));
        const { host, port } = parseHostPort(cfg.rpcListen, 'rpcListen');
        await rpc.listen(port, host);
        if (cfg.fs) {
          const fsDir = join(dataDir, 'containerfs');
          const ports = await fsPorts(fsDir, port);
          cluster = new LocalCluster({ dataDir: fsDir, master: ports.master, metas: ports.metas, datas: ports.datas, logLevel: cfg.logLevel === 'info' ? 'warn' : cfg.logLevel, ...(cfg.token ? { token: cfg.token } : {}) });
          const c = cluster;
          try {
            await c.start();
            await c.ensureVolume(cfg.volume, 3);
            const m = cfg.mount ?? (cfg.dataDir === upSpec.dataDir.default ? './mnt' : join(dirname(dataDir), 'mnt'));
            if (m !== 'none') {
              try {
                await c.mount(cfg.volume, resolve(m), ports.mountAdmin, 60_000, ['--fuse-engine', cfg.fuseEngine]);
                mountDir = resolve(m);
              } catch (err) {
                // The stack is useful without the mount (the Volume API, other clients): say why.
                mountNote = (err as Error).message.split('\n')[0] ?? '';
                log.error({ err: mountNote }, 'the volume could not be mounted; ContainerFS runs without it');
              }
            }
          } catch (err) {
            await c.stop();
            throw err;
          }
        }
        log.info({ rpc: cfg.rpcListen, dataDir }, 'started');
        return async () => {
          await cluster?.stop();
          await rpc?.close(2000);
        };
      },
      health: () => ({ status: 'ok', checks: { rpc: { status: rpc?.address ? 'ok' : 'down' } } }),
    });
    const rows = [
      ['component', 'where'],
      ['rpc endpoint', `${rpc?.address?.address}:${rpc?.address?.port}`],
      ['health', admin.url('/health')],
      ['metrics', admin.url('/metrics')],
      ['data', dataDir],
    ];
    if (cluster) {
      for (const n of cluster.nodes) {
        if (n.kind === 'mount') continue;
        rows.push([`containerfs ${n.name}`, `${n.address}  (admin http://${n.admin}, pid ${n.child?.pid})`]);
      }
      rows.push([`volume ${cfg.volume}`, mountDir ? `mounted at ${mountDir}` : `not mounted${mountNote ? `: ${mountNote}` : ''}`]);
    }
    const w = Math.max(...rows.map((r) => (r[0] as string).length));
    console.log(rows.map(([a, b]) => `${(a as string).padEnd(w)}  ${b}`).join('\n'));
    console.log('containerstack is up; Ctrl-C to stop.');
  });

registerTable(program);

await program.parseAsync(process.argv);
