// Test helper: metadata partitions on N in-process raft hosts over real sockets, with the table
// and meta services registered, and a MetaClient that reaches them over the network (the path
// lib/fs uses).
import { registerTableService, type TableGroup } from '../../lib/table/index.js';
import { metaDomains, registerMetaService, MetaClient, timespecOf, META_DOMAIN, type PartitionRoute, type MetaClientOptions } from '../../lib/meta/index.js';
import { containerstack } from '../../proto/gen/meta.js';
import { addGroupEverywhere, leaderOf, startCluster, waitFor } from '../table/cluster.js';

const pb = containerstack.meta;

export interface MetaHarness {
  cluster: Awaited<ReturnType<typeof startCluster>>;
  groups: Map<number, Map<number, TableGroup>>;
  routes: PartitionRoute[];
  client(opts?: Partial<MetaClientOptions>): MetaClient;
  close(): Promise<void>;
}

export async function startMeta(opts: { nodes?: number[]; partitions?: { groupId: number; start: number; end: number }[] } = {}): Promise<MetaHarness> {
  const ids = opts.nodes ?? [1];
  const parts = opts.partitions ?? [{ groupId: 100, start: 1, end: 1_000_000 }];
  const cluster = await startCluster(ids, { tickMs: 10 });
  for (const n of cluster.nodes.values()) {
    registerTableService(n.rpc, n.host);
    registerMetaService(n.rpc, n.host);
  }
  const groups = new Map<number, Map<number, TableGroup>>();
  for (const p of parts) {
    const gs = await addGroupEverywhere(cluster.nodes, p.groupId, ids, { domains: metaDomains() });
    groups.set(p.groupId, gs);
    const leader = await waitFor(() => leaderOf(gs), `leader of ${p.groupId}`);
    await leader.propose({ domain: META_DOMAIN, args: pb.MetaRequest.encode({ op: 'init', volume: 'v', start: p.start, end: p.end, now: timespecOf(Date.now()) }).finish() });
  }
  const routes: PartitionRoute[] = parts.map((p) => ({ ...p, members: ids.map((id) => cluster.peers.get(id) as string) }));
  const clients: MetaClient[] = [];
  return {
    cluster,
    groups,
    routes,
    client: (o = {}) => {
      const c = new MetaClient({ routes: async () => routes, deadlineMs: 10_000, ...o });
      clients.push(c);
      return c;
    },
    close: async () => {
      for (const c of clients) await c.close();
      await cluster.close();
    },
  };
}

/** Resolves with the error code a promise rejects with ('' when it resolves). */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return '';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}
