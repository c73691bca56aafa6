// `containerfs data`: the datanode daemon. Wires config, the RPC server, lib/blockgroup's
// DataNode and the optional heartbeat to the master; all block-group logic lives in the library.
import type { Command } from 'commander';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { describeConfig, LOG_LEVELS, parseHostPort, retainFreedMemory, type LogLevel } from '../../lib/common/index.js';
import { RpcPool, RpcServer } from '../../lib/rpc/index.js';
import { DataNode, Heartbeater, useCrc32c } from '../../lib/blockgroup/index.js';
import { loadDaemonConfig, runDaemon } from '../lib/daemon.js';

export const dataSpec = {
  listen: { type: 'hostport', default: '127.0.0.1:7300', description: 'RPC address (clients and peer datanodes)', env: 'CONTAINERFS_DATA_LISTEN' },
  advertise: { type: 'string', description: 'address peers and chains use for this node (default: listen)', env: 'CONTAINERFS_DATA_ADVERTISE' },
  dataDir: { type: 'string[]', default: ['./data/datanode'], maxItems: 64, description: 'data directories, comma separated', env: 'CONTAINERFS_DATA_DIR' },
  adminListen: { type: 'hostport', default: '127.0.0.1:7370', description: 'HTTP /health, /ready, /metrics', env: 'CONTAINERFS_DATA_ADMIN_LISTEN' },
  master: { type: 'string', description: 'master host:port to send heartbeats to (none: no heartbeats)', env: 'CONTAINERFS_DATA_MASTER' },
  heartbeatInterval: { type: 'duration', default: 3000, min: 100, description: 'heartbeat interval', env: 'CONTAINERFS_DATA_HEARTBEAT_INTERVAL' },
  token: { type: 'string', description: 'shared token required of peers and clients', env: 'CONTAINERFS_TOKEN' },
  maxGroups: { type: 'int', default: 10_000, min: 1, description: 'most group replicas this node holds', env: 'CONTAINERFS_DATA_MAX_GROUPS' },
  maxAppend: { type: 'bytes', default: 8 * 1024 * 1024, min: 1, max: 12 * 1024 * 1024, description: 'largest single append', env: 'CONTAINERFS_DATA_MAX_APPEND' },
  blockSize: { type: 'bytes', default: 64 * 1024, min: 512, max: 4 * 1024 * 1024, description: 'checksum block size of groups created without one', env: 'CONTAINERFS_DATA_BLOCK_SIZE' },
  extentMax: { type: 'bytes', default: 256 * 1024 * 1024, min: 4096, description: 'extent file size before rolling to the next', env: 'CONTAINERFS_DATA_EXTENT_MAX' },
  forwardTimeout: { type: 'duration', default: 10_000, min: 10, description: 'deadline of a forward down the chain', env: 'CONTAINERFS_DATA_FORWARD_TIMEOUT' },
  recoveryInterval: { type: 'duration', default: 1000, min: 10, description: 'how often sealed replicas retry catch-up', env: 'CONTAINERFS_DATA_RECOVERY_INTERVAL' },
  directReads: { type: 'boolean', default: true, description: 'read extents with O_DIRECT where the filesystem allows it (no page-cache fill and copy; clients cache what they read)', env: 'CONTAINERFS_DATA_DIRECT_READS' },
  directWrites: { type: 'boolean', default: true, description: 'write the page-aligned middle of large writes with O_DIRECT where the filesystem allows it (no page-cache fill and write-back)', env: 'CONTAINERFS_DATA_DIRECT_WRITES' },
  dropBehindWrites: { type: 'boolean', default: false, description: 'drop written data from the page cache once durable (for machines where several replicas share one page cache, as containerstack up)', env: 'CONTAINERFS_DATA_DROP_BEHIND_WRITES' },
  compactInterval: { type: 'duration', default: 60_000, description: 'how often to compact (0: only on request)', env: 'CONTAINERFS_DATA_COMPACT_INTERVAL' },
  compactRatio: { type: 'number', default: 0.5, min: 0, max: 1, description: 'compact an extent once this share of it is freed', env: 'CONTAINERFS_DATA_COMPACT_RATIO' },
  scrubInterval: { type: 'duration', default: 0, description: 'how often to verify every block and queue repairs (0: never)', env: 'CONTAINERFS_DATA_SCRUB_INTERVAL' },
  crc32c: { type: 'string', default: 'auto', enum: ['auto', 'ts'], description: 'crc32c implementation: auto (SSE4.2 addon when it builds) or ts (pure TypeScript)', env: 'CONTAINERFS_CRC32C' },
  retainMemory: { type: 'boolean', default: true, description: 'keep freed memory for reuse (glibc mallopt): moving MiB-sized buffers then stops faulting in new pages; the process keeps its peak size', env: 'CONTAINERFS_DATA_RETAIN_MEMORY' },
  logLevel: { type: 'string', default: 'info', enum: LOG_LEVELS, description: 'log level', env: 'CONTAINERFS_LOG_LEVEL' },
} as const;

const HELP = `
Holds replicas of block groups on local disk. A group stores extents in append-only files with
a crc32c per block; appends reach the group's primary and flow down the replica chain, and are
acknowledged once every replica has them durable (fdatasync, batched across writers). A group
whose chain breaks is sealed read-only; replicas that were down catch up by length from a peer
when they return, and blocks that fail their checksum are repaired from a peer. Freed ranges
are reclaimed by compaction. SIGINT/SIGTERM stop the node cleanly. Run it as
"node --initial-old-space-size=64 containerfs.js data ..." (what containerstack up does, DATA_PATH_NODE_FLAGS
in lib/blockgroup): V8 otherwise collects the datanode's small heap every few MiB of traffic.

Config precedence: defaults < --config file (JSON, keys below) < env < flags.
${describeConfig(dataSpec)}

Example, three datanodes on one machine:
  containerfs data --listen 127.0.0.1:7301 --data-dir /srv/d1 --admin-listen 127.0.0.1:7371
  containerfs data --listen 127.0.0.1:7302 --data-dir /srv/d2 --admin-listen 127.0.0.1:7372
  containerfs data --listen 127.0.0.1:7303 --data-dir /srv/d3 --admin-listen 127.0.0.1:7373
`;

export function register(program: Command): void {
  program
    .command('data')
    .description('run a datanode: block-group replicas on local disk (RPC, admin /metrics /health /ready)')
    .option('-c, --config <file>', 'JSON config file')
    .option('--listen <host:port>', dataSpec.listen.description)
    .option('--advertise <host:port>', dataSpec.advertise.description)
    .option('--data-dir <dirs>', dataSpec.dataDir.description)
    .option('--admin-listen <host:port>', dataSpec.adminListen.description)
    .option('--master <host:port>', dataSpec.master.description)
    .option('--heartbeat-interval <duration>', dataSpec.heartbeatInterval.description)
    .option('--token <token>', dataSpec.token.description)
    .option('--max-groups <n>', dataSpec.maxGroups.description)
    .option('--max-append <bytes>', dataSpec.maxAppend.description)
    .option('--block-size <bytes>', dataSpec.blockSize.description)
    .option('--extent-max <bytes>', dataSpec.extentMax.description)
    .option('--forward-timeout <duration>', dataSpec.forwardTimeout.description)
    .option('--recovery-interval <duration>', dataSpec.recoveryInterval.description)
    .option('--drop-behind-writes', dataSpec.dropBehindWrites.description)
    .option('--direct-reads <bool>', dataSpec.directReads.description)
    .option('--direct-writes <bool>', dataSpec.directWrites.description)
    .option('--compact-interval <duration>', dataSpec.compactInterval.description)
    .option('--compact-ratio <ratio>', dataSpec.compactRatio.description)
    .option('--scrub-interval <duration>', dataSpec.scrubInterval.description)
    .option('--crc32c <impl>', dataSpec.crc32c.description)
    .option('--log-level <level>', dataSpec.logLevel.description)
    .option('--retain-memory <bool>', dataSpec.retainMemory.description)
    .addHelpText('after', HELP)
    .action(async (flags: Record<string, unknown>) => {
      const cfg = loadDaemonConfig('containerfs data', dataSpec, flags);
      const advertise = cfg.advertise ?? cfg.listen;
      try {
        parseHostPort(advertise, 'advertise');
        if (cfg.master) parseHostPort(cfg.master, 'master');
      } catch (err) {
        console.error(`containerfs data: ${(err as Error).message}`);
        process.exit(2);
      }
      const dataDirs = cfg.dataDir.map((d) => resolve(d));
      let node: DataNode | undefined;
      let hb: Heartbeater | undefined;
      await runDaemon({
        name: 'datanode',
        logLevel: cfg.logLevel as LogLevel,
        adminListen: cfg.adminListen,
        start: async ({ log, registry }) => {
          for (const d of dataDirs) mkdirSync(d, { recursive: true });
          useCrc32c(cfg.crc32c as 'auto' | 'ts');
          if (cfg.retainMemory) {
            const r = retainFreedMemory();
            if (!r.ok) log.warn({ reason: r.reason }, 'datanode: cannot keep freed memory for reuse; buffers fault in new pages');
          }
          const token = cfg.token ? { token: cfg.token } : {};
          const pool = new RpcPool({ ...token, logger: log, backoffBaseMs: 50, backoffMaxMs: 2000, connectTimeoutMs: 3000, name: `datanode ${advertise}` });
          // Appends carry up to maxAppend bytes of data plus a small header.
          const rpc = new RpcServer({ ...token, name: `datanode-${advertise}`, logger: log, registry, maxFrameBytes: cfg.maxAppend + 64 * 1024 });
          node = await DataNode.open({
            dataDirs, advertise, pool, logger: log, registry,
            maxGroups: cfg.maxGroups, maxAppendBytes: cfg.maxAppend, maxReadBytes: cfg.maxAppend,
            defaultBlockSizeBytes: cfg.blockSize, defaultExtentMaxBytes: cfg.extentMax,
            forwardDeadlineMs: cfg.forwardTimeout, recoveryIntervalMs: cfg.recoveryInterval,
            compactIntervalMs: cfg.compactInterval, compactDeadRatio: cfg.compactRatio, scrubIntervalMs: cfg.scrubInterval,
            dropBehindWrites: cfg.dropBehindWrites, directReads: cfg.directReads, directWrites: cfg.directWrites,
          });
          node.register(rpc);
          const { host, port } = parseHostPort(cfg.listen, 'listen');
          await rpc.listen(port, host);
          node.start();
          const n = node;
          if (cfg.master) {
            hb = new Heartbeater({ master: cfg.master, pool, build: () => n.heartbeat(), onAck: (ack, sent) => n.onHeartbeatAck(ack, sent), intervalMs: cfg.heartbeatInterval, logger: log });
            hb.start();
          }
          log.info({ listen: cfg.listen, advertise, dataDirs, master: cfg.master ?? null }, 'datanode started');
          return async () => {
            hb?.stop();
            await rpc.close(1000);
            await node?.close();
            await pool.close();
          };
        },
        health: async () => (node ? node.health() : { status: 'down' }),
        ready: () => node !== undefined,
      });
    });
}
