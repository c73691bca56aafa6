// Real processes: three masters and three metanodes on loopback. The master leader is killed
// with SIGKILL: the map survives on the other two, a new leader serves volume commands and the
// view, metanodes keep heartbeating (their client follows the new leader), a metanode killed
// meanwhile is detected as down, and `containerfs cluster status` shows it all.
import t from 'tap';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { RpcPool } from '../../lib/rpc/index.js';
import { MasterClient } from '../../lib/master/index.js';
import { MetaClient, ROOT_INO } from '../../lib/meta/index.js';
import { freePort } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerfs.js');
const run = promisify(execFile);

interface Proc {
  args: string[];
  child?: ChildProcess;
  out: string;
}
function start(p: Proc): void {
  const child = spawn(process.execPath, [bin, ...p.args], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.child = child;
  child.stdout?.on('data', (d: Buffer) => (p.out = (p.out + d.toString()).slice(-20_000)));
  child.stderr?.on('data', (d: Buffer) => (p.out = (p.out + d.toString()).slice(-20_000)));
}
function kill(p: Proc): Promise<void> {
  const c = p.child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  const done = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill('SIGKILL');
  return done;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(fn: () => Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

t.test('the cluster map survives the master leader; failure detection and status keep working', async (t) => {
  const mports = [await freePort(), await freePort(), await freePort()];
  const peers = mports.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(',');
  const masterList = mports.map((p) => `127.0.0.1:${p}`).join(',');
  const masters: Proc[] = mports.map((p, i) => ({ out: '', args: ['master', '--id', String(i + 1), '--listen', `127.0.0.1:${p}`, '--peers', peers, '--data-dir', tempDirFor(t, `cfs-ha-m${i}-`), '--admin-listen', '127.0.0.1:0', '--tick-ms', '50', '--node-timeout', '2s', '--check-interval', '200ms', '--log-level', 'warn'] }));
  const metas: Proc[] = [];
  for (let i = 0; i < 3; i++) {
    const p = await freePort();
    metas.push({ out: '', args: ['meta', '--listen', `127.0.0.1:${p}`, '--master', masterList, '--data-dir', tempDirFor(t, `cfs-ha-meta${i}-`), '--admin-listen', '127.0.0.1:0', '--tick-ms', '50', '--heartbeat-interval', '200ms', '--log-level', 'warn'] });
  }
  for (const m of masters) start(m);
  for (const m of metas) start(m);
  // Registered after the data dirs: runs first (tap: last in, first out), so they go once it is done.
  t.teardown(async () => {
    for (const p of [...metas, ...masters]) await kill(p);
  });
  const pool = new RpcPool({ backoffBaseMs: 20, backoffMaxMs: 200 });
  t.teardown(() => pool.close());
  const mc = new MasterClient({ endpoints: masterList.split(','), pool, deadlineMs: 20_000 });
  await until(async () => (await mc.view()).nodes.filter((n) => n.state === 'up').length === 3, 'three metanodes');
  await mc.createVolume('ha');
  const c = new MetaClient({ routes: () => mc.routes('ha'), pool, deadlineMs: 20_000 });
  t.teardown(() => c.close());
  await until(async () => (await c.getattr(ROOT_INO)).ino === ROOT_INO, 'the partition');
  await c.create(ROOT_INO, 'before', 0o644);

  const v0 = await mc.view();
  const leaderIdx = v0.leader - 1;
  t.ok(leaderIdx >= 0 && leaderIdx < 3, `master ${v0.leader} leads`);
  await kill(masters[leaderIdx] as Proc);
  await until(async () => {
    const v = await mc.view();
    return v.leader > 0 && v.leader !== v0.leader;
  }, 'a new master leader');
  const v1 = await mc.view();
  t.not(v1.leader, v0.leader, `master ${v1.leader} took over`);
  t.same(v1.volumes.map((v) => v.name), ['ha'], 'the map survived');
  await mc.createVolume('ha2', { replicas: 3 });
  t.same((await mc.volumes()).map((v) => v.name).sort(), ['ha', 'ha2'], 'volume commands work under the new leader');
  const beatBefore = Math.min(...(await mc.view()).nodes.map((n) => n.lastHeartbeatMs));
  await until(async () => Math.min(...(await mc.view()).nodes.map((n) => n.lastHeartbeatMs)) > beatBefore + 500, 'metanodes heartbeating to the new leader');
  await c.create(ROOT_INO, 'after', 0o644);
  t.same((await c.readdirAll(ROOT_INO)).map((e) => e.name.toString()), ['after', 'before'], 'metadata unaffected');

  // A metanode dies: the new leader marks it down and the status command says so.
  await kill(metas[2] as Proc);
  await until(async () => (await mc.view()).nodes.some((n) => n.state === 'down'), 'the dead metanode marked down', 15_000);
  const live = masterList.split(',').filter((_, i) => i !== leaderIdx).join(',');
  const status = await run(process.execPath, [bin, 'cluster', 'status', '--master', live]).then(
    (r) => ({ out: r.stdout, code: 0 }),
    (e: { stdout: string; code: number }) => ({ out: e.stdout, code: e.code }),
  );
  t.equal(status.code, 5, 'status exits 5 when there are problems');
  t.match(status.out, /metanode \d+ \(127\.0\.0\.1:\d+\) is down/);
  t.match(status.out, /is degraded: 2\/3 members up/);
  t.match(status.out, /masters\nID +ADDRESS +ROLE/);
  await c.create(ROOT_INO, 'degraded', 0o644);
  t.pass('the partition still takes writes with 2 of 3 members');
  const json = JSON.parse((await run(process.execPath, [bin, 'volume', 'info', 'ha', '--master', live, '--json'])).stdout) as { partitions: { inodes: number }[] };
  t.equal(json.partitions.length, 1);
});
