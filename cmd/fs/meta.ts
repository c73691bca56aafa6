// `containerfs meta`: a metanode. One process hosts many metadata partitions (multi-raft: one
// RaftHost, one level database, one durable log, one RPC endpoint); the master says which. This
// file wires config, storage, the table and meta services and the MetaNode loop.
import type { Command } from 'commander';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describeConfig, errorMessage, LOG_LEVELS, parseHostPort, sleep, type LogLevel } from '../../lib/common/index.js';
import { RpcPool } from '../../lib/rpc/index.js';
import { openRaftNode, registerTableService, type RaftHost, type RaftNode } from '../../lib/table/index.js';
import { MasterClient } from '../../lib/master/index.js';
import { MetaNode, registerMetaService } from '../../lib/meta/index.js';
import { BlockGroupClient } from '../../lib/blockgroup/index.js';
import { freeExtents } from '../../lib/fs/index.js';
import { loadDaemonConfig, runDaemon } from '../lib/daemon.js';

export const metaSpec = {
  listen: { type: 'hostport', default: '127.0.0.1:7400', description: 'RPC address (raft peers and clients)', env: 'CONTAINERFS_META_LISTEN' },
  advertise: { type: 'string', description: 'address others use for this node (default: listen)', env: 'CONTAINERFS_META_ADVERTISE' },
  master: { type: 'string[]', default: ['127.0.0.1:7200'], description: 'master addresses, comma separated', env: 'CONTAINERFS_MASTER' },
  dataDir: { type: 'string', default: './data/meta', description: 'where the raft log and the partitions live', env: 'CONTAINERFS_META_DATA_DIR' },
  adminListen: { type: 'hostport', default: '127.0.0.1:7470', description: 'HTTP /health, /ready, /metrics', env: 'CONTAINERFS_META_ADMIN_LISTEN' },
  heartbeatInterval: { type: 'duration', default: 1000, min: 10, description: 'heartbeat to the master', env: 'CONTAINERFS_META_HEARTBEAT_INTERVAL' },
  maintenanceInterval: { type: 'duration', default: 5000, min: 10, description: 'orphan reclaim and stale-intent recovery on led partitions', env: 'CONTAINERFS_META_MAINTENANCE_INTERVAL' },
  maxPartitions: { type: 'int', default: 10_000, min: 1, description: 'most partitions this node hosts', env: 'CONTAINERFS_META_MAX_PARTITIONS' },
  tickMs: { type: 'int', default: 100, min: 1, max: 10_000, description: 'raft tick; election timeout is 10 ticks', env: 'CONTAINERFS_META_TICK_MS' },
  leaseReads: { type: 'boolean', default: false, description: "serve metadata reads on the leader's raft lease instead of a quorum round per read (needs clocks that drift far less than an election timeout)", env: 'CONTAINERFS_META_LEASE_READS' },
  registerTimeout: { type: 'duration', default: 60_000, min: 100, description: 'give up starting when no master answers within this', env: 'CONTAINERFS_META_REGISTER_TIMEOUT' },
  token: { type: 'string', description: 'shared token required of peers and clients', env: 'CONTAINERFS_TOKEN' },
  logLevel: { type: 'string', default: 'info', enum: LOG_LEVELS, description: 'log level', env: 'CONTAINERFS_LOG_LEVEL' },
} as const;

const HELP = `
Hosts metadata partitions of ContainerFS volumes: inodes, dentries, extent maps, xattrs and
open-file orphans, every operation one Raft log entry. It registers with the master (its node
id is kept in <data-dir>/node-id), heartbeats its partitions' state, opens the partitions the
master places on it, and where it leads a partition it reclaims orphans of clients whose lease
expired and finishes cross-partition operations a crashed client left half-done.

Config precedence: defaults < --config file (JSON, keys below) < env < flags.
${describeConfig(metaSpec)}

Example, three metanodes on one machine:
  containerfs meta --listen 127.0.0.1:7401 --master 127.0.0.1:7200 --data-dir /srv/meta1 --admin-listen 127.0.0.1:7471
  (and 7402/7472, 7403/7473 likewise)
`;

export function register(program: Command): void {
  program
    .command('meta')
    .description('run a metanode: many metadata partitions in one process (multi-raft)')
    .option('-c, --config <file>', 'JSON config file')
    .option('--listen <host:port>', metaSpec.listen.description)
    .option('--advertise <host:port>', metaSpec.advertise.description)
    .option('--master <list>', metaSpec.master.description)
    .option('--data-dir <dir>', metaSpec.dataDir.description)
    .option('--admin-listen <host:port>', metaSpec.adminListen.description)
    .option('--heartbeat-interval <duration>', metaSpec.heartbeatInterval.description)
    .option('--maintenance-interval <duration>', metaSpec.maintenanceInterval.description)
    .option('--max-partitions <n>', metaSpec.maxPartitions.description)
    .option('--tick-ms <ms>', metaSpec.tickMs.description)
    .option('--lease-reads', metaSpec.leaseReads.description)
    .option('--register-timeout <duration>', metaSpec.registerTimeout.description)
    .option('--token <token>', metaSpec.token.description)
    .option('--log-level <level>', metaSpec.logLevel.description)
    .addHelpText('after', HELP)
    .action(async (flags: Record<string, unknown>) => {
      const cfg = loadDaemonConfig('containerfs meta', metaSpec, flags);
      const advertise = cfg.advertise ?? cfg.listen;
      try {
        parseHostPort(advertise, 'advertise');
      } catch (err) {
        console.error(`containerfs meta: ${errorMessage(err)}`);
        process.exit(2);
      }
      const dataDir = resolve(cfg.dataDir);
      let node: MetaNode | undefined;
      let host: RaftHost | undefined;
      let raftNode: RaftNode | undefined;
      await runDaemon({
        name: 'metanode',
        logLevel: cfg.logLevel as LogLevel,
        adminListen: cfg.adminListen,
        start: async ({ log, registry }) => {
          mkdirSync(dataDir, { recursive: true });
          const token = cfg.token ? { token: cfg.token } : {};
          const pool = new RpcPool({ ...token, logger: log, backoffBaseMs: 50, backoffMaxMs: 2000 });
          const master = new MasterClient({ endpoints: cfg.master, pool, deadlineMs: 5000 });
          // The node id is the raft id in every partition group: it must never change.
          const idFile = join(dataDir, 'node-id');
          const savedId = existsSync(idFile) ? Number(readFileSync(idFile, 'utf8').trim()) : 0;
          let nodeId = 0;
          const giveUp = Date.now() + cfg.registerTimeout;
          for (;;) {
            try {
              nodeId = (await master.register('meta', advertise)).id;
              break;
            } catch (err) {
              if (Date.now() > giveUp) throw new Error(`no master answered registration within ${cfg.registerTimeout}ms: ${errorMessage(err)}`);
              log.warn({ err: errorMessage(err) }, 'meta: registration with the master failed; retrying');
              await sleep(500);
            }
          }
          if (savedId && savedId !== nodeId) throw new Error(`the master gave id ${nodeId} to ${advertise}, but this data dir belongs to node ${savedId}`);
          if (!savedId) writeFileSync(idFile, `${nodeId}\n`);
          const peers = new Map<number, string>([[nodeId, advertise]]);
          raftNode = await openRaftNode({ dataDir, nodeId, peers, name: `meta-${nodeId}`, pool, logger: log, registry, ...token, host: { tickMs: cfg.tickMs, leaseReads: cfg.leaseReads } });
          const { rpc } = raftNode;
          host = raftNode.host;
          registerTableService(rpc, host);
          registerMetaService(rpc, host);
          // Extents of orphans this node reclaims (their client died) are marked dead on their
          // datanodes from here: no client is left to do it.
          const blocks = new BlockGroupClient({
            pool,
            logger: log,
            locate: async (groupId) => {
              const g = await master.locateGroup(groupId);
              return { groupId: g.groupId, replicas: g.replicas };
            },
          });
          node = new MetaNode({
            host, pool, master, nodeId, address: advertise, heartbeatIntervalMs: cfg.heartbeatInterval, maintenanceIntervalMs: cfg.maintenanceInterval, maxPartitions: cfg.maxPartitions, logger: log, registry, assignmentFile: join(dataDir, 'assignment.json'),
            onFreed: (extents) => freeExtents(blocks, extents, log),
          });
          const restored = await node.restore();
          const { host: h, port } = parseHostPort(cfg.listen, 'listen');
          await rpc.listen(port, h);
          host.start();
          node.start();
          if (restored > 0) log.info({ partitions: restored }, 'meta: hosting the partitions of the saved assignment');
          log.info({ id: nodeId, listen: cfg.listen, advertise, master: cfg.master, dataDir }, 'metanode started');
          return async () => {
            node?.stop();
            await raftNode?.close();
            await pool.close();
          };
        },
        health: () => {
          if (!node || !host) return { status: 'down' };
          const leaderless = node.partitions.filter((g) => !host?.group(g)?.status().lead);
          const status = node.lastHeartbeatError || leaderless.length > 0 ? 'degraded' : 'ok';
          return { status, checks: { master: { status: node.lastHeartbeatError ? 'degraded' : 'ok', detail: node.lastHeartbeatError?.message ?? `heartbeats=${node.heartbeats}` }, partitions: { status: leaderless.length > 0 ? 'degraded' : 'ok', detail: `hosted=${node.partitions.length} leaderless=${leaderless.join(',') || 'none'}` } } };
        },
        ready: () => (node?.heartbeats ?? 0) > 0,
      });
    });
}
