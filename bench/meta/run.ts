// bench/meta: metadata operations per second through the client path (MetaClient -> a
// 3-replica metadata partition on three `containerfs meta` processes, placed by a
// `containerfs master`, all on loopback, raft log fsync on), beside the same operations on a
// local tmp directory through node:fs. 1 client and 16 concurrent; creates, stats (lookup with
// attributes), readdirs (a 100-entry directory, one page), renames and unlinks.
//
// Bound from first principles: a create, rename or unlink is one raft entry: at 1 client it
// costs a loopback round trip to the leader, a leader fsync and a follower fsync (quorum 2/3)
// — a few ms on this disk — so hundreds per second; with 16 in flight group commit shares the
// fsyncs and CPU (encode, apply in level, 3 processes on 2 cores) sets the limit. A stat is a
// ReadIndex round (a heartbeat to a follower) plus a level get: no fsync. The local disk does
// none of this (no fsync, no replication, no network): it is a ceiling, not a peer of equal
// durability. lib/fs (the Volume API) is not built yet, so MetaClient is the client path here.
//
//   npm run bench:meta [-- --seconds 3 --ops 3000]
import { promises as fsp } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { RpcPool } from '../../lib/rpc/index.js';
import { MasterClient } from '../../lib/master/index.js';
import { MetaClient, ROOT_INO } from '../../lib/meta/index.js';
import { appendResults, markdownTable, percentile, printResultLine, round } from '../lib/results.js';
import { freePort, killAll, killAndWait, startProcess, waitUntil } from '../lib/procs.js';
import { benchTempDir, removeTempDir } from '../lib/tmp.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const seconds = arg('seconds', 3);
const maxOps = arg('ops', 3000);
const OPS = ['create', 'stat', 'readdir', 'rename', 'unlink'] as const;
type OpName = (typeof OPS)[number];

interface Target {
  name: string;
  setup(conc: number): Promise<void>;
  op(kind: OpName, i: number): Promise<void>;
}

/** Runs `kind` with `conc` workers until maxOps or the time is up; ops/s and latency (ms). */
async function measure(t: Target, kind: OpName, conc: number, count: number): Promise<{ perS: number; p50: number; p99: number; n: number }> {
  const lat: number[] = [];
  let next = 0;
  const end = performance.now() + seconds * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (next < count && performance.now() < end) {
        const i = next++;
        const s = performance.now();
        await t.op(kind, i);
        lat.push(performance.now() - s);
      }
    }),
  );
  const el = (performance.now() - t0) / 1000;
  return { perS: lat.length / el, p50: percentile(lat, 50), p99: percentile(lat, 99), n: lat.length };
}

async function startCluster(children: ChildProcess[]): Promise<{ master: string; dir: string }> {
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerfs.js');
  const base = benchTempDir('bench-meta-', () => killAll(children));
  const mport = await freePort();
  const master = `127.0.0.1:${mport}`;
  children.push(startProcess(process.execPath, [bin, 'master', '--listen', master, '--data-dir', join(base, 'master'), '--admin-listen', '127.0.0.1:0', '--log-level', 'warn'], 'master'));
  for (let i = 0; i < 3; i++) {
    const p = await freePort();
    children.push(startProcess(process.execPath, [bin, 'meta', '--listen', `127.0.0.1:${p}`, '--master', master, '--data-dir', join(base, `meta${i}`), '--admin-listen', '127.0.0.1:0', '--heartbeat-interval', '500ms', '--log-level', 'warn'], `meta${i}`));
  }
  return { master, dir: base };
}

async function main(): Promise<void> {
  const children: ChildProcess[] = [];
  const { master, dir: clusterDir } = await startCluster(children);
  const pool = new RpcPool({ backoffBaseMs: 20, backoffMaxMs: 200 });
  const mc = new MasterClient({ endpoints: [master], pool, deadlineMs: 20_000 });
  await waitUntil(async () => (await mc.view()).nodes.filter((n) => n.kind === 'meta' && n.state === 'up').length === 3, 'three metanodes');
  await mc.createVolume('bench', { replicas: 3 });
  const client = new MetaClient({ routes: () => mc.routes('bench'), pool, deadlineMs: 20_000, inoBlock: 4096 });
  await waitUntil(async () => (await client.getattr(ROOT_INO)).ino === ROOT_INO, 'the partition to serve');

  // ---- ours ----
  let dir = 0;
  let listDir = 0;
  const ours: Target = {
    name: 'containerfs (3 replicas)',
    setup: async (conc) => {
      dir = (await client.mkdir(ROOT_INO, `c${conc}`, 0o755)).ino;
      listDir = (await client.mkdir(ROOT_INO, `list${conc}`, 0o755)).ino;
      await Promise.all(Array.from({ length: 100 }, (_, i) => client.create(listDir, `e${i}`, 0o644)));
    },
    op: async (kind, i) => {
      switch (kind) {
        case 'create':
          await client.create(dir, `f${i}`, 0o644);
          break;
        case 'stat':
          await client.lookup(dir, `f${i}`);
          break;
        case 'readdir':
          await client.readdir(listDir, undefined, 1024);
          break;
        case 'rename':
          await client.rename(dir, `f${i}`, dir, `r${i}`);
          break;
        case 'unlink':
          await client.unlink(dir, `r${i}`);
          break;
      }
    },
  };

  // ---- local disk ----
  const root = benchTempDir('bench-meta-local-', () => undefined);
  let ldir = '';
  let llist = '';
  const local: Target = {
    name: 'local disk (node:fs, no fsync)',
    setup: async (conc) => {
      ldir = join(root, `c${conc}`);
      llist = join(root, `list${conc}`);
      await fsp.mkdir(ldir);
      await fsp.mkdir(llist);
      await Promise.all(Array.from({ length: 100 }, (_, i) => fsp.writeFile(join(llist, `e${i}`), '')));
    },
    op: async (kind, i) => {
      switch (kind) {
        case 'create':
          await (await fsp.open(join(ldir, `f${i}`), 'wx')).close();
          break;
        case 'stat':
          await fsp.stat(join(ldir, `f${i}`));
          break;
        case 'readdir':
          await fsp.readdir(llist, { withFileTypes: true });
          break;
        case 'rename':
          await fsp.rename(join(ldir, `f${i}`), join(ldir, `r${i}`));
          break;
        case 'unlink':
          await fsp.unlink(join(ldir, `r${i}`));
          break;
      }
    },
  };

  const rows: Record<string, string | number>[] = [];
  const results = new Map<string, number>();
  for (const conc of [1, 16]) {
    for (const target of [ours, local]) {
      await target.setup(conc);
      // Every op kind runs over the same names in order: created, stated, renamed, unlinked.
      let count = maxOps;
      for (const kind of OPS) {
        const r = await measure(target, kind, conc, kind === 'create' ? maxOps : count);
        if (kind === 'create') count = r.n; // later phases act on the files that exist
        results.set(`${target === ours ? 'ours' : 'local'}:${kind}:${conc}`, r.perS);
        rows.push({ target: target.name, clients: conc, op: kind, 'ops/s': round(r.perS, 0), 'p50 ms': round(r.p50, 3), 'p99 ms': round(r.p99, 3), ops: r.n });
        if (kind === 'rename' && r.n < count) count = r.n;
        if (kind === 'readdir') continue;
      }
    }
  }
  const ratioRows = OPS.flatMap((op) => [1, 16].map((conc) => ({ op, clients: conc, 'ours ops/s': round(results.get(`ours:${op}:${conc}`) ?? 0, 0), 'local ops/s': round(results.get(`local:${op}:${conc}`) ?? 0, 0), 'ratio ours/local': round((results.get(`ours:${op}:${conc}`) ?? 0) / (results.get(`local:${op}:${conc}`) ?? 1), 3) })));
  const table = markdownTable(rows);
  const ratios = markdownTable(ratioRows);
  console.log(table);
  console.log('');
  console.log(ratios);
  appendResults(
    'bench:meta (metadata ops, 3-replica partition vs local disk)',
    `MetaClient -> 3 \`containerfs meta\` processes + 1 master on loopback, raft log fsync on; local disk = node:fs on a tmp dir without fsync (a ceiling, not equal durability). Up to ${maxOps} ops or ${seconds}s per phase; stat = lookup with attributes; readdir = one page of a 100-entry directory. No FUSE peer (bindfs) yet: lib/fs and the mount are not built.\n\n${table}\n\n${ratios}`,
  );
  await client.close();
  await mc.close();
  await pool.close();
  await killAndWait(children);
  await removeTempDir(clusterDir);
  await removeTempDir(root);
  const ours16 = results.get('ours:create:16') ?? 0;
  const local16 = results.get('local:create:16') ?? 0;
  const r = (k: string): number => round(results.get(k) ?? 0, 0);
  printResultLine({
    bench: 'meta', metric: 'creates_per_s_16_clients', ours: round(ours16, 0), peer: 'local-disk', peerValue: round(local16, 0), ratio: round(ours16 / local16, 4),
    creates1: r('ours:create:1'), stats16: r('ours:stat:16'), stats1: r('ours:stat:1'), readdirs16: r('ours:readdir:16'), renames16: r('ours:rename:16'), unlinks16: r('ours:unlink:16'),
    localStats16: r('local:stat:16'), localRenames16: r('local:rename:16'), localUnlinks16: r('local:unlink:16'),
  });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`bench/meta: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  },
);
