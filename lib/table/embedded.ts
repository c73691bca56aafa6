// An embedded single-member table: a RaftHost with one group, its durable log and an RPC
// endpoint on loopback, plus a TableClient to it. For daemons that want a replicated-table
// API on one machine (ContainerDNS's default store, a one-node ContainerFS master) and can
// later point the same client at a 3-member cluster instead.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { silentLogger, type Logger, type Registry } from '../common/index.js';
import { RpcServer, RpcPool } from '../rpc/index.js';
import { RaftHost, type GroupOptions } from './host.js';
import { LevelDurableLog } from './levellog.js';
import { registerTableService } from './service.js';
import { TableClient } from './client.js';

export interface EmbeddedTableOptions {
  dataDir: string;
  groupId?: number;
  /** RPC listen address; port 0 picks a free one. Other processes may connect to it. */
  host?: string;
  port?: number;
  token?: string;
  tickMs?: number;
  group?: GroupOptions;
  logger?: Logger;
  registry?: Registry;
}

export interface EmbeddedTable {
  client: TableClient;
  host: RaftHost;
  address: string;
  close(): Promise<void>;
}

export async function startEmbeddedTable(opts: EmbeddedTableOptions): Promise<EmbeddedTable> {
  const log = opts.logger ?? silentLogger;
  mkdirSync(opts.dataDir, { recursive: true });
  const db = new Level<Uint8Array, Uint8Array>(join(opts.dataDir, 'table'), { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  const raftLog = await LevelDurableLog.open(join(opts.dataDir, 'raft'), log);
  const rpc = new RpcServer({ name: 'embedded-table', logger: log, ...(opts.registry ? { registry: opts.registry } : {}), ...(opts.token ? { token: opts.token } : {}) });
  const addr = await rpc.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
  const address = `${addr.address}:${addr.port}`;
  const pool = new RpcPool({ ...(opts.token ? { token: opts.token } : {}), logger: log });
  const peers = new Map([[1, address]]);
  const host = new RaftHost({ nodeId: 1, db, log: raftLog, peers, rpc, pool, tickMs: opts.tickMs ?? 50, logger: log, ...(opts.registry ? { registry: opts.registry } : {}) });
  registerTableService(rpc, host);
  const groupId = opts.groupId ?? 1;
  const g = await host.addGroup(groupId, { ...opts.group, voters: [1] });
  host.start();
  // A single member elects itself after one election timeout.
  for (let i = 0; i < 400 && !g.isLeader; i++) await new Promise((r) => setTimeout(r, 10));
  const client = new TableClient({ endpoints: [address], groupId, pool });
  return {
    client,
    host,
    address,
    close: async () => {
      await client.close();
      await rpc.close(500);
      await host.close();
      await pool.close();
      await raftLog.close();
      await db.close();
    },
  };
}
