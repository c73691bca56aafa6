// bench/blockgroup: 3-replica block-group sequential write (durable) and read throughput on
// loopback, beside fio on the same disk as the physical bound.
//
// Bound from first principles: the three replicas share one disk, so every acknowledged byte is
// written and fdatasync'ed three times; the durable-write bound is one third of what fio gets
// for a sequential write of one append's size with an fdatasync after each write (the same
// durability as one acknowledged append per replica), through the page cache or with O_DIRECT,
// whichever is faster here. Appends are 4 MiB, 4 in flight, by default: what lib/fs (the mount)
// sends for a sequential writer (flushBytes and maxAppendBytes 4 MiB, 16 MiB of write-back).
// Target: >= 80% of that third. Reads come from one replica, so the bound is fio's sequential
// read of a file of the same size, again the faster way (target >= 0.8x).
// On 2 cores the CPU matters too: every byte crosses three loopback hops, is written at each
// replica (O_DIRECT for the aligned middle of large writes) and checksummed there (the SSE4.2
// crc32c addon, ~20 GB/s, when it builds), so the CPU ms per MiB printed below is part of the
// ceiling.
//
// Datanodes run with --drop-behind-writes, as containerstack up starts them: three replicas
// share this machine's page cache, and on this VM growing it into untouched memory costs ~10x.
//
//   npm run bench:blockgroup [-- --mib 1024 --seconds 120 --rounds 4 --concurrency 4 --append-kib 4096 --no-record]
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { BlockGroupClient, DATA_PATH_NODE_FLAGS, type ExtentKey } from '../../lib/blockgroup/index.js';
import { retainFreedMemory } from '../../lib/common/index.js';
import { appendResults, markdownTable, percentile, printResultLine, round } from '../lib/results.js';
import { freePort } from '../lib/procs.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
// 1 GiB over 4 rounds: a round of 64 MiB was only 16 appends of 4 MiB, mostly ramp-up and drain.
const totalMiB = arg('mib', 1024);
const seconds = arg('seconds', 120);
const concurrency = arg('concurrency', 4);
const appendBytes = arg('append-kib', 4096) * 1024;
/** fio writes and reads in units of one append: the same durability per write as ours. */
const fioBs = `--bs=${appendBytes / 1024}k`;
const MiB = 1024 * 1024;

// This process is the client (BlockGroupClient): run it with the flags data-path processes are
// launched with (DATA_PATH_NODE_FLAGS, V8 heap sizing), re-executing itself if started without.
if (!DATA_PATH_NODE_FLAGS.every((f) => process.execArgv.includes(f))) {
  const r = spawnSync(process.execPath, [...DATA_PATH_NODE_FLAGS, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerfs.js');
// The same filesystem as the datanodes' data dirs: os.tmpdir() unless BENCH_DIR says otherwise.
const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), 'bench-blockgroup-'));
const children: ChildProcess[] = [];

function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
// SIGTERM too: without an exit, 'exit' listeners (cleanup above) do not run.
process.on('SIGTERM', () => process.exit(143));


function dropCaches(): boolean {
  try {
    execFileSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

function ensureFio(): boolean {
  try {
    execFileSync('fio', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    try {
      execFileSync('apt-get', ['update'], { stdio: 'ignore' });
      execFileSync('apt-get', ['install', '-y', 'fio'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  }
}

function fio(args: string[]): { mibps: number; p50Ms: number; p99Ms: number } {
  const out = execFileSync('fio', [...args, '--output-format=json'], { encoding: 'utf8', maxBuffer: 64 * MiB });
  const job = (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { read: FioSide; write: FioSide }[] }).jobs[0];
  if (!job) throw new Error('fio: no job in output');
  const side = job.write.bw_bytes > 0 ? job.write : job.read;
  const pct = side.clat_ns?.percentile ?? {};
  return { mibps: side.bw_bytes / MiB, p50Ms: (pct['50.000000'] ?? 0) / 1e6, p99Ms: (pct['99.000000'] ?? 0) / 1e6 };
}
interface FioSide {
  bw_bytes: number;
  clat_ns?: { percentile?: Record<string, number> };
}

async function startNode(i: number): Promise<string> {
  const port = await freePort();
  const admin = await freePort();
  const dir = join(root, `node${i}`);
  // Launched as containerstack up launches them (DATA_PATH_NODE_FLAGS: V8 heap sizing).
  const child = spawn(process.execPath, [...DATA_PATH_NODE_FLAGS, bin, 'data', '--listen', `127.0.0.1:${port}`, '--data-dir', dir, '--admin-listen', `127.0.0.1:${admin}`, '--log-level', 'warn', '--extent-max', '1GiB', '--drop-behind-writes'], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  for (let t = 0; t < 200; t++) {
    try {
      if ((await fetch(`http://127.0.0.1:${admin}/ready`)).ok) return `127.0.0.1:${port}`;
    } catch {
      // starting
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('datanode did not start');
}

/** CPU ms used so far, as [user, system] per process: this client first, then each datanode. */
function cpuSplit(): Array<[number, number]> {
  const out: Array<[number, number]> = [[process.cpuUsage().user / 1000, process.cpuUsage().system / 1000]];
  for (const c of children) {
    try {
      const st = readFileSync(`/proc/${c.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      out.push([Number(st[11]) * 10, Number(st[12]) * 10]); // clock ticks of 10 ms
    } catch {
      out.push([0, 0]); // gone
    }
  }
  return out;
}
/** CPU ms (user + system) used so far by the datanodes and this process. */
const cpuMs = (): number => cpuSplit().reduce((a, [u, s]) => a + u + s, 0);

/**
 * CPU ms used so far by the datanodes (every thread's on-CPU time from schedstat, nanosecond
 * precision: a read round is too short for /proc/PID/stat's 10 ms ticks) and this process.
 */
function cpuMsFine(): number {
  let ms = (process.cpuUsage().user + process.cpuUsage().system) / 1000;
  for (const c of children) {
    try {
      for (const t of readdirSync(`/proc/${c.pid}/task`)) ms += Number(readFileSync(`/proc/${c.pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
    } catch {
      // gone
    }
  }
  return ms;
}

interface Side {
  bytes: number;
  seconds: number;
  lat: number[];
}
const side = (): Side => ({ bytes: 0, seconds: 0, lat: [] });
const mibps = (s: Side): number => s.bytes / MiB / s.seconds;

async function main(): Promise<void> {
  // As the datanodes (containerfs data) and the mount do by default.
  retainFreedMemory();
  const haveFio = ensureFio();
  const fioDir = join(root, 'fio');
  execFileSync('mkdir', ['-p', fioDir]);
  const addrs = [await startNode(0), await startNode(1), await startNode(2)];
  const client = new BlockGroupClient({ deadlineMs: 30_000 });
  const ref = await client.createGroup({ groupId: 1, replicas: addrs });
  client.addGroup(ref);
  const chunk = randomBytes(appendBytes);

  // Rounds alternate fio and ours, so load from whatever else runs on this shared machine
  // drifts over both alike; each side's rate is its total bytes over its total time.
  const rounds = Math.max(1, arg('rounds', 4));
  const perRoundBytes = Math.floor((totalMiB * MiB) / rounds / appendBytes) * appendBytes;
  // fio both through the page cache and with O_DIRECT (the datanodes write and read large
  // extents O_DIRECT): the bound is whichever is faster, so ours is never measured against the
  // slower way of using this disk.
  const fioW = side();
  const fioWD = side();
  const fioR = side();
  const fioRD = side();
  const oursW = side();
  const oursR = side();
  let cold = true;
  let mismatches = 0;
  let writeCpuMs = 0;
  const writeSplit: Array<[number, number]> = [];
  let readCpuMs = 0;
  const load0 = loadavg()[0] ?? 0;
  const deadline = performance.now() + seconds * 1000;
  for (let r = 0; r < rounds && performance.now() < deadline; r++) {
    const fioFile = `round${r}`;
    const common = ['--name=seq', `--directory=${fioDir}`, `--filename=${fioFile}`, fioBs, `--size=${perRoundBytes / MiB}M`, '--ioengine=psync'];
    if (haveFio) {
      const w = fio([...common, '--rw=write', '--fdatasync=1']);
      fioW.bytes += perRoundBytes;
      fioW.seconds += perRoundBytes / MiB / w.mibps;
      fioW.lat.push(w.p50Ms);
      const wd = fio([...common, `--filename=${fioFile}.direct`, '--rw=write', '--fdatasync=1', '--direct=1']);
      fioWD.bytes += perRoundBytes;
      fioWD.seconds += perRoundBytes / MiB / wd.mibps;
      rmSync(join(fioDir, `${fioFile}.direct`), { force: true });
    }
    const keys: ExtentKey[] = [];
    let issued = 0;
    const split0 = cpuSplit();
    const cpu0 = cpuMs();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (issued + appendBytes <= perRoundBytes) {
          issued += appendBytes;
          const s = performance.now();
          keys.push(await client.append(chunk));
          oursW.lat.push(performance.now() - s);
        }
      }),
    );
    oursW.seconds += (performance.now() - t0) / 1000;
    writeCpuMs += cpuMs() - cpu0;
    cpuSplit().forEach(([u, s], i) => {
      const acc = (writeSplit[i] ??= [0, 0]);
      acc[0] += u - (split0[i]?.[0] ?? 0);
      acc[1] += s - (split0[i]?.[1] ?? 0);
    });
    oursW.bytes += keys.length * appendBytes;

    if (haveFio) {
      cold = dropCaches() && cold;
      const rd = fio([...common, '--rw=read']);
      fioR.bytes += perRoundBytes;
      fioR.seconds += perRoundBytes / MiB / rd.mibps;
      const rdd = fio([...common, '--rw=read', '--direct=1']);
      fioRD.bytes += perRoundBytes;
      fioRD.seconds += perRoundBytes / MiB / rdd.mibps;
      rmSync(join(fioDir, fioFile), { force: true });
    }
    cold = dropCaches() && cold;
    let next = 0;
    const rcpu0 = cpuMsFine();
    const r0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < keys.length) {
          const k = keys[next++] as ExtentKey;
          const s = performance.now();
          // Pooled, as a reader that copies or inspects what it reads would (readPooled says why).
          const got = await client.readPooled(k);
          oursR.lat.push(performance.now() - s);
          oursR.bytes += got.data.length;
          if (got.data.length !== appendBytes) mismatches++;
          got.release();
        }
      }),
    );
    oursR.seconds += (performance.now() - r0) / 1000;
    readCpuMs += cpuMsFine() - rcpu0;
  }
  await client.close();
  for (const c of children) c.kill('SIGTERM');
  const ourWrite = mibps(oursW);
  const ourRead = mibps(oursR);
  const fioWriteBuffered = mibps(fioW);
  const fioWriteDirect = mibps(fioWD);
  const fioReadBuffered = mibps(fioR);
  const fioReadDirect = mibps(fioRD);
  const fioWrite = { mibps: Math.max(fioWriteBuffered, fioWriteDirect), p50Ms: percentile(fioW.lat, 50), p99Ms: NaN };
  const fioRead = { mibps: Math.max(fioReadBuffered, fioReadDirect), p50Ms: NaN, p99Ms: NaN };
  const lat = oursW.lat;
  const readLat = oursR.lat;
  const writtenBytes = oursW.bytes;
  const ourCold = cold;
  const bound = fioWrite.mibps / 3;
  const writeRatio = ourWrite / bound;
  const readRatio = ourRead / fioRead.mibps;
  const rows = [
    { what: 'durable seq write, 3 replicas (ours)', 'MiB/s': round(ourWrite, 1), 'p50 ms': round(percentile(lat, 50), 2), 'p99 ms': round(percentile(lat, 99), 2), note: `${concurrency} x ${appendBytes / 1024} KiB appends in flight, ${round(writtenBytes / MiB, 0)} MiB` },
    { what: `fio seq write ${appendBytes / 1024}K + fdatasync each (local)`, 'MiB/s': round(fioWrite.mibps, 1), 'p50 ms': '', 'p99 ms': '', note: `physical bound for one copy: the faster of page cache ${round(fioWriteBuffered, 1)} and O_DIRECT ${round(fioWriteDirect, 1)}; ${rounds} rounds interleaved with ours` },
    { what: 'bound for 3 replicas on one disk (fio / 3)', 'MiB/s': round(bound, 1), 'p50 ms': '', 'p99 ms': '', note: `ratio ours/bound = ${round(writeRatio, 2)} (target >= 0.8)` },
    { what: 'seq read, verified (ours)', 'MiB/s': round(ourRead, 1), 'p50 ms': round(percentile(readLat, 50), 2), 'p99 ms': round(percentile(readLat, 99), 2), note: `page cache ${ourCold ? 'dropped' : 'warm'}; ${mismatches} short reads` },
    { what: `fio seq read ${appendBytes / 1024}K (local)`, 'MiB/s': round(fioRead.mibps, 1), 'p50 ms': '', 'p99 ms': '', note: `the faster of page cache ${round(fioReadBuffered, 1)} (${cold ? 'dropped' : 'warm'}) and O_DIRECT ${round(fioReadDirect, 1)}; ratio ours/fio = ${round(readRatio, 2)} (target >= 0.8)` },
  ];
  const cpuPerMiB = writeCpuMs / (writtenBytes / MiB);
  const readCpuPerMiB = readCpuMs / (oursR.bytes / MiB);
  const mibW = writtenBytes / MiB;
  const who = (i: number): string => (i === 0 ? 'client' : i === 1 ? 'primary' : `backup ${i - 1}`);
  const splitText = writeSplit.map(([u, s], i) => `${who(i)} ${round(u / mibW, 2)} + ${round(s / mibW, 2)}`).join(', ');
  const notes = `Durable writes cost ${round(cpuPerMiB, 1)} ms of CPU per MiB across the three datanodes and the client (user + system per MiB: ${splitText}; 2 cores here cap that at ~${round(2000 / cpuPerMiB, 0)} MiB/s with nothing else running); verified reads ${round(readCpuPerMiB, 2)} ms per MiB (cap ~${round(2000 / readCpuPerMiB, 0)} MiB/s). Load average ${round(load0, 1)} at start, ${round(loadavg()[0] ?? 0, 1)} at end (other work shares this machine). fio latency columns are left blank: its completion latency excludes the fdatasync. Datanodes and this client run with ${DATA_PATH_NODE_FLAGS.join(' ')} (as containerstack up starts datanodes and the mount).`;
  const table = markdownTable(rows);
  console.log(table);
  console.log(notes);
  appendResults('blockgroup (3 replicas on loopback, one disk)', `${table}\n\n${notes}\n${haveFio ? '' : 'fio unavailable: no bound measured.\n'}`);
  printResultLine({
    bench: 'blockgroup',
    metric: 'durable_write_MiBps',
    ours: round(ourWrite, 1),
    peer: 'fio/3',
    peerValue: round(bound, 1),
    ratio: round(writeRatio, 3),
    p50Ms: round(percentile(lat, 50), 2),
    p99Ms: round(percentile(lat, 99), 2),
    readMiBps: round(ourRead, 1),
    fioReadMiBps: round(fioRead.mibps, 1),
    readRatio: round(readRatio, 3),
    fioWriteMiBps: round(fioWrite.mibps, 1),
    fioWriteBufferedMiBps: round(fioWriteBuffered, 1),
    fioWriteDirectMiBps: round(fioWriteDirect, 1),
    fioReadBufferedMiBps: round(fioReadBuffered, 1),
    fioReadDirectMiBps: round(fioReadDirect, 1),
    cpuMsPerMiB: round(cpuPerMiB, 1),
    readCpuMsPerMiB: round(readCpuPerMiB, 2),
  });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
