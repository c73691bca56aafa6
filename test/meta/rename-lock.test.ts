// Directory renames whose subtree check crosses partitions (formerly EXDEV): the volume's
// directory-rename lock in the root partition, the client's walk of the destination's
// ancestors under it, EINVAL through an ancestor in another partition, a lock held by a
// vanished client expiring, and two clients racing opposite directory moves without ever
// building a cycle. Two partitions of 3 replicas over real sockets; the root partition has
// 8 inos, so later directories live in the other one.
import t from 'tap';
import { ROOT_INO, S_IFDIR, LocalPartition, type MetaClient } from '../../lib/meta/index.js';
import { leaderOf, waitFor } from '../table/cluster.js';
import { startMeta, codeOf } from './harness.js';

const h = await startMeta({ nodes: [1, 2, 3], partitions: [{ groupId: 100, start: 1, end: 8 }, { groupId: 200, start: 1000, end: 1_000_000 }] });
t.teardown(() => h.close());
const c = h.client({ inoMode: 'cursor' });
const inP1 = (ino: number) => ino < 8;

async function path(cl: MetaClient, ...names: string[]): Promise<number> {
  let cur = ROOT_INO;
  for (const n of names) cur = (await cl.lookup(cur, n)).ino;
  return cur;
}
/** Every directory reachable from the root reaches the root again by parent pointers, and no directory is its own ancestor. */
async function noCycles(cl: MetaClient): Promise<number> {
  let dirs = 0;
  const stack = [ROOT_INO];
  while (stack.length > 0) {
    const d = stack.pop()!;
    dirs++;
    let cur = d;
    for (let i = 0; cur !== ROOT_INO; i++) {
      if (i > 1000) throw new Error(`directory ${d} does not reach the root`);
      cur = (await cl.getattr(cur)).parent;
    }
    for (const e of await cl.readdirAll(d)) if (e.type === S_IFDIR) stack.push(e.ino);
  }
  return dirs;
}

t.test('a chain across partitions: renames that used to answer EXDEV work, EINVAL holds', async (t) => {
  const a = await c.mkdir(ROOT_INO, 'a', 0o755);
  const m = await c.mkdir(ROOT_INO, 'm', 0o755);
  const y = await c.mkdir(m.ino, 'y', 0o755);
  for (let i = 0; ; i++) {
    const f = await c.create(ROOT_INO, `fill${i}`, 0o644);
    if (!inP1(f.ino)) break; // the root partition ran out of inos
  }
  t.ok(inP1(a.ino) && inP1(m.ino) && inP1(y.ino), 'a, m, m/y in the root partition');
  const x = await c.mkdir(a.ino, 'x', 0o755);
  const z = await c.mkdir(x.ino, 'z', 0o755);
  t.ok(!inP1(x.ino) && !inP1(z.ino), 'a/x and a/x/z in the other partition');
  // y (root partition) moves under z (other partition): the chain now alternates partitions.
  await c.rename(m.ino, 'y', z.ino, 'y');
  const w = await c.mkdir(y.ino, 'w', 0o755);
  const v = await c.mkdir(w.ino, 'v', 0o755);
  t.ok(!inP1(w.ino) && !inP1(v.ino), 'w, v in the other partition');
  t.equal((await c.getattr(y.ino)).parent, z.ino, 'y\'s parent pointer followed it');

  // z into its own subtree: both parents (x, w) in the other partition, the walk from w leaves
  // it at y (root partition) and comes back to z.
  t.equal(await codeOf(c.rename(x.ino, 'z', w.ino, 'z')), 'EINVAL', 'into its own subtree through an ancestor elsewhere');
  t.equal(await path(c, 'a', 'x', 'z', 'y', 'w'), w.ino, 'nothing moved');
  // v up to z: the walk from z passes x and reaches a (root partition): formerly EXDEV.
  await c.rename(w.ino, 'v', z.ino, 'v');
  t.equal(await path(c, 'a', 'x', 'z', 'v'), v.ino, 'moved');
  t.equal((await c.getattr(v.ino)).parent, z.ino, 'parent pointer updated');
  t.equal((await c.getattr(w.ino)).nlink, 2, 'old parent lost a link');
  t.equal((await c.getattr(z.ino)).nlink, 4, 'new parent gained one (y, v)');
  // The lock was released: a same-directory rename and a file move need no lock, and another
  // directory move takes it again at once.
  await c.rename(z.ino, 'v', z.ino, 'v2');
  await c.rename(z.ino, 'v2', x.ino, 'v');
  t.equal(await path(c, 'a', 'x', 'v'), v.ino);
  t.ok((await noCycles(c)) >= 8, 'the tree is intact');
});

t.test('a lock left by a vanished holder expires; until then directory moves wait', async (t) => {
  const leader = await waitFor(() => leaderOf(h.groups.get(100)!), 'root partition leader');
  const root = new LocalPartition(() => leader);
  const now = Date.now();
  await root.exec({ op: 'rlock', txid: 'ghost', leaseMs: now + 1500, now: { sec: Math.floor(now / 1000), nsec: 0 } });
  t.equal(await codeOf(root.exec({ op: 'rlock', txid: 'other', leaseMs: now + 1000, now: { sec: Math.floor(now / 1000), nsec: 0 } })), 'EAGAIN', 'held by the ghost');
  t.equal(await codeOf(root.exec({ op: 'rlock', txid: 'ghost', leaseMs: now + 1500, now: { sec: Math.floor(now / 1000), nsec: 0 } })), '', 'the holder renews');
  const d1 = await c.mkdir(ROOT_INO, 'lk1', 0o755);
  await c.mkdir(ROOT_INO, 'lk2', 0o755);
  const moved = c.rename(ROOT_INO, 'lk1', (await c.lookup(ROOT_INO, 'lk2')).ino, 'lk1');
  let done = false;
  void moved.finally(() => (done = true));
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(done, 'the move waits while the lock is held');
  await moved;
  t.equal(await path(c, 'lk2', 'lk1'), d1.ino, 'and happens once it expired');
  t.equal(await codeOf(root.exec({ op: 'runlock', txid: 'ghost', now: { sec: 0, nsec: 0 } })), '', 'a stale unlock is harmless');
  t.equal(await codeOf(c.rename((await c.lookup(ROOT_INO, 'lk2')).ino, 'lk1', ROOT_INO, 'lk1')), '', 'the lock is free again');
  t.equal(await codeOf(new LocalPartition(() => leaderOf(h.groups.get(200)!)!).exec({ op: 'rlock', txid: 'x', leaseMs: 1, now: { sec: 0, nsec: 0 } })), 'EINVAL', 'only the root partition has the lock');
});

t.test('two clients racing opposite directory moves never build a cycle', async (t) => {
  const c2 = h.client({ inoMode: 'cursor' });
  const A = await c.mkdir(ROOT_INO, 'A', 0o755);
  const B = await c.mkdir(ROOT_INO, 'B', 0o755);
  const a1 = await c.mkdir(A.ino, 'a1', 0o755);
  const b1 = await c.mkdir(B.ino, 'b1', 0o755);
  const results = { moved: 0, einval: 0, other: [] as string[] };
  const loop = async (cl: MetaClient, from: number, name: string, into: () => number) => {
    for (let i = 0; i < 15; i++) {
      const there = await codeOf(cl.rename(from, name, into(), name));
      if (there === '') {
        results.moved++;
        // Stay a moment (so the other client's move meets this one), then back.
        await new Promise((r) => setTimeout(r, 5 + (i % 4) * 5));
        await cl.rename(into(), name, from, name);
      } else if (there === 'EINVAL') results.einval++;
      else if (there !== 'ENOENT') results.other.push(there); // ENOENT: the other moved our parent meanwhile
    }
  };
  // c moves A under B/b1 and back; c2 moves B under A/a1 and back: each makes the other's move
  // a move into its own subtree while it holds.
  await Promise.all([loop(c, ROOT_INO, 'A', () => b1.ino), loop(c2, ROOT_INO, 'B', () => a1.ino)]);
  t.same(results.other, [], 'no unexpected errors');
  t.ok(results.moved > 0 && results.einval > 0, `moves happened and met (${results.moved} moved, ${results.einval} EINVAL)`);
  await noCycles(c);
  t.pass('every directory reaches the root; no cycle');
  t.equal((await c.getattr(A.ino)).parent, ROOT_INO, 'A back under the root');
  t.equal((await c.getattr(B.ino)).parent, ROOT_INO, 'B back under the root');
});
