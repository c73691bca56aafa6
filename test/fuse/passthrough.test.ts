// The FUSE adapter on a real kernel mount (PassthroughVolume over a local directory, served by
// a separate process): POSIX behaviour through the mount, a seeded differential run against a
// plain directory, permissions for a non-root user, clean unmount on SIGTERM, recovery from a
// killed mount, and the bundled-libfuse fallback.
import t from 'tap';
import { promises as fsp, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { runDifferential } from './differential.js';
import { isMounted, startPassthrough, stopMount } from './helpers.js';
import { tempDirFor } from '../lib/tmp.js';

for (const engine of ['kernel', 'libfuse']) t.test(`POSIX basics through the mount (${engine} engine)`, async (t) => {
  const m = await startPassthrough(process.env, engine);
  t.teardown(() => stopMount(m.child, m.mnt));
  await fsp.mkdir(join(m.mnt, 'dir'));
  await fsp.writeFile(join(m.mnt, 'dir/f'), 'hello');
  t.equal(await fsp.readFile(join(m.backing, 'dir/f'), 'utf8'), 'hello', 'write reached the backing directory');
  t.same(await fsp.readdir(join(m.mnt, 'dir')), ['f']);
  await fsp.rename(join(m.mnt, 'dir/f'), join(m.mnt, 'dir/g'));
  await fsp.link(join(m.mnt, 'dir/g'), join(m.mnt, 'h'));
  t.equal((await fsp.stat(join(m.mnt, 'h'))).nlink, 2, 'hard link count');
  await fsp.symlink('dir/g', join(m.mnt, 's'));
  t.equal(await fsp.readlink(join(m.mnt, 's')), 'dir/g');
  t.equal(await fsp.readFile(join(m.mnt, 's'), 'utf8'), 'hello', 'symlink followed');
  await fsp.truncate(join(m.mnt, 'h'), 2);
  t.equal(await fsp.readFile(join(m.mnt, 'dir/g'), 'utf8'), 'he');
  await fsp.chmod(join(m.mnt, 'h'), 0o600);
  t.equal((await fsp.stat(join(m.mnt, 'h'))).mode & 0o777, 0o600);
  const when = new Date('2020-01-02T03:04:05Z');
  await fsp.utimes(join(m.mnt, 'h'), when, when);
  t.equal((await fsp.stat(join(m.mnt, 'h'))).mtime.getTime(), when.getTime());
  // Different atime and mtime need, with fuse-native, the corrected binding (fuse/binding.ts).
  t.match(m.out(), engine === 'kernel' ? /mounted kernel engine/ : /binding corrected/, engine === 'kernel' ? 'the kernel engine serves it' : 'the corrected fuse-native binding was built and loaded');
  await fsp.utimes(join(m.mnt, 'h'), new Date('2001-02-03T04:05:06Z'), new Date('2011-12-13T14:15:16Z'));
  const tb = await fsp.stat(join(m.backing, 'h'));
  t.equal(tb.atime.toISOString(), '2001-02-03T04:05:06.000Z', 'atime reached the backing file');
  t.equal(tb.mtime.toISOString(), '2011-12-13T14:15:16.000Z', 'mtime reached the backing file');
  const e1 = await fsp.rmdir(join(m.mnt, 'dir')).catch((e: { code: string }) => e.code);
  t.equal(e1, 'ENOTEMPTY');
  const e2 = await fsp.readFile(join(m.mnt, 'nope')).catch((e: { code: string }) => e.code);
  t.equal(e2, 'ENOENT');
  // 8 MiB in large writes, read back.
  const big = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
  await fsp.writeFile(join(m.mnt, 'big'), big);
  const back = await fsp.readFile(join(m.mnt, 'big'));
  t.equal(createHash('sha1').update(back).digest('hex'), createHash('sha1').update(big).digest('hex'), '8 MiB round trip');
  const sfs = await fsp.statfs(m.mnt);
  t.ok(sfs.blocks > 0, 'statfs answers');
});

t.test('differential: seeded operations give identical results and trees', async (t) => {
  const m = await startPassthrough();
  t.teardown(() => stopMount(m.child, m.mnt));
  const local = tempDirFor(t, 'fuse-local-');
  for (const seed of [1, 2, 3]) {
    const a = join(m.mnt, `s${seed}`);
    const b = join(local, `s${seed}`);
    await fsp.mkdir(a);
    await fsp.mkdir(b);
    const r = await runDifferential(a, b, seed, 300);
    t.same(r.mismatches, [], `seed ${seed}: ${r.steps} steps, no mismatch`);
    t.same(r.treeA, r.treeB, `seed ${seed}: final trees identical (${r.treeB.length} entries)`);
  }
});

t.test('permissions are enforced for a non-root user', async (t) => {
  const m = await startPassthrough();
  t.teardown(() => stopMount(m.child, m.mnt));
  await fsp.writeFile(join(m.mnt, 'secret'), 'x', { mode: 0o600 });
  await fsp.writeFile(join(m.mnt, 'public'), 'y', { mode: 0o644 });
  const asNobody = (args: string[]) => spawnSync('cat', args, { uid: 65534, gid: 65534, encoding: 'utf8' });
  const denied = asNobody([join(m.mnt, 'secret')]);
  t.not(denied.status, 0);
  t.match(denied.stderr, /Permission denied/);
  const allowed = asNobody([join(m.mnt, 'public')]);
  t.equal(allowed.stdout, 'y');
  const write = spawnSync('sh', ['-c', `echo z > ${join(m.mnt, 'public')}`], { uid: 65534, gid: 65534, encoding: 'utf8' });
  t.not(write.status, 0, 'nobody cannot write a 0644 root file');
});

for (const engine of ['kernel', 'libfuse']) t.test(`SIGTERM unmounts; a killed mount is cleared with fusermount (${engine} engine)`, async (t) => {
  let m = await startPassthrough(process.env, engine);
  await stopMount(m.child, m.mnt);
  t.notOk(isMounted(m.mnt), 'SIGTERM unmounted cleanly');
  m = await startPassthrough(process.env, engine);
  // Cleared by hand below; this removes its directory (and the mount if an assertion stops first).
  const second = m;
  t.teardown(() => stopMount(second.child, second.mnt));
  await fsp.writeFile(join(m.mnt, 'kept'), 'durable');
  const gone = new Promise((r) => m.child.once('exit', r));
  m.child.kill('SIGKILL');
  await gone;
  const e = await fsp.readdir(m.mnt).catch((x: { code: string }) => x.code);
  t.equal(e, 'ENOTCONN', 'a killed mount answers ENOTCONN');
  const r = spawnSync('fusermount', ['-u', m.mnt], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.notOk(isMounted(m.mnt));
  t.equal(readFileSync(join(m.backing, 'kept'), 'utf8'), 'durable', 'written data is in the backing store');
});

t.test('the prebuilt fuse-native binding still works when the corrected one is not used', async (t) => {
  const m = await startPassthrough({ ...process.env, CONTAINERFS_FUSE_BINDING: 'prebuilt' }, 'libfuse');
  t.teardown(() => stopMount(m.child, m.mnt));
  t.match(m.out(), /binding prebuilt/);
  await fsp.writeFile(join(m.mnt, 'p'), 'prebuilt');
  t.equal(await fsp.readFile(join(m.backing, 'p'), 'utf8'), 'prebuilt');
  const when = new Date('2020-01-02T03:04:05Z');
  await fsp.utimes(join(m.mnt, 'p'), when, when);
  t.equal((await fsp.stat(join(m.backing, 'p'))).mtime.getTime(), when.getTime(), 'equal times are right');
  await fsp.utimes(join(m.mnt, 'p'), new Date('2001-02-03T04:05:06Z'), new Date('2011-12-13T14:15:16Z'));
  // What the corrected build fixes: the prebuilt one hands the atime over as the mtime.
  t.equal((await fsp.stat(join(m.backing, 'p'))).mtime.toISOString(), '2001-02-03T04:05:06.000Z', 'the prebuilt binding loses the mtime');
});

t.test('bundled libfuse fallback mounts and is the one loaded', async (t) => {
  const m = await startPassthrough({ ...process.env, CONTAINERFS_LIBFUSE: 'bundled' }, 'libfuse');
  t.teardown(() => stopMount(m.child, m.mnt));
  t.match(m.out(), /mounted bundled binding corrected/);
  const pid = Number(/pid (\d+)/.exec(m.out())?.[1]);
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8');
  t.match(maps, /fuse-native\/prebuilds\/linux-x64\/libfuse\.so/, 'the process mapped the bundled libfuse');
  await fsp.writeFile(join(m.mnt, 'x'), 'works');
  t.equal(await fsp.readFile(join(m.mnt, 'x'), 'utf8'), 'works');
});
