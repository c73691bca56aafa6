// `containerstack up` (what `npm start` runs) as a real process: it serves health, metrics and
// the RPC endpoint, refuses bad config with a message naming the field, and stops on SIGTERM.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RpcClient, echoService } from '../../lib/rpc/index.js';
import { awaitGone, killAndWait, upDaemonPids } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerstack.js');
// `up` starts seven ContainerFS daemons and a FUSE mount before it says it is up: seconds on a
// loaded 2-core machine, so the waits below allow a minute.

t.test('up: health, metrics, rpc, clean SIGTERM', async (t) => {
  const dir = tempDirFor(t, 'cs-up-');
  const child = spawn(process.execPath, [bin, 'up', '--data-dir', join(dir, 'data'), '--rpc-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  // Before dir goes (tap: last in, first out): up, then the daemons it started (they stop by themselves once up is gone).
  t.teardown(async () => {
    await killAndWait([child]);
    await awaitGone(upDaemonPids(out), 'containerfs.js');
  });
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 2400 && !/is up/.test(out); i++) await new Promise((r) => setTimeout(r, 25));
  t.match(out, /is up/, 'prints that it is up');
  const health = /health\s+(http:\S+)/.exec(out)?.[1];
  const rpcAddr = /rpc endpoint\s+127\.0\.0\.1:(\d+)/.exec(out)?.[1];
  t.ok(health && rpcAddr, 'table lists health URL and rpc endpoint');
  const h = await fetch(health!);
  t.equal(h.status, 200);
  t.match(await h.json(), { status: 'ok', checks: { rpc: { status: 'ok' } } });
  const c = new RpcClient({ host: '127.0.0.1', port: Number(rpcAddr) });
  t.equal((await c.call(echoService.echo, { seq: 77 })).seq, 77, 'rpc endpoint answers');
  await c.close();
  const m = await (await fetch(health!.replace('/health', '/metrics'))).text();
  t.match(m, /rpc_server_calls_total\{.*method="rpc.Echo".*\} 1/, 'metrics count the call');
  t.match(m, /process_cpu_seconds_total/, 'default process metrics');
  t.ok(existsSync(join(dir, 'data')), 'data dir created');
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM exits 0');
});

t.test('up: bad config is refused with the field named', async (t) => {
  const dir = tempDirFor(t, 'cs-bad-');
  const cfg = join(dir, 'c.json');
  writeFileSync(cfg, JSON.stringify({ rpcListen: 'not-an-address' }));
  let r = spawnSync(process.execPath, [bin, 'up', '--config', cfg], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2);
  t.match(r.stderr, /rpcListen: expected host:port/);
  writeFileSync(cfg, JSON.stringify({ rpcListn: '127.0.0.1:1' }));
  r = spawnSync(process.execPath, [bin, 'up', '--config', cfg], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2);
  t.match(r.stderr, /rpcListn: unknown field/);
  r = spawnSync(process.execPath, [bin, 'up', '--log-level', 'loud'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2);
  t.match(r.stderr, /logLevel \(flag\): expected one of/);
  r = spawnSync(process.execPath, [bin, 'up', '--help'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 0);
  t.match(r.stdout, /Config file fields/);
  t.match(r.stdout, /CONTAINERSTACK_RPC_LISTEN/);
});

t.test('up: a port already in use fails fast with a clear error', async (t) => {
  const first = spawn(process.execPath, [bin, 'up', '--data-dir', join(tempDirFor(t, 'cs-a-'), 'data'), '--rpc-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  t.teardown(async () => {
    await killAndWait([first]);
    await awaitGone(upDaemonPids(out), 'containerfs.js');
  });
  first.stdout.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 2400 && !/is up/.test(out); i++) await new Promise((r) => setTimeout(r, 25));
  const port = /rpc endpoint\s+127\.0\.0\.1:(\d+)/.exec(out)?.[1];
  const r = spawnSync(process.execPath, [bin, 'up', '--data-dir', join(tempDirFor(t, 'cs-b-'), 'data'), '--rpc-listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 1);
  t.match(r.stderr, /failed to start: .*EADDRINUSE/);
});
