// Volume capacity and access times through a real FUSE mount (`containerfs mount` over a cluster
// of real processes): df shows the capacity; writing past it ends in ENOSPC for the writer
// (write or close), every file whose close succeeded reads back, deleting frees space and
// `volume set-capacity` lifts the limit; reading a file updates its atime (relatime) without
// touching ctime.
import t from 'tap';
import { promises as fsp, chmodSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MasterClient } from '../../lib/master/index.js';
import { startTestCluster } from '../fs/cluster.js';
import { startMount, stopAllMounts, containerfsBin } from './helpers.js';
import { code } from '../lib/errors.js';
import { tempDirFor } from '../lib/tmp.js';

const { cluster } = await startTestCluster();
// Removed after the teardown below has stopped the mounts and the cluster (tap: last in, first out).
const base = tempDirFor(t, 'cfs-e2e-quota-');
chmodSync(base, 0o755);
const master = new MasterClient({ endpoints: [cluster.master] });
t.teardown(async () => {
  await stopAllMounts();
  await master.close();
  await cluster.stop();
});
const cap = 512 * 1024;
await master.createVolume('qm', { quotaBytes: cap, replicas: 3 });
const m = await startMount(cluster.master, 'qm', join(base, 'mnt'));
const mnt = m.mnt;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('df shows the capacity; writes past it fail with ENOSPC; set-capacity lifts it', async (t) => {
  const s = await fsp.statfs(mnt);
  t.equal(s.blocks * s.bsize, cap, 'df: the size is the capacity');
  const acked = new Map<string, Buffer>();
  let failure = '';
  for (let i = 0; i < 2000 && !failure; i++) {
    const data = randomBytes(32 * 1024);
    const c = await code(fsp.writeFile(join(mnt, `f${i}`), data));
    if (c === 'ok') acked.set(`f${i}`, data);
    else failure = c;
  }
  t.equal(failure, 'ENOSPC', 'the writer sees ENOSPC');
  for (const [name, data] of acked) if (!(await fsp.readFile(join(mnt, name))).equals(data)) t.fail(`${name} lost or changed`);
  t.pass(`all ${acked.size} files whose close succeeded read back`);
  const full = await fsp.statfs(mnt);
  t.equal(full.bavail, 0, 'df: nothing available');
  t.equal(await code(fsp.appendFile(join(mnt, 'f0'), 'more')), 'ENOSPC', 'appending fails at once');
  const h = await fsp.open(join(mnt, 'f0'), 'r+');
  await h.write(Buffer.from('over'), 0, 4, 0);
  await h.close();
  t.equal((await fsp.readFile(join(mnt, 'f0'))).subarray(0, 4).toString(), 'over', 'overwriting works while full');

  execFileSync(process.execPath, [containerfsBin, 'volume', 'set-capacity', 'qm', '8MiB', '--master', cluster.master]);
  const data = randomBytes(64 * 1024);
  for (let i = 0; ; i++) {
    if ((await code(fsp.writeFile(join(mnt, 'after'), data))) === 'ok') break;
    if (i > 300) throw new Error('writes never accepted after set-capacity');
    await sleep(100);
  }
  t.ok((await fsp.readFile(join(mnt, 'after'))).equals(data), 'writes work after the raise');
  const s2 = await fsp.statfs(mnt);
  t.equal(s2.blocks * s2.bsize, 8 * 1024 * 1024, 'df: the new capacity');
  t.ok(s2.bavail > 0, 'df: space available');
});

t.test('relatime through the mount: a read updates atime, not ctime', async (t) => {
  const p = join(mnt, 'atime');
  await fsp.writeFile(p, 'hello');
  const s0 = await fsp.stat(p);
  t.ok(s0.atimeMs <= s0.mtimeMs, 'new file: atime not after mtime');
  t.equal(await fsp.readFile(p, 'utf8'), 'hello');
  let s1 = await fsp.stat(p);
  for (let i = 0; i < 100 && s1.atimeMs <= s1.mtimeMs; i++) {
    await sleep(50);
    s1 = await fsp.stat(p);
  }
  t.ok(s1.atimeMs > s1.mtimeMs, 'the read moved atime past mtime');
  t.equal(s1.ctimeMs, s0.ctimeMs, 'ctime unchanged');
});
