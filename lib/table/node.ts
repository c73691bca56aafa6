// What every process that hosts table groups sets up the same way: a level database for the
// tables, the durable Raft log beside it, an RPC server (not yet listening) and a client pool,
// and the RaftHost over them; close() takes it down in the right order. Used by the table,
// master and metanode daemons and by the embedded table.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { silentLogger, type Logger, type Registry } from '../common/index.js';
import { RpcServer, RpcPool } from '../rpc/index.js';
import { RaftHost, type HostOptions } from './host.js';
import { LevelDurableLog } from './levellog.js';

export interface RaftNodeOptions {
  dataDir: string;
  nodeId: number;
  /** Every member's address (this node's included); the map is shared with the host. */
  peers: Map<number, string>;
  /** Names the RPC server in logs. */
  name: string;
  token?: string;
  /** Reuse a pool the caller already has (it then closes it); otherwise one is made. */
  pool?: RpcPool;
  logger?: Logger;
  registry?: Registry;
  host?: Partial<Omit<HostOptions, 'nodeId' | 'db' | 'log' | 'peers' | 'rpc' | 'pool'>>;
}

export interface RaftNode {
  host: RaftHost;
  rpc: RpcServer;
  pool: RpcPool;
  close(): Promise<void>;
}

export async function openRaftNode(o: RaftNodeOptions): Promise<RaftNode> {
  const log = o.logger ?? silentLogger;
  mkdirSync(o.dataDir, { recursive: true });
  const db = new Level<Uint8Array, Uint8Array>(join(o.dataDir, 'table'), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const raftLog = await LevelDurableLog.open(join(o.dataDir, 'raft'), log);
  const token = o.token ? { token: o.token } : {};
  const registry = o.registry ? { registry: o.registry } : {};
  const rpc = new RpcServer({ name: o.name, logger: log, ...registry, ...token });
  const ownPool = !o.pool;
  const pool = o.pool ?? new RpcPool({ ...token, logger: log, backoffBaseMs: 50, backoffMaxMs: 2000 });
  const host = new RaftHost({ snapshotDir: join(o.dataDir, 'snap'), logger: log, ...registry, ...o.host, nodeId: o.nodeId, db, log: raftLog, peers: o.peers, rpc, pool });
  return {
    host,
    rpc,
    pool,
    close: async () => {
      await rpc.close(1000);
      await host.close();
      if (ownPool) await pool.close();
      await raftLog.close();
      await db.close();
    },
  };
}
