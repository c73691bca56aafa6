// removeTempDir (bench/lib/tmp.ts), which tests and benches use for their temporary directories:
// a mount left under the directory is detached before anything is removed, so the removal never
// goes through it. Real mounts: a FUSE passthrough whose process was SIGKILLed, and a bind mount
// of a directory outside the one removed.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { isMounted, startPassthrough, stopMount } from './helpers.js';
import { removeTempDir, tempDir, tempDirFor } from '../lib/tmp.js';

t.test('a FUSE mount whose process was SIGKILLed is detached, then its directory removed', async (t) => {
  const m = await startPassthrough();
  t.teardown(() => stopMount(m.child, m.mnt));
  const base = dirname(m.mnt);
  writeFileSync(join(m.mnt, 'f'), 'x');
  const gone = new Promise((r) => m.child.once('exit', r));
  m.child.kill('SIGKILL');
  await gone;
  t.ok(isMounted(m.mnt), 'the mount outlived its process');
  await removeTempDir(base);
  t.notOk(isMounted(m.mnt), 'detached');
  t.notOk(existsSync(base), 'the directory is gone');
});

t.test('a live mount under the directory is detached first: what it shows from elsewhere stays', async (t) => {
  const outside = tempDirFor(t, 'tmpclean-outside-');
  writeFileSync(join(outside, 'keep'), 'kept');
  const inside = tempDirFor(t, 'tmpclean-inside-');
  const mnt = join(inside, 'a', 'mnt');
  mkdirSync(mnt, { recursive: true });
  if (spawnSync('mount', ['--bind', outside, mnt], { stdio: 'ignore' }).status !== 0) {
    t.pass('mount --bind not permitted here: this path is not exercised');
    return;
  }
  t.teardown(() => void (isMounted(mnt) && spawnSync('umount', ['-l', mnt])));
  t.ok(isMounted(mnt), 'bind-mounted inside the directory');
  await removeTempDir(inside);
  t.notOk(existsSync(inside), 'the directory is gone');
  t.notOk(isMounted(mnt), 'the mount went with it');
  t.equal(readFileSync(join(outside, 'keep'), 'utf8'), 'kept', 'nothing was removed through the mount');
});

t.test('removing a directory that is already gone is not an error', async (t) => {
  const d = tempDir('tmpclean-gone-');
  await removeTempDir(d);
  await removeTempDir(d);
  t.notOk(existsSync(d));
});
