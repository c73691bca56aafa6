// `containerfs cluster status`: the cluster map as tables a person can read — masters,
// nodes (with heartbeat age and health), partitions (ranges, leaders), block groups — and a
// one-line verdict. Also the helpers the volume command shares (master flags, tables).
import type { Command } from 'commander';
import { errorMessage } from '../../lib/common/index.js';
import { MasterClient, type ClusterView } from '../../lib/master/index.js';

export const masterOption = (c: Command): Command =>
  c
    .option('--master <list>', 'master addresses, comma separated', process.env.CONTAINERFS_MASTER ?? '127.0.0.1:7200')
    .option('--token <token>', 'shared token', process.env.CONTAINERFS_TOKEN)
    .option('--timeout <ms>', 'deadline of the operation', '10000')
    .option('--json', 'print JSON');

export async function withMaster(opts: Record<string, unknown>, what: string, fn: (m: MasterClient) => Promise<void>): Promise<void> {
  const m = new MasterClient({
    endpoints: String(opts.master).split(',').map((s) => s.trim()).filter(Boolean),
    deadlineMs: Number(opts.timeout ?? 10_000),
    ...(typeof opts.token === 'string' ? { token: opts.token } : {}),
  });
  try {
    await fn(m);
  } catch (err) {
    console.error(`containerfs ${what}: ${errorMessage(err)}`);
    const code = (err as { code?: string }).code;
    process.exitCode = code === 'MASTER_UNAVAILABLE' ? 3 : code === 'MASTER_NOT_FOUND' ? 4 : 1;
  } finally {
    await m.close();
  }
}


export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n}B` : `${v.toFixed(1)}${units[i]}`;
}

export function formatTable(head: string[], rows: string[][]): string {
  if (rows.length === 0) return `${head.join('  ')}\n(none)`;
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/** Problems a person should look at; empty when healthy. */
export function problems(v: ClusterView): string[] {
  const out: string[] = [];
  for (const n of v.nodes) if (n.state !== 'up') out.push(`${n.kind}node ${n.id} (${n.address}) is ${n.state || 'unknown'}`);
  const down = new Set(v.nodes.filter((n) => n.state !== 'up').map((n) => n.id));
  for (const p of v.partitions) {
    const live = p.members.filter((m) => !down.has(m)).length;
    if (live * 2 <= p.members.length) out.push(`partition ${p.groupId} (${p.volume}) has no quorum: ${live}/${p.members.length} members up`);
    else if (live < p.members.length) out.push(`partition ${p.groupId} (${p.volume}) is degraded: ${live}/${p.members.length} members up`);
    if (!p.leader) out.push(`partition ${p.groupId} (${p.volume}) has reported no leader yet`);
  }
  for (const vol of v.volumes) if (vol.full) out.push(`volume ${vol.name} is full: ${humanBytes(vol.usedBytes)} of ${humanBytes(vol.quotaBytes)} (writes that grow files fail; containerfs volume set-capacity)`);
  if (!v.leader) out.push('the masters have no leader');
  return out;
}

export function renderStatus(v: ClusterView, nowMs = Date.now()): string {
  const addr = new Map(v.nodes.map((n) => [n.id, n.address]));
  const parts: string[] = [];
  parts.push('masters');
  parts.push(formatTable(['ID', 'ADDRESS', 'ROLE'], v.masters.map((m) => [String(m.id), m.address, m.role])));
  parts.push('\nnodes');
  parts.push(formatTable(['ID', 'KIND', 'ADDRESS', 'STATE', 'HEARTBEAT', 'HEALTH', 'CAPACITY', 'USED', 'PARTITIONS', 'GROUPS'], v.nodes.map((n) => [
    String(n.id), n.kind, n.address, n.state, n.lastHeartbeatMs ? `${((nowMs - n.lastHeartbeatMs) / 1000).toFixed(1)}s ago` : '-', n.health || '-',
    n.kind === 'data' ? humanBytes(n.capacityBytes) : '-', n.kind === 'data' ? humanBytes(n.usedBytes) : '-', n.kind === 'meta' ? String(n.partitions) : '-', n.kind === 'data' ? String(n.groups) : '-',
  ])));
  parts.push('\nvolumes');
  parts.push(formatTable(['NAME', 'USED', 'CAPACITY', 'STATE'], v.volumes.map((vol) => [vol.name, humanBytes(vol.usedBytes), vol.quotaBytes ? humanBytes(vol.quotaBytes) : 'unlimited', vol.full ? 'FULL' : 'ok'])));
  parts.push('\nmetadata partitions');
  parts.push(formatTable(['GROUP', 'VOLUME', 'INO RANGE', 'INODES', 'LEADER', 'MEMBERS', 'NEARLY FULL'], v.partitions.map((p) => [
    String(p.groupId), p.volume, `[${p.start}, ${p.end})`, String(p.inodes), p.leader ? `${p.leader} ${addr.get(p.leader) ?? ''}` : '-', p.members.join(','), p.nearlyFull ? 'yes' : 'no',
  ])));
  parts.push('\nblock groups');
  parts.push(formatTable(['GROUP', 'VOLUME', 'STATE', 'LENGTH', 'REPLICAS'], v.groups.map((g) => [String(g.groupId), g.volume, g.state, humanBytes(g.lengthBytes), g.replicas.map((id) => addr.get(id) ?? String(id)).join(' -> ')])));
  const issues = problems(v);
  parts.push(`\nhealth: ${issues.length === 0 ? 'OK' : `${issues.length} problem(s)`}`);
  for (const i of issues) parts.push(`  - ${i}`);
  return parts.join('\n');
}

export function register(program: Command): void {
  const cluster = program.command('cluster').description('look at the whole cluster');
  masterOption(cluster.command('status').description('masters, nodes, partitions, block groups, leaders and health')).action(async (opts: Record<string, unknown>) => {
    await withMaster(opts, 'cluster status', async (m) => {
      const v = await m.view();
      if (opts.json) console.log(JSON.stringify({ ...v, problems: problems(v) }));
      else console.log(renderStatus(v));
      if (problems(v).length > 0) process.exitCode = 5;
    });
  });
}
