// bench/raft: a 3-member containerstack table against a 3-member etcd 3.4, both on loopback
// with fsync on, driven by the same Node load generator (etcd through its `etcd3` client):
// 256-byte values, 1 and 100 concurrent clients, writes/s and latency.
//
// Bound from first principles: every acknowledged write costs the leader one fsync and a
// follower one fsync (a quorum of 2 of 3). With group commit, a batch of writes shares those
// fsyncs, so at 100 clients throughput is set by CPU (encode, raft, apply) rather than the
// disk; at 1 client it is set by ~2 sequential fsyncs plus two loopback round trips.
//
//   npm run bench:raft [-- --seconds 5 --rounds 2]
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { Etcd3 } from 'etcd3';
import { TableClient } from '../../lib/table/index.js';
import { appendResults, markdownTable, median, percentile, printResultLine, round } from '../lib/results.js';
import { freePort, killAll, killAndWait, startProcess, waitUntil } from '../lib/procs.js';
import { benchTempDir, removeTempDir } from '../lib/tmp.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const seconds = arg('seconds', 5);
const rounds = arg('rounds', 2);
const VALUE = Buffer.alloc(256, 0x76);
const MAX_SAMPLES = 1_000_000;

function ensureEtcd(): void {
  try {
    execFileSync('etcd', ['--version'], { stdio: 'ignore' });
  } catch {
    console.error('bench/raft: installing etcd-server from Debian');
    execFileSync('bash', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server'], { stdio: 'inherit' });
  }
}

async function startEtcd(children: ChildProcess[]): Promise<{ endpoints: string[]; dir: string }> {
  const ports = await Promise.all([1, 2, 3].map(async () => ({ client: await freePort(), peer: await freePort() })));
  const cluster = ports.map((p, i) => `e${i + 1}=http://127.0.0.1:${p.peer}`).join(',');
  const base = benchTempDir('bench-etcd-', () => killAll(children));
  ports.forEach((p, i) => {
    children.push(
      startProcess('etcd', [
        '--name', `e${i + 1}`, '--data-dir', join(base, `e${i + 1}`),
        '--listen-client-urls', `http://127.0.0.1:${p.client}`, '--advertise-client-urls', `http://127.0.0.1:${p.client}`,
        '--listen-peer-urls', `http://127.0.0.1:${p.peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${p.peer}`,
        '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--initial-cluster-token', 'bench',
        '--log-level', 'error', '--quota-backend-bytes', String(4 * 1024 ** 3),
      ], `etcd e${i + 1}`),
    );
  });
  return { endpoints: ports.map((p) => `http://127.0.0.1:${p.client}`), dir: base };
}

async function startOurs(children: ChildProcess[]): Promise<{ endpoints: string[]; dir: string }> {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerstack.js');
  const ports = await Promise.all([1, 2, 3].map(() => freePort()));
  const peers = ports.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(',');
  const base = benchTempDir('bench-table-', () => killAll(children));
  ports.forEach((p, i) => {
    children.push(
      startProcess(process.execPath, [bin, 'table', 'serve', '--id', String(i + 1), '--listen', `127.0.0.1:${p}`, '--peers', peers, '--data-dir', join(base, `m${i + 1}`), '--admin-listen', '127.0.0.1:0', '--log-level', 'error'], `table m${i + 1}`),
    );
  });
  return { endpoints: ports.map((p) => `127.0.0.1:${p}`), dir: base };
}

type Put = (key: string) => Promise<unknown>;

async function load(put: Put, concurrency: number, durationMs: number, tag: string): Promise<{ wps: number; p50: number; p99: number; errors: number }> {
  const lat = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let errors = 0;
  let seq = 0;
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end && n < MAX_SAMPLES) {
        const t0 = performance.now();
        try {
          await put(`bench/${tag}/${seq++ % 100_000}`);
          lat[n++] = performance.now() - t0;
        } catch {
          if (++errors > 1000) throw new Error(`${tag}: too many errors`);
        }
      }
    }),
  );
  const s = lat.subarray(0, n);
  return { wps: n / ((performance.now() - start) / 1000), p50: percentile(s, 50), p99: percentile(s, 99), errors };
}

async function main(): Promise<void> {
  ensureEtcd();
  const children: ChildProcess[] = [];
  const started = [await startEtcd(children), await startOurs(children)];
  const [etcdHosts, ourEndpoints] = started.map((s) => s.endpoints);
  const etcd = new Etcd3({ hosts: etcdHosts! });
  const table = new TableClient({ endpoints: ourEndpoints!, deadlineMs: 10_000 });
  await waitUntil(async () => (await etcd.put('ping').value('1'), true), 'etcd');
  await waitUntil(async () => (await table.put('ping', '1'), true), 'table');

  const ours: Put = (k) => table.put(k, VALUE);
  const peer: Put = (k) => etcd.put(k).value(VALUE).exec();
  await load(ours, 20, 1000, 'warm');
  await load(peer, 20, 1000, 'warm');

  const rows: Record<string, string | number>[] = [];
  const summary = new Map<number, { o: number; p: number; op99: number; pp99: number }>();
  for (const c of [100, 1]) {
    const o: Awaited<ReturnType<typeof load>>[] = [];
    const p: Awaited<ReturnType<typeof load>>[] = [];
    for (let r = 0; r < rounds; r++) {
      o.push(await load(ours, c, seconds * 1000, `o${c}r${r}`));
      p.push(await load(peer, c, seconds * 1000, `p${c}r${r}`));
    }
    const ow = median(o.map((x) => x.wps));
    const pw = median(p.map((x) => x.wps));
    const op99 = median(o.map((x) => x.p99));
    const pp99 = median(p.map((x) => x.p99));
    summary.set(c, { o: ow, p: pw, op99, pp99 });
    rows.push(
      { clients: c, system: 'containerstack table', 'writes/s': Math.round(ow), 'p50 ms': round(median(o.map((x) => x.p50)), 2), 'p99 ms': round(op99, 2), errors: o.reduce((a, x) => a + x.errors, 0), ratio: round(ow / pw) },
      { clients: c, system: 'etcd 3.4', 'writes/s': Math.round(pw), 'p50 ms': round(median(p.map((x) => x.p50)), 2), 'p99 ms': round(pp99, 2), errors: p.reduce((a, x) => a + x.errors, 0), ratio: 1 },
    );
  }
  await table.close();
  etcd.close();
  await killAndWait(children);
  for (const s of started) await removeTempDir(s.dir);

  const table_ = markdownTable(rows);
  console.log(table_);
  const h = summary.get(100)!;
  const one = summary.get(1)!;
  appendResults(
    'raft: 3-member table vs etcd 3.4 (fsync on)',
    `Puts of 256-byte values, both clusters as 3 processes on loopback, one Node load generator (etcd via the etcd3 client); median of ${rounds} interleaved rounds of ${seconds}s. Targets: >= 1.0x etcd writes/s at 100 clients with p99 no worse; >= 0.8x at 1 client.\n\n${table_}`,
  );
  printResultLine({
    bench: 'raft', metric: 'writes_per_sec', ours: Math.round(h.o), peer: 'etcd-3.4', peerValue: Math.round(h.p), ratio: round(h.o / h.p),
    p99Ms: round(h.op99, 2), peerP99Ms: round(h.pp99, 2), clients: 100, oneClientRatio: round(one.o / one.p),
  });
}

await main();
