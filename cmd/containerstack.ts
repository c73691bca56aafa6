#!/usr/bin/env node
// containerstack: runs the embedded local stack on one machine (`containerstack up`, what
// `npm start` runs). Today it brings up the node's RPC endpoint and the admin endpoint; the
// ContainerFS master, metanode, datanodes and the FUSE mount join it as those issues land.
import { Command } from 'commander';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
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
} as const;

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
  .addHelpText('after', `\nConfig file fields (flags and env override the file):\n${describeConfig(upSpec)}\n`)
  .action(async (flags: Record<string, unknown>) => {
    const cfg = loadDaemonConfig('containerstack up', upSpec, flags);
    const dataDir = resolve(cfg.dataDir);
    let rpc: RpcServer | undefined;
    const { admin } = await runDaemon({
      name: 'containerstack',
      logLevel: cfg.logLevel as LogLevel,
      adminListen: cfg.adminListen,
      start: async ({ log, registry }) => {
        mkdirSync(dataDir, { recursive: true });
        rpc = new RpcServer({ name: 'containerstack', logger: log, registry, ...(cfg.token ? { token: cfg.token } : {}) });
        // Echo answers peer liveness checks (and `containerstack` tooling) on the node endpoint.
        rpc.unary(echoService.echo, (req) => ({ payload: req.payload, text: req.text, seq: req.seq }));
        const { host, port } = parseHostPort(cfg.rpcListen, 'rpcListen');
        await rpc.listen(port, host);
        log.info({ rpc: cfg.rpcListen, dataDir }, 'started');
        return async () => {
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
    const w = Math.max(...rows.map((r) => (r[0] as string).length));
    console.log(rows.map(([a, b]) => `${(a as string).padEnd(w)}  ${b}`).join('\n'));
    console.log('containerstack is up; Ctrl-C to stop.');
  });

registerTable(program);

await program.parseAsync(process.argv);
