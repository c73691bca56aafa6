// An embedded single-member table: a RaftHost with one group, its durable log and an RPC
// endpoint on loopback, plus a TableClient to it. For daemons that want a replicated-table
// API on one machine (ContainerDNS's default store, a one-node ContainerFS master) and can
// later point the same client at a 3-member cluster instead.
import { silentLogger, type Logger, type Registry } from '../common/index.js';
import type { RaftHost, GroupOptions } from './host.js';
import { openRaftNode } from './node.js';
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
  // The address is known only once listening, and the host needs it in its peers map.
  const peers = new Map<number, string>();
  const node = await openRaftNode({
    dataDir: opts.dataDir, nodeId: 1, peers, name: 'embedded-table', logger: log,
    ...(opts.registry ? { registry: opts.registry } : {}), ...(opts.token ? { token: opts.token } : {}),
    host: { tickMs: opts.tickMs ?? 50 },
  });
  const { rpc, host, pool } = node;
  const addr = await rpc.listen(opts.port ?? 0, opts.host ?? '127.0.0.1');
  const address = `${addr.address}:${addr.port}`;
  peers.set(1, address);
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
      await node.close();
    },
  };
}
