// `containerfs master`: a master replica. The cluster map (volumes, metadata partitions,
// block-group placement, node health) is one table group replicated by Raft across the
// masters; this process wires config, storage, the RPC services and failure detection.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { describeConfig, errorMessage, LOG_LEVELS, parseHostPort, type LogLevel } from '../../lib/common/index.js';
import { openRaftNode, registerTableService, type TableGroup } from '../../lib/table/index.js';
import { MasterServer, masterDomains } from '../../lib/master/index.js';
import { loadDaemonConfig, runDaemon } from '../lib/daemon.js';
import { parsePeers } from '../lib/peers.js';

export const MASTER_GROUP = 1;

export const masterSpec = {
  id: { type: 'int', default: 1, min: 1, description: 'this master\'s id (unique among masters)', env: 'CONTAINERFS_MASTER_ID' },
  listen: { type: 'hostport', default: '127.0.0.1:7200', description: 'RPC address (peers, metanodes, datanodes, clients)', env: 'CONTAINERFS_MASTER_LISTEN' },
  peers: { type: 'string[]', default: [], description: 'every master as id=host:port (including this one); empty: a single master', env: 'CONTAINERFS_MASTER_PEERS' },
  dataDir: { type: 'string', default: './data/master', description: 'where the raft log and the map live', env: 'CONTAINERFS_MASTER_DATA_DIR' },
  adminListen: { type: 'hostport', default: '127.0.0.1:7270', description: 'HTTP /health, /ready, /metrics', env: 'CONTAINERFS_MASTER_ADMIN_LISTEN' },
  nodeTimeout: { type: 'duration', default: 10_000, min: 100, description: 'a node silent this long is marked down (its open block groups are sealed)', env: 'CONTAINERFS_MASTER_NODE_TIMEOUT' },
  replaceAfter: { type: 'duration', default: 300_000, description: 'a metanode down this long is replaced in its partitions (0: never)', env: 'CONTAINERFS_MASTER_REPLACE_AFTER' },
  checkInterval: { type: 'duration', default: 1000, min: 10, description: 'how often the leader checks node liveness', env: 'CONTAINERFS_MASTER_CHECK_INTERVAL' },
  groupMaxBytes: { type: 'bytes', default: 64 * 1024 * 1024 * 1024, description: 'a block group this long is sealed as full', env: 'CONTAINERFS_MASTER_GROUP_MAX' },
  tickMs: { type: 'int', default: 100, min: 1, max: 10_000, description: 'raft tick; election timeout is 10 ticks', env: 'CONTAINERFS_MASTER_TICK_MS' },
  token: { type: 'string', description: 'shared token required of peers and clients', env: 'CONTAINERFS_TOKEN' },
  logLevel: { type: 'string', default: 'info', enum: LOG_LEVELS, description: 'log level', env: 'CONTAINERFS_LOG_LEVEL' },
} as const;

const HELP = `
Keeps the ContainerFS cluster map: volumes (capacity quota, replica count), each volume's
metadata partitions (ino ranges placed on metanodes; a new one is added when the last fills
up), block groups (placed on distinct datanodes, sealed when full or when a replica's node goes
down), and every node's registration and heartbeats. A volume whose used bytes (summed from the
partitions' reports) reach its capacity is full: the metanodes hear it in their heartbeat
answers and refuse writes that grow files (ENOSPC). A deleted volume's partitions and block
groups are named, per node, in heartbeat answers until each node confirms it destroyed them. Run 1 or 3 (or 5) masters; the map is one Raft
group among them, and any master answers (non-leaders redirect or forward).

Config precedence: defaults < --config file (JSON, keys below) < env < flags.
${describeConfig(masterSpec)}

Example, three masters on one machine:
  containerfs master --id 1 --listen 127.0.0.1:7201 --peers 1=127.0.0.1:7201,2=127.0.0.1:7202,3=127.0.0.1:7203 --data-dir /srv/m1 --admin-listen 127.0.0.1:7271
  (and --id 2 / --id 3 likewise)
`;

export function register(program: Command): void {
  program
    .command('master')
    .description('run a master replica: the cluster map (volumes, partitions, block groups, node health)')
    .option('-c, --config <file>', 'JSON config file')
    .option('--id <n>', masterSpec.id.description)
    .option('--listen <host:port>', masterSpec.listen.description)
    .option('--peers <list>', masterSpec.peers.description)
    .option('--data-dir <dir>', masterSpec.dataDir.description)
    .option('--admin-listen <host:port>', masterSpec.adminListen.description)
    .option('--node-timeout <duration>', masterSpec.nodeTimeout.description)
    .option('--replace-after <duration>', masterSpec.replaceAfter.description)
    .option('--check-interval <duration>', masterSpec.checkInterval.description)
    .option('--group-max-bytes <bytes>', masterSpec.groupMaxBytes.description)
    .option('--tick-ms <ms>', masterSpec.tickMs.description)
    .option('--token <token>', masterSpec.token.description)
    .option('--log-level <level>', masterSpec.logLevel.description)
    .addHelpText('after', HELP)
    .action(async (flags: Record<string, unknown>) => {
      const cfg = loadDaemonConfig('containerfs master', masterSpec, flags);
      let peers: Map<number, string>;
      try {
        peers = parsePeers(cfg.peers, cfg.id, cfg.listen);
      } catch (err) {
        console.error(`containerfs master: ${errorMessage(err)}`);
        process.exit(2);
      }
      const dataDir = resolve(cfg.dataDir);
      let group: TableGroup | undefined;
      await runDaemon({
        name: 'master',
        logLevel: cfg.logLevel as LogLevel,
        adminListen: cfg.adminListen,
        start: async ({ log, registry }) => {
          const token = cfg.token ? { token: cfg.token } : {};
          const node = await openRaftNode({ dataDir, nodeId: cfg.id, peers, name: `master-${cfg.id}`, logger: log, registry, ...token, host: { tickMs: cfg.tickMs } });
          const { host, rpc, pool } = node;
          registerTableService(rpc, host);
          group = await host.addGroup(MASTER_GROUP, { voters: [...peers.keys()], domains: masterDomains() });
          const server = new MasterServer({ host, group, rpc, pool, logger: log, nodeTimeoutMs: cfg.nodeTimeout, checkIntervalMs: cfg.checkInterval, groupMaxBytes: cfg.groupMaxBytes, replaceAfterMs: cfg.replaceAfter });
          const { host: h, port } = parseHostPort(cfg.listen, 'listen');
          await rpc.listen(port, h);
          host.start();
          server.start();
          log.info({ id: cfg.id, listen: cfg.listen, peers: Object.fromEntries(peers), dataDir }, 'master started');
          return async () => {
            server.stop();
            await node.close();
          };
        },
        health: () => {
          if (!group) return { status: 'down' };
          const st = group.status();
          return { status: st.lead ? 'ok' : 'degraded', checks: { raft: { status: st.lead ? 'ok' : 'degraded', detail: `role=${st.role} term=${st.term} leader=${st.lead} applied=${group.sm.appliedIndex}` } } };
        },
        ready: () => Boolean(group?.status().lead),
      });
    });
}
