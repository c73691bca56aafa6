// Directory renames whose subtree check crosses partitions (formerly EXDEV): the volume's
// directory-rename lock in the root partition, the client's walk of the destination's
// ancestors under it, EINVAL through an ancestor in another partition, a lock held by a
// vanished client expiring, and two clients racing opposite directory moves without ever
// building a cycle. Two partitions of 3 replicas over real sockets; the root partition has
// 8 inos, so later directories live in the other one.
import t from 'tap';
import { ROOT_INO, S_IFDIR, RENAME_ANCESTORS_CHECKED, LocalPartition, type MetaClient } from '../../lib/meta/index.js';
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

t.test('a rename in one partition with both inodes elsewhere (moved directory and replaced one): two participants', async (t) => {
  // The root partition is full: new directories live in partition 200, their entries in 100.
  const m = await path(c, 'm');
  const s1 = await c.mkdir(ROOT_INO, 'S1', 0o755);
  const s2 = await c.mkdir(ROOT_INO, 'S2', 0o755);
  await c.create(s1.ino, 'inside', 0o644);
  t.ok(!inP1(s1.ino) && !inP1(s2.ino), 'both inodes in the other partition');
  const rootLinks = (await c.getattr(ROOT_INO)).nlink;
  // Same parent (no lock): S1 replaces the empty S2.
  await c.rename(ROOT_INO, 'S1', ROOT_INO, 'S2');
  t.equal((await c.lookup(ROOT_INO, 'S2')).ino, s1.ino, 'S2 is S1 now');
  t.equal(await codeOf(c.lookup(ROOT_INO, 'S1')), 'ENOENT');
  t.equal(await codeOf(c.getattr(s2.ino)), 'ENOENT', 'the replaced directory is gone');
  t.equal((await c.getattr(ROOT_INO)).nlink, rootLinks - 1, 'the root lost one subdirectory link');
  t.equal((await c.lookup(s1.ino, 'inside')).type, 0o100000, 'contents moved along');

  // To another parent (under the lock), over an empty directory there.
  const d2 = await c.mkdir(m, 'D2', 0o755);
  const mLinks = (await c.getattr(m)).nlink;
  await c.rename(ROOT_INO, 'S2', m, 'D2');
  t.equal((await c.lookup(m, 'D2')).ino, s1.ino, 'moved over D2');
  t.equal((await c.getattr(s1.ino)).parent, m, 'its parent pointer follows');
  t.equal(await codeOf(c.getattr(d2.ino)), 'ENOENT', 'D2\'s old inode is gone');
  t.equal((await c.getattr(m)).nlink, mLinks, 'm: one subdirectory replaced by another');
  t.equal((await c.getattr(ROOT_INO)).nlink, rootLinks - 2, 'the root lost another');

  // Over a non-empty directory: ENOTEMPTY, nothing changes, nothing stays held.
  const full = await c.mkdir(ROOT_INO, 'FULL', 0o755);
  await c.create(full.ino, 'x', 0o644);
  const mover = await c.mkdir(ROOT_INO, 'MOVER', 0o755);
  t.equal(await codeOf(c.rename(ROOT_INO, 'MOVER', ROOT_INO, 'FULL')), 'ENOTEMPTY');
  t.equal((await c.lookup(ROOT_INO, 'MOVER')).ino, mover.ino);
  t.equal((await c.lookup(ROOT_INO, 'FULL')).ino, full.ino);
  await c.unlink(full.ino, 'x');
  await c.rename(ROOT_INO, 'MOVER', ROOT_INO, 'FULL');
  t.equal((await c.lookup(ROOT_INO, 'FULL')).ino, mover.ino, 'and works once it is empty');
});

t.test('two participants: recovery after a client died decided, or undecided', async (t) => {
  const l1 = await waitFor(() => leaderOf(h.groups.get(100)!), 'leader 100');
  const l2 = await waitFor(() => leaderOf(h.groups.get(200)!), 'leader 200');
  const p1 = new LocalPartition(() => l1);
  const p2 = new LocalPartition(() => l2);
  const now = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
  const m = await path(c, 'm');
  // The moved directory comes from m (another parent in the root partition) to the root.
  const run = async (txid: string, src: string, dst: string, decide: boolean) => {
    const moved = (await c.lookup(m, src)).ino;
    const replaced = (await c.lookup(ROOT_INO, dst)).ino;
    await p2.exec({ op: 'prepare', txid, now, intent: { kind: 'unlink-inode', ino: replaced, peerGroup: 100, createdMs: 1 } });
    await p2.exec({ op: 'prepare', txid: `${txid}#2`, now, intent: { kind: 'reparent', ino: moved, newParent: ROOT_INO, peerGroup: 100, createdMs: 1 } });
    await p1.exec({ op: 'prepare', txid, now, intent: { kind: 'rename-local', parent: m, name: Buffer.from(src), newParent: ROOT_INO, newName: Buffer.from(dst), flags: RENAME_ANCESTORS_CHECKED, ino: moved, replacedIno: replaced, peerGroup: 200, peerGroup2: 200, createdMs: 1 } });
    if (decide) await p1.exec({ op: 'finish', txid, commit: true, intent: { kind: 'rename-local' }, now });
    return { moved, replaced };
  };
  // Decided, then the client died: both participants follow the decision; the first one
  // recovered must not forget it while the second still needs it.
  const a = await c.mkdir(m, 'RA', 0o755);
  const b = await c.mkdir(ROOT_INO, 'RB', 0o755);
  const r1 = await run('dead-two-1', 'RA', 'RB', true);
  t.same([r1.moved, r1.replaced], [a.ino, b.ino]);
  t.ok((await c.recoverIntents(0)) >= 2, 'recovery resolved the participants');
  await c.recoverIntents(0); // the decision, once neither participant has an intent
  t.equal((await c.lookup(ROOT_INO, 'RB')).ino, a.ino, 'the rename happened');
  t.equal(await codeOf(c.getattr(b.ino)), 'ENOENT', 'the replaced directory was unlinked (participant 1 committed)');
  t.equal((await c.getattr(a.ino)).parent, ROOT_INO, 'parent pointer moved from m to the root (participant 2 committed)');
  t.equal(await codeOf(c.lookup(m, 'RA')), 'ENOENT', 'no longer under m');
  t.same((await p1.read({ op: 'intents' })).intents?.filter((i) => (i.txid ?? '').startsWith('dead-two-1')) ?? [], [], 'coordinator clean');
  t.same((await p2.read({ op: 'intents' })).intents?.filter((i) => (i.txid ?? '').startsWith('dead-two-1')) ?? [], [], 'participants clean');

  // Undecided: recovery aborts everything and frees the names.
  const x = await c.mkdir(m, 'RX', 0o755);
  const y = await c.mkdir(ROOT_INO, 'RY', 0o755);
  await run('dead-two-2', 'RX', 'RY', false);
  t.equal(await codeOf(c.rename(m, 'RX', m, 'RZ')), 'EAGAIN', 'names held meanwhile');
  await c.recoverIntents(0);
  await c.recoverIntents(0);
  t.equal((await c.lookup(m, 'RX')).ino, x.ino, 'aborted: RX where it was');
  t.equal((await c.getattr(x.ino)).parent, m, 'its parent pointer too');
  t.equal((await c.lookup(ROOT_INO, 'RY')).ino, y.ino, 'RY too');
  t.equal((await c.getattr(y.ino)).nlink, 2, 'RY kept its links');
  await c.rename(m, 'RX', ROOT_INO, 'RY');
  t.equal((await c.lookup(ROOT_INO, 'RY')).ino, x.ino, 'and a rename works again');
});
