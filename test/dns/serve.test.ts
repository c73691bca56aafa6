// `containerdns serve` as a real daemon (child processes, cluster workers): help, admin
// endpoints, SIGHUP reload, clean SIGTERM, and session persistence across a restart and between
// two server processes serving the same records and health.
//
// What the two-process test proves: two independent daemons (each with 2 workers) given the
// same store content answer every client with the same IP, and move it to the same next IP when
// that IP goes down, with no shared state between them: rendezvous hashing alone agrees. It
// does not exercise a shared live store (etcd); the records file + SIGHUP stands in for it.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { digShort, freePort, sleep } from './helpers.js';
import { rendezvousOrder } from '../../lib/dns/picker.js';
import { killAndWait } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

// Real processes start slowly on a loaded machine; the runner's own per-file limit still applies.
t.setTimeout(300_000);

const root = new URL('../../..', import.meta.url).pathname;
const bin = join(root, 'dist/cmd/containerdns.js');
const dir = tempDirFor(t, 'containerdns-serve-');
const children = new Set<ChildProcess>();
// Runs before dir is removed (tap: last in, first out).
t.teardown(() => killAndWait(children));

const IPS = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'];
function writeRecords(file: string, down: string[] = [], extra: object[] = []): void {
  writeFileSync(file, JSON.stringify({
    records: [...IPS.map((ip) => ({ name: 'web.default.svc.cluster.local', type: 'A', value: ip })), ...extra],
    health: down.map((ip) => ({ ip, status: 'down' })),
  }));
}

interface Daemon {
  proc: ChildProcess;
  port: number;
  admin: number;
  log: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

async function startDaemon(records: string, port?: number): Promise<Daemon> {
  const p = port ?? (await freePort());
  const admin = await freePort();
  const proc = spawn(process.execPath, [bin, 'serve', '--listen', `127.0.0.1:${p}`, '--records', records, '--workers', '2', '--admin', `127.0.0.1:${admin}`,
    '--no-forward', '--rate-limit', '0', '--pick-mode', 'sticky'], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => {
    if (log.length < 200_000) log += d.toString();
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => {
    children.delete(proc);
    r(code);
  }));
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    if (proc.exitCode !== null) break;
    await sleep(100);
  }
  return {
    proc, port: p, admin, log: () => log,
    stop: async (signal = 'SIGTERM') => {
      proc.kill(signal);
      return Promise.race([exited, sleep(10_000).then(() => {
        proc.kill('SIGKILL');
        return -1;
      })]);
    },
  };
}

const clients = Array.from({ length: 12 }, (_, i) => `127.0.0.${20 + i}`);
async function answers(port: number): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const c of clients) {
    const a = await digShort(port, ['-b', c, 'web.default.svc.cluster.local', 'A']);
    m.set(c, a.join(','));
  }
  return m;
}

t.test('--help explains the daemon and its config', async (t) => {
  const r = spawnSync(process.execPath, [bin, 'serve', '--help'], { encoding: 'utf8' });
  t.equal(r.status, 0);
  t.match(r.stdout, /--records <file>/);
  t.match(r.stdout, /pickMode\s+string/);
  t.match(r.stdout, /SIGHUP/);
});

t.test('bad config is a clear error and exit 1', async (t) => {
  const r = spawnSync(process.execPath, [bin, 'serve', '--pick-mode', 'bogus', '--workers', '1'], { encoding: 'utf8', timeout: 10_000 });
  t.equal(r.status, 1);
  t.match(r.stderr, /pickMode.*one of all, one, sticky/);
  const f = join(dir, 'bad.txt');
  writeFileSync(f, 'x.cluster.local. A 300.1.1.1\n');
  const r2 = spawnSync(process.execPath, [bin, 'serve', '--records', f, '--workers', '1', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { encoding: 'utf8', timeout: 10_000 });
  t.equal(r2.status, 1);
  t.match(r2.stderr, /bad\.txt: record x\.cluster\.local A/);
});

t.test('daemon with workers: answers, admin endpoints, SIGHUP reload, clean SIGTERM', async (t) => {
  const rec = join(dir, 'reload.json');
  writeRecords(rec);
  const d = await startDaemon(rec);
  t.equal((await digShort(d.port, ['web.default.svc.cluster.local', 'A'])).length, 1, 'sticky: one IP');
  t.same(await digShort(d.port, ['web.default.svc.cluster.local', 'A', '+tcp']).then((a) => a.length), 1, 'TCP through the primary to a worker');
  const health = await fetch(`http://127.0.0.1:${d.admin}/health`).then((r) => r.json() as Promise<{ status: string }>);
  t.equal(health.status, 'ok');
  const metrics = await fetch(`http://127.0.0.1:${d.admin}/metrics`).then((r) => r.text());
  t.match(metrics, /dns_queries_total\{type="A"\} 2/, 'aggregated over workers');
  t.match(metrics, /dns_request_duration_seconds_bucket/);
  writeRecords(rec, [], [{ name: 'added.cluster.local', type: 'A', value: '10.0.9.9' }]);
  d.proc.kill('SIGHUP');
  let got: string[] = [];
  for (let i = 0; i < 50 && got.length === 0; i++) {
    await sleep(100);
    got = await digShort(d.port, ['added.cluster.local', 'A']);
  }
  t.same(got, ['10.0.9.9'], 'records file reloaded on SIGHUP');
  t.equal(await d.stop('SIGTERM'), 0, 'exit 0 on SIGTERM');
  t.match(d.log(), /"msg":"serve: shutting down"/);
  t.match(d.log(), /"level":30/, 'structured JSON logs');
});

t.test('session persistence across a restart', async (t) => {
  const rec = join(dir, 'restart.json');
  writeRecords(rec);
  const d1 = await startDaemon(rec);
  const before = await answers(d1.port);
  t.ok(new Set(before.values()).size > 1, 'clients spread over IPs');
  for (const [c, ip] of before) t.equal(ip, rendezvousOrder(c, IPS)[0], `${c} gets its first IP by hash order`);
  t.equal(await d1.stop(), 0);
  const d2 = await startDaemon(rec, d1.port);
  t.teardown(() => d2.stop());
  t.same(await answers(d2.port), before, 'every client gets the same IP after the restart');
});

t.test('two server processes on the same store content agree, also after an IP goes down', async (t) => {
  const rec = join(dir, 'pair.json');
  writeRecords(rec);
  const a = await startDaemon(rec);
  const b = await startDaemon(rec);
  t.teardown(async () => {
    await a.stop();
    await b.stop();
  });
  const fromA = await answers(a.port);
  t.same(await answers(b.port), fromA, 'replicas agree');
  // Take down the IP the first client holds; both replicas must move it to the same next IP.
  const c0 = clients[0]!;
  const held = fromA.get(c0)!;
  writeRecords(rec, [held]);
  a.proc.kill('SIGHUP');
  b.proc.kill('SIGHUP');
  let movedA = held;
  for (let i = 0; i < 50 && movedA === held; i++) {
    await sleep(100);
    movedA = (await digShort(a.port, ['-b', c0, 'web.default.svc.cluster.local', 'A'])).join(',');
  }
  let movedB = held;
  for (let i = 0; i < 50 && movedB === held; i++) {
    await sleep(100);
    movedB = (await digShort(b.port, ['-b', c0, 'web.default.svc.cluster.local', 'A'])).join(',');
  }
  t.not(movedA, held, 'moved off the down IP');
  t.equal(movedA, movedB, 'both replicas chose the same IP');
  t.equal(movedA, rendezvousOrder(c0, IPS).filter((ip) => ip !== held)[0], 'the next in its hash order');
  const afterA = await answers(a.port);
  const afterB = await answers(b.port);
  t.same(afterA, afterB);
  for (const [c, ip] of fromA) if (ip !== held) t.equal(afterA.get(c), ip, `${c} (not on the down IP) stays`);
});

t.test('control plane through the daemon: REST API writes and prober health reach the workers', async (t) => {
  // A live service on 127.0.0.1 and a dead port on 127.0.0.2 (loopback only).
  const live = createServer((s) => s.destroy());
  await new Promise<void>((r) => live.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => live.close(() => r())));
  const livePort = (live.address() as AddressInfo).port;
  const deadPort = await freePort('127.0.0.2').catch(() => livePort + 1);
  const rec = join(dir, 'cp.json');
  writeFileSync(rec, JSON.stringify({ records: [
    { name: 'svc.cluster.local', type: 'A', value: '127.0.0.1', probePorts: [livePort] },
    { name: 'svc.cluster.local', type: 'A', value: '127.0.0.2', probePorts: [deadPort] },
  ] }));
  const port = await freePort();
  const admin = await freePort();
  const api = await freePort();
  const conf = join(dir, 'cp-config.json');
  writeFileSync(conf, JSON.stringify({
    listen: [`127.0.0.1:${port}`], records: rec, workers: 2, admin: `127.0.0.1:${admin}`, forward: false, rateLimit: 0, pickMode: 'all',
    apiListen: `127.0.0.1:${api}`, apiToken: 'secret-token', probe: true, probeInterval: '200ms', probeTimeout: '200ms',
  }));
  const proc = spawn(process.execPath, [bin, 'serve', '--config', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  let log = '';
  proc.stderr?.on('data', (d: Buffer) => {
    if (log.length < 100_000) log += d.toString();
  });
  t.teardown(() => {
    proc.kill('SIGTERM');
  });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.ok, () => false)) break;
    await sleep(100);
  }
  let ips: string[] = [];
  for (let i = 0; i < 100; i++) {
    ips = (await digShort(port, ['svc.cluster.local', 'A'])).sort();
    if (ips.length === 1) break;
    await sleep(100);
  }
  t.same(ips, ['127.0.0.1'], 'the prober took the dead IP out, in every worker');
  const res = await fetch(`http://127.0.0.1:${api}/api/v1/records`, {
    method: 'POST', headers: { authorization: 'Bearer secret-token', 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'viaapi.cluster.local', type: 'A', value: '10.7.7.7' }),
  });
  t.equal(res.status, 201, await res.text());
  let got: string[] = [];
  for (let i = 0; i < 50 && got.length === 0; i++) {
    got = await digShort(port, ['viaapi.cluster.local', 'A']);
    if (got.length === 0) await sleep(100);
  }
  t.same(got, ['10.7.7.7'], 'API write served');
  t.notMatch(log, /"level":50/, 'no errors logged');
});

t.test('TCP: idle connections are closed by the server', async (t) => {
  const rec = join(dir, 'idle.json');
  writeRecords(rec);
  const port = await freePort();
  const admin = await freePort();
  const conf = join(dir, 'idle-config.json');
  writeFileSync(conf, JSON.stringify({ listen: [`127.0.0.1:${port}`], records: rec, workers: 1, admin: `127.0.0.1:${admin}`, forward: false, tcpIdle: '300ms' }));
  const proc = spawn(process.execPath, [bin, 'serve', '--config', conf], { stdio: 'ignore' });
  children.add(proc);
  t.teardown(() => {
    proc.kill('SIGTERM');
  });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.ok, () => false)) break;
    await sleep(100);
  }
  const closedAfterMs = await new Promise<number>((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    const t0 = Date.now();
    s.on('error', () => undefined);
    s.on('close', () => resolve(Date.now() - t0));
    setTimeout(() => {
      s.destroy();
      resolve(-1);
    }, 5000);
  });
  t.ok(closedAfterMs >= 0, `closed by the server (after ${closedAfterMs}ms)`);
});

t.test('SIGHUP reloads the config file (pick mode)', async (t) => {
  const rec = join(dir, 'hup.json');
  writeRecords(rec);
  const port = await freePort();
  const admin = await freePort();
  const conf = join(dir, 'hup-config.json');
  const write = (pickMode: string): void => writeFileSync(conf, JSON.stringify({ listen: [`127.0.0.1:${port}`], records: rec, workers: 2, admin: `127.0.0.1:${admin}`, forward: false, pickMode }));
  write('sticky');
  const proc = spawn(process.execPath, [bin, 'serve', '--config', conf], { stdio: 'ignore' });
  children.add(proc);
  t.teardown(() => {
    proc.kill('SIGTERM');
  });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.ok, () => false)) break;
    await sleep(100);
  }
  t.equal((await digShort(port, ['web.default.svc.cluster.local', 'A'])).length, 1);
  write('all');
  proc.kill('SIGHUP');
  let n = 0;
  for (let i = 0; i < 50 && n !== 4; i++) {
    await sleep(100);
    n = (await digShort(port, ['web.default.svc.cluster.local', 'A'])).length;
  }
  t.equal(n, 4, 'pick mode all after reload, in the workers');
});

t.test('embedded table store: records file seeds it, API writes survive a restart', async (t) => {
  const rec = join(dir, 'table.json');
  writeRecords(rec);
  const dataDir = join(dir, 'table-data');
  const port = await freePort();
  const start = async (withApi: boolean): Promise<{ proc: ChildProcess; api: number; stop: () => Promise<void> }> => {
    const admin = await freePort();
    const api = await freePort();
    const proc = spawn(process.execPath, [bin, 'serve', '--listen', `127.0.0.1:${port}`, '--store', 'table', '--data-dir', dataDir, '--records', rec, '--workers', '2',
      '--admin', `127.0.0.1:${admin}`, '--no-forward', '--rate-limit', '0', ...(withApi ? ['--api-listen', `127.0.0.1:${api}`, '--api-token', 'tok'] : [])], { stdio: ['ignore', 'ignore', 'inherit'] });
    children.add(proc);
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    for (let i = 0; i < 150; i++) {
      if (await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.ok, () => false)) break;
      if (proc.exitCode !== null) break;
      await sleep(100);
    }
    return { proc, api, stop: async () => {
      proc.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000).then(() => proc.kill('SIGKILL'))]);
    } };
  };
  const first = await start(true);
  const before = await answers(port);
  t.equal(new Set(before.values()).size > 1, true, 'records from the file are served');
  const res = await fetch(`http://127.0.0.1:${first.api}/api/v1/records`, {
    method: 'POST', headers: { authorization: 'Bearer tok', 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'kept.cluster.local', type: 'A', value: '10.8.8.8' }),
  });
  t.equal(res.status, 201);
  let got: string[] = [];
  for (let i = 0; i < 50 && got.length === 0; i++) {
    got = await digShort(port, ['kept.cluster.local', 'A']);
    if (got.length === 0) await sleep(100);
  }
  t.same(got, ['10.8.8.8']);
  await first.stop();
  const second = await start(false);
  t.teardown(() => second.stop());
  t.same(await digShort(port, ['kept.cluster.local', 'A']), ['10.8.8.8'], 'API record persisted in the table across the restart');
  t.same(await answers(port), before, 'and every client keeps its IP');
});
