// bench/fuse: fio and metadata ops on each target in one run: the local disk (no FUSE), bindfs
// over a local directory (a C FUSE passthrough: the FUSE ceiling on this machine), and our FUSE
// adapter over the same kind of directory (PassthroughVolume). ContainerFS's own mount is added
// as a target once lib/fs lands (issue 6); until then this measures the adapter's overhead.
//
// Bound from first principles: every FUSE request is a kernel round trip plus, for us, a hop
// from fuse-native's thread into the JS event loop; with 128 KiB writes that overhead is per
// 128 KiB, so sequential throughput can approach bindfs; small random I/O and metadata ops pay
// it on every call, so they are where a JS filesystem loses most.
//
//   npm run bench:fuse [-- --size-mb 256 --seconds 8]
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { appendResults, markdownTable, printResultLine, round } from '../lib/results.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const sizeMb = arg('size-mb', 256);
const seconds = arg('seconds', 8);
const here = dirname(fileURLToPath(import.meta.url));

function ensureTools(): void {
  const missing = ['fio', 'bindfs'].filter((c) => spawnSync('which', [c]).status !== 0);
  if (missing.length > 0) {
    console.error(`bench/fuse: installing ${missing.join(' ')}`);
    execFileSync('bash', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing.join(' ')}`], { stdio: 'inherit' });
  }
}

const mounted = (p: string): boolean => readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === p);
async function waitMounted(p: string): Promise<void> {
  for (let i = 0; i < 300 && !mounted(p); i++) await new Promise((r) => setTimeout(r, 20));
  if (!mounted(p)) throw new Error(`${p} did not mount`);
}

interface Target {
  name: string;
  dir: string;
  stop: () => Promise<void>;
}

function fio(dir: string, job: string, extra: string[]): { bwMiBs: number; iops: number } {
  const out = execFileSync('fio', [
    `--name=${job}`, `--directory=${dir}`, '--ioengine=psync', '--invalidate=1', '--output-format=json', '--group_reporting', ...extra,
  ], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const j = JSON.parse(out) as { jobs: { read: { bw: number; iops: number }; write: { bw: number; iops: number } }[] };
  const r = j.jobs[0]!;
  const side = r.write.bw > r.read.bw ? r.write : r.read;
  return { bwMiBs: side.bw / 1024, iops: side.iops };
}

function measure(t: Target): Record<string, number> {
  const size = `${sizeMb}M`;
  const seqW = fio(t.dir, 'seqwrite', ['--rw=write', '--bs=1M', `--size=${size}`, '--end_fsync=1']);
  const seqR = fio(t.dir, 'seqwrite', ['--rw=read', '--bs=1M', `--size=${size}`]);
  const randR = fio(t.dir, 'rand', ['--rw=randread', '--bs=4k', '--size=64M', `--runtime=${seconds}`, '--time_based']);
  const randW = fio(t.dir, 'rand', ['--rw=randwrite', '--bs=4k', '--size=64M', `--runtime=${seconds}`, '--time_based']);
  const meta = JSON.parse(execFileSync(process.execPath, [join(here, 'metaops.js'), join(t.dir, 'meta'), '2000'], { encoding: 'utf8' })) as { create: number; stat: number; unlink: number };
  return { seqWriteMiBs: seqW.bwMiBs, seqReadMiBs: seqR.bwMiBs, randReadIops: randR.iops, randWriteIops: randW.iops, createPerS: meta.create, statPerS: meta.stat, unlinkPerS: meta.unlink };
}

async function main(): Promise<void> {
  ensureTools();
  const base = mkdtempSync(join(tmpdir(), 'bench-fuse-'));
  const children: ChildProcess[] = [];
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
  });
  const targets: Target[] = [];
  const local = join(base, 'local');
  mkdirSync(local);
  targets.push({ name: 'local disk', dir: local, stop: async () => undefined });

  const bBack = join(base, 'bindfs-backing');
  const bMnt = join(base, 'bindfs-mnt');
  mkdirSync(bBack);
  mkdirSync(bMnt);
  execFileSync('bindfs', ['--no-allow-other', bBack, bMnt]);
  await waitMounted(bMnt);
  targets.push({ name: 'bindfs', dir: bMnt, stop: async () => void spawnSync('fusermount', ['-u', bMnt]) });

  const pBack = join(base, 'pt-backing');
  const pMnt = join(base, 'pt-mnt');
  mkdirSync(pBack);
  mkdirSync(pMnt);
  const pt = spawn(process.execPath, [join(here, 'passthrough-mount.js'), pBack, pMnt], { stdio: 'ignore' });
  children.push(pt);
  await waitMounted(pMnt);
  targets.push({
    name: 'fuse/ adapter (passthrough)',
    dir: pMnt,
    stop: async () => {
      pt.kill('SIGTERM');
      await new Promise((r) => pt.once('exit', r));
    },
  });

  const results = new Map<string, Record<string, number>>();
  for (const t of targets) {
    results.set(t.name, measure(t));
    await t.stop();
  }
  const bind = results.get('bindfs')!;
  const rows = [...results.entries()].map(([name, r]) => ({
    target: name,
    'seq write MiB/s': round(r.seqWriteMiBs!, 1),
    'seq read MiB/s': round(r.seqReadMiBs!, 1),
    '4k randread IOPS': Math.round(r.randReadIops!),
    '4k randwrite IOPS': Math.round(r.randWriteIops!),
    'creates/s': Math.round(r.createPerS!),
    'stats/s': Math.round(r.statPerS!),
    'unlinks/s': Math.round(r.unlinkPerS!),
  }));
  const table = markdownTable(rows);
  console.log(table);
  const ours = results.get('fuse/ adapter (passthrough)')!;
  appendResults(
    'fuse: adapter vs bindfs vs local disk',
    `fio psync, ${sizeMb} MiB sequential (1 MiB blocks, fsync at end), 4 KiB random for ${seconds}s over 64 MiB, page cache invalidated before each job; metadata ops from one process. ContainerFS's own mount is not in this table yet (lib/fs is issue 6): this row measures the FUSE adapter over a local directory.\n\n${table}`,
  );
  printResultLine({
    bench: 'fuse', metric: 'seq_write_mibs', ours: round(ours.seqWriteMiBs!, 1), peer: 'bindfs', peerValue: round(bind.seqWriteMiBs!, 1), ratio: round(ours.seqWriteMiBs! / bind.seqWriteMiBs!),
    seqReadRatio: round(ours.seqReadMiBs! / bind.seqReadMiBs!), createRatio: round(ours.createPerS! / bind.createPerS!), target: 'passthrough adapter (not yet ContainerFS)',
  });
}

await main();
