// `containerstack up` with ContainerFS: a master, 3 metanodes, 3 datanodes and a mount as child
// processes; the table lists them; a file written to the mount is there after a restart; SIGTERM
// unmounts and stops every child; SIGKILL of `up` still takes the children and the mount down.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMounted } from './helpers.js';
import { awaitGone, isAlive, killAndWait, upDaemonPids as childPids } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerstack.js');
// Removed after the teardown below (tap runs teardowns last in, first out), which unmounts nothing
// itself: removeTempDir detaches a mount left under it before removing anything.
const dir = tempDirFor(t, 'cs-upfs-');
const mnt = join(dir, 'mnt');
const children = new Set<ChildProcess>();
const outputs: (() => string)[] = [];
t.teardown(async () => {
  await killAndWait(children);
  // up's daemons stop on their own once up is gone; none may still write into dir as it goes.
  await awaitGone(outputs.flatMap((o) => childPids(o())), 'containerfs.js');
});

async function up(): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn(process.execPath, [bin, 'up', '--data-dir', join(dir, 'data'), '--rpc-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  outputs.push(() => out);
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 2400 && !/is up/.test(out) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 25));
  return { child, out: () => out };
}

/** A daemon of up still running (a pid whose command is something else now does not count). */
const alive = (pid: number): boolean => isAlive(pid, 'containerfs.js');

t.test('up runs ContainerFS, mounts the default volume, keeps data across restarts', async (t) => {
  let s = await up();
  t.match(s.out(), /containerfs master\s+127\.0\.0\.1:\d+/);
  t.match(s.out(), /containerfs meta3\s+/);
  t.match(s.out(), /containerfs data3\s+/);
  t.match(s.out(), new RegExp(`volume default\\s+mounted at ${mnt}`), 'mounted beside the data directory');
  t.ok(isMounted(mnt));
  await fsp.writeFile(join(mnt, 'keep'), 'across restarts');
  const pids = childPids(s.out());
  t.equal(pids.length, 7, 'seven daemons listed with their pids');
  let exited = new Promise<number | null>((r) => s.child.once('exit', (c) => r(c)));
  s.child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM exits 0');
  t.notOk(isMounted(mnt), 'unmounted');
  t.same(pids.filter(alive), [], 'every daemon stopped');
  s = await up();
  t.ok(isMounted(mnt), 'mounted again');
  t.equal(await fsp.readFile(join(mnt, 'keep'), 'utf8'), 'across restarts', 'data under ./data survived the restart');
  // SIGKILL of `up`: its children notice their stdin closing and stop, unmounting on the way.
  const pids2 = childPids(s.out());
  exited = new Promise<number | null>((r) => s.child.once('exit', (c) => r(c)));
  s.child.kill('SIGKILL');
  await exited;
  for (let i = 0; i < 800 && (pids2.some(alive) || isMounted(mnt)); i++) await new Promise((r) => setTimeout(r, 25));
  t.same(pids2.filter(alive), [], 'children stopped after up was killed');
  // Seen once in a fresh-clone CI run (the mount left behind): keep what up printed for the next look.
  if (isMounted(mnt)) t.comment(s.out().slice(-4000));
  t.notOk(isMounted(mnt), 'and the mount is gone');
});
