// Test helper: N raft hosts in this process, each with its own RPC endpoint on loopback and
// its own level database, so messages really cross sockets. Stopping a node removes its
// temporary directory.
import { join } from 'node:path';
import { Level } from 'level';
import { RpcServer, RpcPool } from '../../lib/rpc/index.js';
import { RaftHost, type GroupOptions, type HostOptions, type TableGroup } from '../../lib/table/host.js';
import { MemoryDurableLog, type DurableLog } from '../../lib/table/log.js';
import { removeTempDir, tempDir } from '../lib/tmp.js';

export interface TestNode {
  id: number;
  host: RaftHost;
  rpc: RpcServer;
  pool: RpcPool;
  db: Level<Uint8Array, Uint8Array>;
  log: DurableLog;
  port: number;
  /** The node's temporary directory (its database, and its log's when makeLog puts it there). */
  dir: string;
}

export async function startCluster(ids: number[], opts: { tickMs?: number; compactAfterEntries?: number; leaseReads?: boolean; makeLog?: (id: number, dir: string) => DurableLog | Promise<DurableLog>; host?: Partial<HostOptions> } = {}): Promise<{ nodes: Map<number, TestNode>; peers: Map<number, string>; addNode: (id: number) => Promise<TestNode>; close: () => Promise<void> }> {
  const peers = new Map<number, string>();
  const nodes = new Map<number, TestNode>();
  const rpcs = new Map<number, RpcServer>();
  for (const id of ids) {
    const rpc = new RpcServer();
    const addr = await rpc.listen(0);
    peers.set(id, `127.0.0.1:${addr.port}`);
    rpcs.set(id, rpc);
  }
  const make = async (id: number, rpc: RpcServer): Promise<TestNode> => {
    const dir = tempDir(`raft-host-${id}-`);
    const db = new Level<Uint8Array, Uint8Array>(join(dir, 'db'), { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    const pool = new RpcPool({ backoffBaseMs: 20, backoffMaxMs: 100 });
    const log = opts.makeLog ? await opts.makeLog(id, dir) : new MemoryDurableLog();
    const host = new RaftHost({ nodeId: id, db, log, peers, rpc, pool, tickMs: opts.tickMs ?? 20, electionTicks: 10, heartbeatTicks: 1, seed: id * 7919, leaseReads: opts.leaseReads ?? false, ...(opts.compactAfterEntries ? { compactAfterEntries: opts.compactAfterEntries } : {}), ...opts.host });
    host.start();
    return { id, host, rpc, pool, db, log, port: Number((peers.get(id) as string).split(':')[1]), dir };
  };
  for (const id of ids) nodes.set(id, await make(id, rpcs.get(id) as RpcServer));
  return {
    nodes,
    peers,
    addNode: async (id: number) => {
      const rpc = new RpcServer();
      const addr = await rpc.listen(0);
      peers.set(id, `127.0.0.1:${addr.port}`);
      const n = await make(id, rpc);
      nodes.set(id, n);
      return n;
    },
    close: async () => {
      for (const n of nodes.values()) await stopNode(n);
    },
  };
}

export async function stopNode(n: TestNode): Promise<void> {
  await n.host.close();
  await n.rpc.close(100);
  await n.pool.close();
  await n.log.close();
  await n.db.close();
  await removeTempDir(n.dir);
}

export async function addGroupEverywhere(nodes: Map<number, TestNode>, groupId: number, voters: number[], go: GroupOptions = {}): Promise<Map<number, TableGroup>> {
  const out = new Map<number, TableGroup>();
  for (const id of voters) out.set(id, await (nodes.get(id) as TestNode).host.addGroup(groupId, { ...go, voters }));
  return out;
}

export async function waitFor<T>(fn: () => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function leaderOf(groups: Map<number, TableGroup>): TableGroup | undefined {
  for (const g of groups.values()) if (!g.closed && g.isLeader) return g;
  return undefined;
}
