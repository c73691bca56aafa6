// bench/raft idle: CPU used by three hosts that each run N idle groups (multi-raft), the cost
// of keeping thousands of groups alive. Heartbeats of all groups to one peer travel in one RPC
// per loop turn. Reports CPU% per host process over a fixed window after every group has a
// leader.
//
// Bound from first principles: each group ticks every tickMs and its leader sends one
// heartbeat per follower per heartbeat interval; 1,000 groups x 2 followers / 3 hosts x 10/s
// is ~6,700 heartbeats and as many responses per host per second, at a few µs each: a few
// percent of one core.
//
//   npm run bench:raft-idle [-- --groups 1000 --seconds 10]
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { TableClient } from '../../lib/table/index.js';
import { appendResults, markdownTable, printResultLine, round } from '../lib/results.js';
import { freePort, killAll, killAndWait, startProcess, waitUntil } from '../lib/procs.js';
import { benchTempDir, removeTempDir } from '../lib/tmp.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const groups = arg('groups', 1000);
const seconds = arg('seconds', 10);
const tickMs = arg('tick-ms', 100);

function cpuTicks(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(parts[11]) + Number(parts[12]); // utime + stime, in clock ticks
}

async function main(): Promise<void> {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerstack.js');
  const ports = await Promise.all([1, 2, 3].map(() => freePort()));
  const peers = ports.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(',');
  const children: ChildProcess[] = [];
  const base = benchTempDir('bench-idle-', () => killAll(children));
  ports.forEach((p, i) =>
    children.push(startProcess(process.execPath, [bin, 'table', 'serve', '--id', String(i + 1), '--listen', `127.0.0.1:${p}`, '--peers', peers, '--data-dir', join(base, `m${i + 1}`), '--admin-listen', '127.0.0.1:0', '--groups', String(groups), '--tick-ms', String(tickMs), '--log-level', 'error'], `host ${i + 1}`)),
  );
  const endpoints = ports.map((p) => `127.0.0.1:${p}`);
  // Every group elected: check a sample across the range (all would take long over RPC).
  const sample = [1, Math.ceil(groups / 2), groups];
  await waitUntil(async () => {
    for (const g of sample) {
      const c = new TableClient({ endpoints, groupId: g, deadlineMs: 2000 });
      try {
        const st = await c.status();
        if (!st.leaderId) return false;
      } finally {
        await c.close();
      }
    }
    return true;
  }, 'leaders', 120_000);
  await new Promise((r) => setTimeout(r, 3000)); // let elections settle everywhere
  const hz = 100; // USER_HZ on Linux
  const before = children.map((c) => cpuTicks(c.pid as number));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const after = children.map((c) => cpuTicks(c.pid as number));
  await killAndWait(children);
  await removeTempDir(base);
  const pct = after.map((a, i) => ((a - (before[i] as number)) / hz / seconds) * 100);
  const rows = pct.map((p, i) => ({ host: i + 1, groups, 'tick ms': tickMs, 'CPU % of one core': round(p, 1) }));
  const table = markdownTable(rows);
  console.log(table);
  const avg = pct.reduce((a, b) => a + b, 0) / pct.length;
  appendResults('raft idle: multi-raft hosts with idle groups', `Three host processes on loopback, each hosting ${groups} groups of 3 replicas, idle for ${seconds}s after elections settled (CPU from /proc). No peer: etcd runs one group per process.\n\n${table}`);
  printResultLine({ bench: 'raft-idle', metric: 'cpu_percent_per_host', ours: round(avg, 1), peer: 'none', peerValue: 0, ratio: 0, groups });
}

await main();
