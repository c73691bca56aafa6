// bench/dns: dnsperf against containerdns and against bind9 in one run, same zone, same query
// file, same duration, same thread count, on loopback. Question: how many cluster-zone A
// queries per second does containerdns answer with session persistence on, relative to bind9?
//
// Bound expected from first principles: on 2 cores shared with dnsperf, each server is limited
// by per-packet cost. The kernel part (recvmsg + sendmsg on loopback, ~2-4 us) is the same for
// everyone. bind9 adds little on top in C and batches receives (recvmmsg). Node dgram adds a JS
// callback, a Buffer and a send() call per packet (~5-8 us more), so it should land well below
// bind9 (~0.7x). The native batched path (one recvmmsg, one JS call, one sendmmsg per up to 64
// packets) removes most of that, so it should reach bind9 or pass it; the JS work per cached
// query (~1 us: parse, pick, cache copy) is then the remaining difference.
//
//   npm run bench:dns            (BENCH_DNS_SECONDS=10 BENCH_DNS_NAMES=1000 to change the load)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../lib/procs.js';

const root = new URL('../../..', import.meta.url).pathname;
const seconds = Math.max(1, Math.min(120, Number(process.env.BENCH_DNS_SECONDS ?? 10)));
const names = Math.max(1, Math.min(100_000, Number(process.env.BENCH_DNS_NAMES ?? 1000)));
const threads = availableParallelism();
/** Queries dnsperf keeps in flight: enough to saturate, few enough that no socket overflows. */
const outstanding = Math.max(1, Math.min(10_000, Number(process.env.BENCH_DNS_OUTSTANDING ?? 100)));
const zone = 'cluster.local';

interface PerfResult {
  qps: number;
  sent: number;
  completed: number;
  lost: number;
  avgLatencyMs: number;
  maxLatencyMs: number;
  /** Server CPU (user + system, all processes and threads) per completed query. */
  cpuUsPerQuery: number;
}

/** utime + stime, in clock ticks, of the processes and every thread of each. */
function cpuTicks(pids: number[]): number {
  let n = 0;
  for (const pid of pids) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      try {
        // Fields after the command name: state is [0], utime [11], stime [12].
        const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        n += Number(f[11]) + Number(f[12]);
      } catch {
        // thread ended
      }
    }
  }
  return n;
}

/** The process and its direct children (cluster workers). */
function processTree(pid: number): number[] {
  const kids = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.split('\n').filter((x) => x !== '').map(Number);
  return [pid, ...kids];
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function ensureTools(): void {
  if (have('dnsperf') && (have('named') || existsSync('/usr/sbin/named'))) return;
  console.error('bench:dns: installing dnsperf and bind9 (apt-get)');
  spawnSync('apt-get', ['update'], { stdio: 'inherit' });
  const r = spawnSync('apt-get', ['install', '-y', 'dnsperf', 'bind9'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) throw new Error('bench:dns: cannot install dnsperf and bind9');
}


/** Resolves when the server answers an A query on UDP (bounded: 15 s). */
async function waitForDns(port: number, name: string): Promise<void> {
  const q = Buffer.from('abcd01000001000000000000', 'hex');
  const labels = Buffer.concat([...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0, 0, 1, 0, 1])]);
  const pkt = Buffer.concat([q, labels]);
  for (let i = 0; i < 150; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createSocket('udp4');
      const t = setTimeout(() => {
        s.close();
        resolve(false);
      }, 100);
      s.on('message', () => {
        clearTimeout(t);
        s.close();
        resolve(true);
      });
      s.on('error', () => undefined);
      s.send(pkt, port, '127.0.0.1');
    });
    if (ok) return;
  }
  throw new Error(`bench:dns: nothing answers on 127.0.0.1:${port}`);
}

/** Segments of one server: QPS and average latency weighted by completed queries. */
function combine(rs: PerfResult[]): PerfResult {
  const completed = rs.reduce((n, r) => n + r.completed, 0);
  return {
    qps: rs.reduce((n, r) => n + r.qps, 0) / rs.length,
    sent: rs.reduce((n, r) => n + r.sent, 0),
    completed,
    lost: rs.reduce((n, r) => n + r.lost, 0),
    avgLatencyMs: rs.reduce((n, r) => n + r.avgLatencyMs * r.completed, 0) / Math.max(1, completed),
    maxLatencyMs: Math.max(...rs.map((r) => r.maxLatencyMs)),
    cpuUsPerQuery: rs.reduce((n, r) => n + r.cpuUsPerQuery * r.completed, 0) / Math.max(1, completed),
  };
}

function runDnsperf(port: number, queryFile: string, secs: number, serverPids: number[]): PerfResult {
  const tick0 = cpuTicks(serverPids);
  const r = spawnSync('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', queryFile, '-l', String(secs), '-T', String(threads), '-c', String(threads * 2), '-q', String(outstanding), '-t', '2'], {
    encoding: 'utf8',
    timeout: (secs + 30) * 1000,
  });
  const out = `${r.stdout}\n${r.stderr}`;
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const res: PerfResult = {
    sent: num(/Queries sent:\s+(\d+)/),
    completed: num(/Queries completed:\s+(\d+)/),
    lost: num(/Queries lost:\s+(\d+)/),
    qps: num(/Queries per second:\s+([\d.]+)/),
    avgLatencyMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
    maxLatencyMs: num(/Average Latency \(s\):.*max ([\d.]+)/) * 1000,
    cpuUsPerQuery: 0,
  };
  const hz = 100; // USER_HZ on Linux
  res.cpuUsPerQuery = ((cpuTicks(serverPids) - tick0) / hz) * 1e6 / Math.max(1, res.completed);
  if (!Number.isFinite(res.qps)) throw new Error(`bench:dns: cannot parse dnsperf output:\n${out}`);
  return res;
}

function stop(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    const t = setTimeout(() => p.kill('SIGKILL'), 8000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

async function main(): Promise<void> {
  ensureTools();
  const dir = mkdtempSync(join(tmpdir(), 'bench-dns-'));
  const children: ChildProcess[] = [];
  try {
    // The same data for both: `names` services with 3 IPs each (so picking matters).
    const recLines = ['$TTL 30'];
    const zoneLines = [`$TTL 30`, `@ IN SOA ns.${zone}. hostmaster.${zone}. 1 3600 600 86400 30`, `@ IN NS ns.${zone}.`, `ns IN A 127.0.0.1`];
    const queries: string[] = [];
    for (let i = 0; i < names; i++) {
      const n = `svc${i}.default.svc.${zone}`;
      for (let k = 1; k <= 3; k++) {
        const ip = `10.${(i >> 8) & 255}.${i & 255}.${k}`;
        recLines.push(`${n}. A ${ip}`);
        zoneLines.push(`${n}. IN A ${ip}`);
      }
      queries.push(`${n} A`);
    }
    recLines.push(`ns.${zone}. A 127.0.0.1`);
    writeFileSync(join(dir, 'records.txt'), recLines.join('\n') + '\n');
    writeFileSync(join(dir, 'cluster.zone'), zoneLines.join('\n') + '\n');
    // Repeat the names in a shuffled order so neither server sees a trivially sequential stream.
    const qs: string[] = [];
    for (let r = 0; r < 10; r++) for (const q of queries) qs.push(q);
    for (let i = qs.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [qs[i], qs[j]] = [qs[j]!, qs[i]!];
    }
    const queryFile = join(dir, 'queries.txt');
    writeFileSync(queryFile, qs.join('\n') + '\n');

    // Both servers run side by side (the idle one costs nothing) and dnsperf alternates between
    // them in an ABBA order of half-length segments, so background load that drifts during the
    // run (this machine is shared) falls on both sides alike.
    // Two containerdns configurations: batched native UDP I/O (the headline) and Node dgram.
    const pidOf: Record<'ours' | 'dgram' | 'bind', number[]> = { ours: [], dgram: [], bind: [] };
    const startOurs = async (udpIo: 'native' | 'node'): Promise<number> => {
      const port = await freePort();
      const p = spawn(process.execPath, [join(root, 'dist/cmd/containerdns.js'), 'serve', '--listen', `127.0.0.1:${port}`, '--zones', zone, '--records', join(dir, 'records.txt'),
        '--workers', String(threads), '--pick-mode', 'sticky', '--rate-limit', '0', '--no-forward', '--admin', '127.0.0.1:0', '--log-level', 'warn', '--udp-io', udpIo], { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(p);
      await waitForDns(port, `svc0.default.svc.${zone}`);
      pidOf[udpIo === 'native' ? 'ours' : 'dgram'] = processTree(p.pid!);
      return port;
    };
    // Build the addon once up front so workers do not race to compile it.
    const { buildUdpBatch } = await import('../../lib/dns/native/udpbatch.js');
    const built = buildUdpBatch();
    if (!built.ok) console.error(`bench:dns: native UDP unavailable (${built.error}); both containerdns rows use dgram`);
    const nativePort = await startOurs('native');
    const dgramPort = await startOurs('node');

    const bindPort = await freePort();
    writeFileSync(join(dir, 'named.conf'), `options {
  directory "${dir}";
  pid-file "${dir}/named.pid";
  listen-on port ${bindPort} { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  allow-query { any; };
  dnssec-validation no;
  querylog no;
};
zone "${zone}" { type primary; file "${dir}/cluster.zone"; };
`);
    const named = spawn(existsSync('/usr/sbin/named') ? '/usr/sbin/named' : 'named', ['-g', '-n', String(threads), '-c', join(dir, 'named.conf'), '-4'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let namedLog = '';
    named.stderr?.on('data', (d: Buffer) => {
      if (namedLog.length < 100_000) namedLog += d.toString();
    });
    children.push(named);
    try {
      await waitForDns(bindPort, `svc0.default.svc.${zone}`);
    } catch (e) {
      console.error(namedLog);
      throw e;
    }
    const half = Math.max(1, Math.round(seconds / 2));
    const segs: { who: 'ours' | 'dgram' | 'bind'; r: PerfResult }[] = [];
    const label = { ours: `containerdns native UDP (${threads} workers, sticky)`, dgram: `containerdns dgram (${threads} workers, sticky)`, bind: `bind9 (named -n ${threads})` };
    const portOf = { ours: nativePort, dgram: dgramPort, bind: bindPort };
    for (const who of ['ours', 'bind', 'dgram', 'dgram', 'bind', 'ours'] as const) {
      console.error(`bench:dns: ${label[who]} for ${half}s ...`);
      if (who === 'bind') pidOf.bind = [named.pid!];
      segs.push({ who, r: runDnsperf(portOf[who], queryFile, half, pidOf[who]) });
    }
    for (const c of children) await stop(c);
    const oursRes = combine(segs.filter((s) => s.who === 'ours').map((s) => s.r));
    const dgramRes = combine(segs.filter((s) => s.who === 'dgram').map((s) => s.r));
    const bindRes = combine(segs.filter((s) => s.who === 'bind').map((s) => s.r));

    const ratio = Math.round((oursRes.qps / bindRes.qps) * 100) / 100;
    const row = (who: string, r: PerfResult): string =>
      `| ${who} | ${Math.round(r.qps)} | ${r.avgLatencyMs.toFixed(3)} | ${r.maxLatencyMs.toFixed(3)} | ${r.lost} / ${r.sent} | ${r.cpuUsPerQuery.toFixed(1)} |`;
    const table = [
      `| server | QPS | avg latency ms | max latency ms | lost / sent | server CPU us/query |`,
      `|---|---|---|---|---|---|`,
      row(`containerdns, native batched UDP (${threads} workers, sticky)${built.ok ? '' : ' [addon unavailable: dgram]'}`, oursRes),
      row(`containerdns, Node dgram (${threads} workers, sticky)`, dgramRes),
      row(`bind9 ${bindVersion()} (-n ${threads})`, bindRes),
    ].join('\n');
    console.log(table);
    const dgramRatio = Math.round((dgramRes.qps / bindRes.qps) * 100) / 100;
    console.log(`ratio containerdns/bind9 = ${ratio} (native UDP), ${dgramRatio} (dgram)`);
    const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim();
    // BENCH_DNS_RESULTS points a dry run elsewhere; the default is the shared results file.
    const resultsPath = process.env.BENCH_DNS_RESULTS ?? join(root, 'bench/RESULTS.md');
    const header = existsSync(resultsPath) && readFileSync(resultsPath, 'utf8').length > 0 ? '' : '# Benchmark results\n';
    appendFileSync(resultsPath, `${header}\n## dns — ${new Date().toISOString()} — commit ${commit}\n\ndnsperf on loopback, ${seconds}s each (ABBA segments of ${Math.max(1, Math.round(seconds / 2))}s), ${threads} threads, ${outstanding} outstanding, ${names} names x 3 A records, cluster-zone A queries, session persistence on. Ratio (QPS) ${ratio} with native batched UDP, ${dgramRatio} with Node dgram. dnsperf shares the 2 cores, so QPS also depends on how much CPU each server leaves it; server CPU per query is the steadier number on this shared machine.\n\n${table}\n`);
    console.log(JSON.stringify({
      bench: 'dns', metric: 'qps', ours: Math.round(oursRes.qps), peer: 'bind9', peerValue: Math.round(bindRes.qps), ratio,
      avgLatencyMs: round3(oursRes.avgLatencyMs), peerAvgLatencyMs: round3(bindRes.avgLatencyMs), maxLatencyMs: round3(oursRes.maxLatencyMs),
      peerMaxLatencyMs: round3(bindRes.maxLatencyMs), lost: oursRes.lost, peerLost: bindRes.lost, dgramQps: Math.round(dgramRes.qps), dgramRatio,
      cpuUsPerQuery: round3(oursRes.cpuUsPerQuery), peerCpuUsPerQuery: round3(bindRes.cpuUsPerQuery), dgramCpuUsPerQuery: round3(dgramRes.cpuUsPerQuery),
    }));
  } finally {
    for (const c of children) await stop(c);
    rmSync(dir, { recursive: true, force: true });
  }
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function bindVersion(): string {
  const r = spawnSync(existsSync('/usr/sbin/named') ? '/usr/sbin/named' : 'named', ['-v'], { encoding: 'utf8' });
  return (r.stdout ?? '').trim().split(/\s+/)[1] ?? '';
}

await main();
