// Files unlinked or renamed over by ANOTHER client while open here: POSIX keeps them readable
// and writable until the last close. Clients do not register each open with the partition;
// their tracked lease renewals list what they hold, and a partition keeps an unlinked inode
// while any other client's lease may hold it unknown. Two real Volume clients over a real
// cluster of processes, and a client process killed with SIGKILL while holding a file.
import t from 'tap';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Volume } from '../../lib/fs/index.js';
import { MasterClient } from '../../lib/master/index.js';
import { blockGroupService } from '../../lib/blockgroup/index.js';
import { RpcPool } from '../../lib/rpc/index.js';
import { startVolumeCluster } from './cluster.js';
import { code } from '../lib/errors.js';

const { cluster, volume, open, vols } = await startVolumeCluster((fn) => t.teardown(fn));

/**
 * Every client renews twice: the first renewal after an unlink tells a client an index past it,
 * the second vouches for it (see MetaClient.openScope).
 */
async function renewAll(): Promise<void> {
  for (let i = 0; i < 2; i++) for (const v of vols) await v.meta.renewLease().catch(() => undefined);
}
/** Waits (bounded) until the inode is gone from its partition. */
async function gone(v: Volume, ino: number, ms = 20_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if ((await code(v.meta.getattr(ino))) === 'ENOENT') return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

// Long leases: nothing here may depend on a lease running out, except where a client dies.
const a = await open({ leaseMs: 60_000 });
const b = await open({ leaseMs: 60_000 });

t.test('another client unlinks a file open here: reads, writes and fstat go on; the last close frees it', async (t) => {
  await a.writeFile('/held', 'first part;');
  const h = await a.open('/held', 'r+');
  const ino = (await h.stat()).ino;
  await h.write('second;', 0, undefined, 11);
  t.equal(await code(b.stat('/held')), 'ok');
  await b.unlink('/held');
  t.equal(await code(b.stat('/held')), 'ENOENT', 'the name is gone for everyone');
  // B's own renewals run past the unlink: they must not let the inode go while A may hold it.
  await b.meta.renewLease();
  await b.meta.renewLease();
  t.equal((await b.meta.getattr(ino)).nlink, 0, 'kept as an orphan');
  // Nor A's renewals: A lists it.
  await renewAll();
  t.equal((await b.meta.getattr(ino)).nlink, 0, 'kept as an orphan');
  t.equal((await h.readFile()).toString(), 'first part;second;', 'A reads what it wrote before and after the unlink');
  await h.write('third', 0, undefined, 18);
  await h.sync();
  t.equal((await h.stat()).size, 23, 'fstat');
  // A renews now: it lists the inode, which the partition then holds for it.
  await a.meta.renewLease();
  await b.meta.renewLease();
  t.equal((await b.meta.getattr(ino)).size, 23, 'committed into the orphan');
  const buf = Buffer.alloc(23);
  await h.read(buf, 0, 23, 0);
  t.equal(buf.toString(), 'first part;second;third');
  await h.close();
  t.ok(await gone(b, ino), 'deleted at the last close (the close renews at once)');
  t.equal(await code(a.open('/held', 'r')), 'ENOENT');
});

t.test('renamed over by another client while open here: the old inode stays readable', async (t) => {
  await a.writeFile('/over', 'old content');
  await b.writeFile('/new', 'new content');
  const h = await a.open('/over', 'r');
  const ino = (await h.stat()).ino;
  await b.rename('/new', '/over');
  await b.meta.renewLease();
  await b.meta.renewLease();
  t.equal((await h.readFile()).toString(), 'old content', 'the replaced inode');
  t.equal(await b.readFile('/over', 'utf8'), 'new content');
  t.equal(await a.readFile('/over', 'utf8'), 'new content', 'a new open sees the new file');
  await h.close();
  // A never renewed while holding it: its renewals after the close (listing nothing) let it go.
  await renewAll();
  t.ok(await gone(b, ino, 1000), 'deleted once A renewed past the rename without it');
});

t.test('an unlink by the only holder, and of files nobody holds', async (t) => {
  // Nobody holds it, but A's lease is live and A could: kept until A vouches it does not.
  await b.writeFile('/free', 'x');
  const ino = (await b.stat('/free')).ino;
  await b.unlink('/free');
  t.equal((await b.meta.getattr(ino)).nlink, 0, 'kept while another lease may hold it');
  await renewAll();
  t.ok(await gone(b, ino, 1000), 'deleted once every lease renewed past the unlink');
  // Held by the unlinking client itself.
  await b.writeFile('/mine', 'mine');
  const h = await b.open('/mine', 'r');
  const mine = (await h.stat()).ino;
  await b.unlink('/mine');
  await renewAll();
  t.equal((await h.readFile()).toString(), 'mine');
  t.equal((await b.meta.getattr(mine)).nlink, 0);
  await h.close();
  t.ok(await gone(a, mine), 'deleted at its close (the close renews at once)');
});

/** Dead bytes over every block group of the volume (what frees marked, for the compactor). */
async function deadBytes(): Promise<number> {
  const master = new MasterClient({ endpoints: [cluster.master] });
  const pool = new RpcPool();
  try {
    let dead = 0;
    for (const g of (await master.view(volume)).groups) {
      const ref = await master.locateGroup(g.groupId);
      const st = await pool.get(ref.replicas[0]!).call(blockGroupService.status, { groupId: g.groupId }, { deadlineMs: 5000 });
      dead += st.deadBytes ?? 0;
    }
    return dead;
  } finally {
    await master.close();
    await pool.close();
  }
}

t.test('a client killed while holding an unlinked file: reclaimed after its lease expires, its extents freed', async (t) => {
  const size = 300 * 1024;
  await a.writeFile('/crash', Buffer.alloc(size, 7));
  const script = `
    const { Volume } = await import(${JSON.stringify(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'lib', 'fs', 'index.js'))});
    const v = await Volume.open({ master: ${JSON.stringify(cluster.master)}, volume: ${JSON.stringify(volume)}, leaseMs: 1500 });
    const h = await v.open('/crash', 'r');
    process.stdout.write(JSON.stringify({ ino: (await h.stat()).ino }) + '\\n');
    setInterval(() => undefined, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 400 && !out.includes('\n'); i++) await new Promise((r) => setTimeout(r, 50));
  const ino = (JSON.parse(out.split('\n')[0] as string) as { ino: number }).ino;
  await b.unlink('/crash');
  await renewAll();
  t.equal((await b.meta.getattr(ino)).nlink, 0, 'kept while the holder lives');
  await new Promise<void>((r) => {
    child.once('exit', () => r());
    child.kill('SIGKILL');
  });
  const deadBefore = await deadBytes();
  // No close ever comes: the metanodes' maintenance (or any renewal) deletes it once the lease has run out.
  t.ok(await gone(b, ino), 'reclaimed after the lease expired');
  // ... and whoever deleted it (a metanode's maintenance, usually) marked its bytes dead.
  let dead = deadBefore;
  for (let i = 0; i < 200 && dead < deadBefore + size; i++) {
    await new Promise((r) => setTimeout(r, 50));
    dead = await deadBytes();
  }
  t.ok(dead >= deadBefore + size, `the reclaimed file's ${size} bytes are dead on the datanodes (${dead - deadBefore} more)`);
});

t.test('the only client left: an unlink of a file it does not hold deletes it in the same entry', async (t) => {
  await a.close(); // its last renewal ends its lease
  await b.writeFile('/alone', 'x');
  const ino = (await b.stat('/alone')).ino;
  await b.unlink('/alone');
  t.equal(await code(b.meta.getattr(ino)), 'ENOENT');
});
