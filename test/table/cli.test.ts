// `containerstack table` as a person uses it: a single embedded member, then put/get/range/
// del/status/watch from the CLI, exit codes, and a restart that keeps the data.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, killAndWait } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerstack.js');

function cli(port: number, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, 'table', ...args, '--endpoints', `127.0.0.1:${port}`], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function serve(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [bin, 'table', 'serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dir, '--admin-listen', '127.0.0.1:0', '--tick-ms', '20', '--log-level', 'warn'], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    if (cli(port, 'status', '--json').stdout.includes('"leader"')) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return child;
}

t.test('single member: CLI round trip, exit codes, restart keeps data', async (t) => {
  const port = await freePort();
  const dir = tempDirFor(t, 'table-cli-');
  let child = await serve(port, dir);
  t.teardown(() => killAndWait([child]));
  let r = cli(port, 'put', 'cfg/a', 'alpha');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^OK revision \d+/);
  cli(port, 'put', 'cfg/b', 'beta');
  r = cli(port, 'get', 'cfg/a');
  t.equal(r.stdout.trim(), 'alpha');
  r = cli(port, 'get', 'cfg/a', '--json');
  t.match(JSON.parse(r.stdout), { key: 'cfg/a', value: 'alpha', version: 1 });
  r = cli(port, 'range', 'cfg/');
  t.equal(r.stdout, 'cfg/a\talpha\ncfg/b\tbeta\n');
  r = cli(port, 'get', 'nope');
  t.equal(r.status, 4, 'absent key exits 4');
  r = cli(port, 'del', 'cfg/b');
  t.equal(r.status, 0);
  t.equal(cli(port, 'get', 'cfg/b').status, 4);
  r = cli(port, 'status', '--json');
  t.match(JSON.parse(r.stdout)[0], { role: 'leader', id: 1 });

  // watch prints events as they happen
  const w = spawn(process.execPath, [bin, 'table', 'watch', 'cfg/', '--endpoints', `127.0.0.1:${port}`, '--json'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let wout = '';
  w.stdout.on('data', (d: Buffer) => (wout += d.toString()));
  await new Promise((r2) => setTimeout(r2, 700));
  cli(port, 'put', 'cfg/c', 'gamma');
  for (let i = 0; i < 100 && !wout.includes('cfg/c'); i++) await new Promise((r2) => setTimeout(r2, 50));
  w.kill('SIGINT');
  t.match(wout, /"type":"put","key":"cfg\/c","value":"gamma"/);

  // restart: data survives
  const exited = new Promise((r2) => child.once('exit', r2));
  child.kill('SIGTERM');
  await exited;
  child = await serve(port, dir);
  t.equal(cli(port, 'get', 'cfg/a').stdout.trim(), 'alpha', 'data survived a restart');
  t.equal(cli(port, 'get', 'cfg/c').stdout.trim(), 'gamma');
  // nothing listening: a clear error and exit 3
  child.kill('SIGKILL');
  await new Promise((r2) => child.once('exit', r2));
  r = spawnSync(process.execPath, [bin, 'table', 'get', 'cfg/a', '--endpoints', `127.0.0.1:${port}`, '--timeout', '500'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 3);
  t.match(r.stderr, /no member answered/);
});

t.test('serve refuses bad peers lists clearly', async (t) => {
  const r = spawnSync(process.execPath, [bin, 'table', 'serve', '--id', '4', '--peers', '1=127.0.0.1:1,2=127.0.0.1:2'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 2);
  t.match(r.stderr, /this member \(4\) is not in the list/);
  const r2 = spawnSync(process.execPath, [bin, 'table', 'serve', '--peers', 'one=here'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r2.status, 2);
  t.match(r2.stderr, /expected id=host:port/);
});
