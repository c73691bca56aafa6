// A rename between two partitions over an existing directory whose inode lives in a third
// partition (formerly EXDEV): the replaced directory is a second participant (`unlink-inode`
// where its inode is), which checks its emptiness and drops it at the decision. Three
// partitions on one replica; the ranges are tiny so inodes land where the test needs them.
import t from 'tap';
import { ROOT_INO, S_IFDIR, LocalPartition } from '../../lib/meta/index.js';
import { leaderOf } from '../table/cluster.js';
import { startMeta, codeOf } from './harness.js';

const h = await startMeta({ partitions: [{ groupId: 100, start: 1, end: 5 }, { groupId: 200, start: 1000, end: 100_000 }, { groupId: 300, start: 200_000, end: 200_005 }] });
t.teardown(() => h.close());
const c = h.client({ inoMode: 'cursor' });
const where = (ino: number) => (ino < 5 ? 100 : ino < 100_000 ? 200 : 300);

t.test('rename between partitions over a directory whose inode is in a third', async (t) => {
  for (const n of ['a', 'b', 'c']) await c.create(ROOT_INO, n, 0o644); // the root partition is full
  const q = await c.mkdir(ROOT_INO, 'Q', 0o755);
  const tDir = await c.mkdir(q.ino, 'T', 0o755);
  const t2 = await c.mkdir(q.ino, 'T2', 0o755);
  await c.create(t2.ino, 'f', 0o644);
  const g = await c.create(q.ino, 'g', 0o644);
  const x = await c.mkdir(ROOT_INO, 'X', 0o755);
  const s = await c.mkdir(ROOT_INO, 'S', 0o755);
  await c.create(s.ino, 'inside', 0o644);
  const s2 = await c.mkdir(ROOT_INO, 'S2', 0o755);
  t.same([q, tDir, t2, g].map((i) => where(i.ino)), [300, 300, 300, 300], 'Q, Q/T, Q/T2, Q/g in partition 300');
  t.same([x, s, s2].map((i) => where(i.ino)), [200, 200, 200], 'X, S, S2 in partition 200');
  // T and T2 move under X: their entries go to partition 200, their inodes stay in 300.
  await c.rename(q.ino, 'T', x.ino, 'T');
  await c.rename(q.ino, 'T2', x.ino, 'T2');
  const xLinks = (await c.getattr(x.ino)).nlink;
  const rootLinks = (await c.getattr(ROOT_INO)).nlink;

  t.equal(await codeOf(c.rename(ROOT_INO, 'S2', x.ino, 'T2')), 'ENOTEMPTY', 'over a non-empty one: ENOTEMPTY from where its entries are');
  t.equal((await c.lookup(x.ino, 'T2')).ino, t2.ino, 'nothing changed');
  t.equal((await c.lookup(ROOT_INO, 'S2')).ino, s2.ino);

  await c.rename(ROOT_INO, 'S', x.ino, 'T'); // root (100) -> X (200), T's inode in 300
  t.equal((await c.lookup(x.ino, 'T')).ino, s.ino, 'X/T is S now');
  t.equal(await codeOf(c.lookup(ROOT_INO, 'S')), 'ENOENT');
  t.equal(await codeOf(c.getattr(tDir.ino)), 'ENOENT', 'the replaced directory is gone from partition 300');
  t.equal((await c.getattr(s.ino)).parent, x.ino, 'S\'s parent pointer');
  t.equal((await c.getattr(x.ino)).nlink, xLinks, 'X: one subdirectory for another');
  t.equal((await c.getattr(ROOT_INO)).nlink, rootLinks - 1, 'the root lost one');
  t.equal((await c.lookup(s.ino, 'inside')).type, 0o100000, 'contents came along');
  t.equal(await c.recoverIntents(0), 0, 'nothing left to recover');

  // A replaced file in the third partition: its link is dropped in the same decision.
  await c.link(g.ino, q.ino, 'g-link');
  await c.rename(q.ino, 'g', x.ino, 'g'); // its entry to partition 200, its inode stays in 300
  const a = await c.lookup(ROOT_INO, 'a');
  await c.rename(ROOT_INO, 'a', x.ino, 'g');
  t.equal((await c.lookup(x.ino, 'g')).ino, a.ino, 'X/g is a now');
  t.equal((await c.getattr(g.ino)).nlink, 1, 'the replaced file lost exactly one link');
  t.equal((await c.lookup(q.ino, 'g-link')).ino, g.ino, 'its other link stays');
  t.equal(await c.recoverIntents(0), 0, 'nothing left to recover');

  // A client that died after the decision: recovery finishes both participants.
  await c.unlink(t2.ino, 'f');
  const [p1, p2, p3] = [100, 200, 300].map((g) => new LocalPartition(() => leaderOf(h.groups.get(g)!)!));
  const now = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
  const txid = 'dead-third';
  await p3!.exec({ op: 'prepare', txid: `${txid}#2`, now, intent: { kind: 'unlink-inode', ino: t2.ino, peerGroup: 100, createdMs: 1 } });
  await p2!.exec({ op: 'prepare', txid, now, intent: { kind: 'rename-dst', parent: x.ino, name: Buffer.from('T2'), ino: s2.ino, type: S_IFDIR, peerGroup: 100, peerGroup2: 300, replacedIno: t2.ino, createdMs: 1 } });
  await p1!.exec({ op: 'prepare', txid, now, intent: { kind: 'rename-src', parent: ROOT_INO, name: Buffer.from('S2'), ino: s2.ino, type: S_IFDIR, peerGroup: 200, peerGroup2: 300, newParent: x.ino, createdMs: 1 } });
  await p1!.exec({ op: 'finish', txid, commit: true, intent: { kind: 'rename-src' }, now });
  t.equal(await codeOf(c.lookup(ROOT_INO, 'S2')), 'ENOENT', 'decided: the source entry is gone');
  await c.recoverIntents(0);
  await c.recoverIntents(0);
  t.equal((await c.lookup(x.ino, 'T2')).ino, s2.ino, 'recovery completed the destination');
  t.equal(await codeOf(c.getattr(t2.ino)), 'ENOENT', 'and unlinked the replaced directory in the third partition');
  for (const p of [p1, p2, p3]) t.same(((await p!.read({ op: 'intents' })).intents ?? []).filter((i) => (i.txid ?? '').startsWith(txid)), [], 'no intent left');
});
