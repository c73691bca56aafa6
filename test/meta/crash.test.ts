// Real processes: a master and three metanodes (`containerfs master|meta`) on loopback, a volume
// with two partitions (directory A's entries in one, directory B's in the other). Clients create
// files and rename them between A and B (cross-partition, two-phase) while the leader of each
// partition is killed with SIGKILL and restarted. Afterwards: every acknowledged create and
// rename is there, no dentry points at a missing inode, and every rename — acknowledged or not —
// happened completely or not at all (after stale intents are recovered).
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RpcPool } from '../../lib/rpc/index.js';
import { TableClient } from '../../lib/table/index.js';
import { MasterClient } from '../../lib/master/index.js';
import { MetaClient, RemotePartition, ROOT_INO } from '../../lib/meta/index.js';
import { freePort } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerfs.js');


interface Proc {
  name: string;
  args: string[];
  port: number;
  child?: ChildProcess;
  out: string;
}

function start(p: Proc): void {
  const child = spawn(process.execPath, [bin, ...p.args], { stdio: ['ignore', 'pipe', 'pipe'] });
  p.child = child;
  child.stdout?.on('data', (d: Buffer) => (p.out = (p.out + d.toString()).slice(-20_000)));
  child.stderr?.on('data', (d: Buffer) => (p.out = (p.out + d.toString()).slice(-20_000)));
}

function kill(p: Proc, sig: NodeJS.Signals): Promise<void> {
  const c = p.child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  const done = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill(sig);
  return done;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(fn: () => Promise<T | undefined | false>, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

t.test('SIGKILL of partition leaders during creates and cross-partition renames', { timeout: 240_000 }, async (t) => {
  const masterPort = await freePort();
  const masterAddr = `127.0.0.1:${masterPort}`;
  const master: Proc = { name: 'master', port: masterPort, out: '', args: ['master', '--listen', masterAddr, '--data-dir', tempDirFor(t, 'cfs-master-'), '--admin-listen', '127.0.0.1:0', '--tick-ms', '50', '--node-timeout', '3s', '--log-level', 'warn'] };
  const metas: Proc[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    metas.push({ name: `meta${i}`, port, out: '', args: ['meta', '--listen', `127.0.0.1:${port}`, '--master', masterAddr, '--data-dir', tempDirFor(t, `cfs-meta${i}-`), '--admin-listen', '127.0.0.1:0', '--tick-ms', '50', '--heartbeat-interval', '200ms', '--maintenance-interval', '500ms', '--log-level', 'warn'] });
  }
  start(master);
  for (const m of metas) start(m);
  t.teardown(async () => {
    for (const p of [...metas, master]) await kill(p, 'SIGKILL');
  });
  const pool = new RpcPool({ backoffBaseMs: 20, backoffMaxMs: 200 });
  t.teardown(() => pool.close());
  const mc = new MasterClient({ endpoints: [masterAddr], pool, deadlineMs: 20_000 });
  await until(async () => (await mc.view()).nodes.filter((n) => n.state === 'up').length === 3, 'three metanodes registered');
  await mc.createVolume('crash', { inoRange: 40 });
  const c = new MetaClient({ routes: () => mc.routes('crash'), pool, deadlineMs: 20_000, inoMode: 'cursor' });
  t.teardown(() => c.close());
  await until(async () => (await c.getattr(ROOT_INO)).ino === ROOT_INO, 'the first partition to serve');
  const A = await c.mkdir(ROOT_INO, 'A', 0o755);
  // Fill the first partition, add a second, and make B there (a cross-partition create).
  for (let i = 0; i < 60 && (await c.statfs()).partitions.length < 2; i++) {
    await c.create(ROOT_INO, `fill${i}`, 0o644).catch(() => undefined);
    if (i === 30) await mc.addPartition('crash').catch(() => undefined);
  }
  await until(async () => (await mc.view('crash')).partitions.every((p) => p.leader > 0) && (await mc.view('crash')).partitions.length >= 2, 'the second partition to have a leader');
  await c.refresh();
  let B = await c.mkdir(ROOT_INO, 'B', 0o755).catch(() => undefined);
  for (let i = 0; !B && i < 50; i++) {
    for (let j = 0; j < 10; j++) await c.create(ROOT_INO, `more${i}-${j}`, 0o644).catch(() => undefined);
    B = await c.mkdir(ROOT_INO, 'B', 0o755).catch(() => undefined);
  }
  if (!B) throw new Error('could not make B');
  const view = await mc.view('crash');
  const p1 = view.partitions.find((p) => A.ino >= p.start && A.ino < p.end);
  const p2 = view.partitions.find((p) => B!.ino >= p.start && B!.ino < p.end);
  t.not(p1?.groupId, p2?.groupId, 'A and B live in different partitions');
  const aIno = A.ino;
  const bIno = B.ino;

  // ---- workload ----
  type Fate = { created: 'yes' | 'unknown'; renamed: 'no' | 'yes' | 'unknown' };
  const files = new Map<string, Fate>();
  let stop = false;
  let acked = 0;
  let unknown = 0;
  const errors = new Map<string, number>();
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; !stop && i < 10_000; i++) {
      const name = `w${w}-${i}`;
      try {
        await c.create(aIno, name, 0o644);
        files.set(name, { created: 'yes', renamed: 'no' });
        acked++;
      } catch (err) {
        errors.set(`create ${(err as { code?: string }).code} ${(err as { domainCode?: string }).domainCode ?? ""} ${(err as Error).message.slice(0, 80)}`, 1);
        files.set(name, { created: 'unknown', renamed: 'no' });
        unknown++;
        continue;
      }
      if (i % 2 === 0) {
        const f = files.get(name) as Fate;
        try {
          await c.rename(aIno, name, bIno, name);
          f.renamed = 'yes';
          acked++;
        } catch (err) {
          // Any failure may have happened after the decision: the outcome is unknown here.
          f.renamed = 'unknown';
          unknown++;
          errors.set(`rename ${(err as { code?: string }).code}`, (errors.get(`rename ${(err as { code?: string }).code}`) ?? 0) + 1);
        }
      }
    }
  };
  const workers = [0, 1, 2].map(worker);
  const leaderOf = async (groupId: number): Promise<Proc | undefined> => {
    for (const m of metas) {
      const tc = new TableClient({ endpoints: [`127.0.0.1:${m.port}`], groupId, pool, deadlineMs: 500 });
      try {
        if ((await tc.status(`127.0.0.1:${m.port}`)).role === 'leader') return m;
      } catch {
        // down
      } finally {
        await tc.close();
      }
    }
    return undefined;
  };
  let kills = 0;
  for (const gid of [p1!.groupId, p2!.groupId, p1!.groupId]) {
    await sleep(800);
    const victim = await until(() => leaderOf(gid), `leader of ${gid}`);
    await kill(victim, 'SIGKILL');
    kills++;
    await sleep(1500);
    start(victim);
  }
  await sleep(1000);
  stop = true;
  const t0 = Date.now();
  await Promise.all(workers);
  t.comment(`workers stopped in ${Date.now() - t0}ms`);
  t.equal(kills, 3, 'three leaders killed');
  t.ok(acked > 20, `acknowledged operations: ${acked} (unknown outcome: ${unknown}: ${JSON.stringify(Object.fromEntries(errors))})`);

  // ---- heal, recover stale intents, verify ----
  await until(async () => (await mc.view('crash')).nodes.filter((n) => n.kind === 'meta' && n.state === 'up').length === 3, 'all metanodes back');
  await until(async () => (await c.getattr(bIno)) && (await c.getattr(aIno)), 'both partitions serving');
  await until(async () => {
    await c.recoverIntents(0);
    return true;
  }, 'intent recovery');
  const inA = new Map((await c.readdirAll(aIno)).map((e) => [e.name.toString(), e.ino]));
  const inB = new Map((await c.readdirAll(bIno)).map((e) => [e.name.toString(), e.ino]));
  let lost = 0;
  let both = 0;
  let wrong = 0;
  for (const [name, f] of files) {
    const a = inA.has(name);
    const b = inB.has(name);
    if (a && b) both++;
    if (f.created === 'yes' && !a && !b) lost++;
    if (f.renamed === 'yes' && !b) wrong++;
    if (f.renamed === 'no' && f.created === 'yes' && !a) wrong++;
  }
  t.equal(lost, 0, 'no acknowledged create lost');
  t.equal(wrong, 0, 'every acknowledged rename is in effect, and no file moved without one');
  t.equal(both, 0, 'no rename half-done: no file in both directories');
  let dangling = 0;
  for (const [dir, entries] of [[aIno, inA], [bIno, inB]] as const) {
    for (const [name, ino] of entries) {
      try {
        const a = await c.getattr(ino);
        if (a.nlink !== 1) t.fail(`${dir}/${name}: nlink ${a.nlink}`);
      } catch {
        dangling++;
      }
    }
  }
  t.equal(dangling, 0, `no dentry points at a missing inode (${inA.size + inB.size} checked)`);
  let left = 0;
  for (const r of await mc.routes('crash')) {
    const b = new RemotePartition(r, pool, 'crash-check', 10_000);
    left += ((await b.read({ op: 'intents' })).intents ?? []).length;
    await b.close();
  }
  t.equal(left, 0, 'no intent left on any partition after recovery');
});
