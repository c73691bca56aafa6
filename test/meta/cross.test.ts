// Operations across two partitions (3 replicas each): creates after the parent's partition ran
// out of inos, renames and hard links between directories on different partitions, their errno
// cases, and recovery of every half-finished two-phase state a crashed client can leave.
import t from 'tap';
import { RpcPool } from '../../lib/rpc/index.js';
import {
  ROOT_INO, S_IFDIR, S_IFREG, RENAME_NOREPLACE, RemotePartition, recoverIntents, timespecOf,
  type CrossContext, type Side, type Inode,
} from '../../lib/meta/index.js';
import { startMeta, codeOf } from './harness.js';

const h = await startMeta({ nodes: [1, 2, 3], partitions: [{ groupId: 100, start: 1, end: 10 }, { groupId: 200, start: 1000, end: 1_000_000 }] });
const pool = new RpcPool();
t.teardown(async () => {
  await pool.close();
  await h.close();
});
let clock = 1_700_000_000_000;
const c = h.client({ now: () => clock });

const sides = new Map<number, Side>();
for (const r of h.routes) {
  const b = new RemotePartition(r, pool, 'test-side', 10_000);
  sides.set(r.groupId, { groupId: r.groupId, exec: (q) => b.exec(q), read: (q) => b.read(q) });
}
const p1 = sides.get(100) as Side;
const p2 = sides.get(200) as Side;
let txn = 0;
const ctx: CrossContext = {
  now: () => timespecOf(clock),
  nowMs: () => clock,
  txid: () => `tx-${++txn}`,
  sideOf: async (ino) => (ino < 10 ? p1 : p2),
  sideOfGroup: (g) => sides.get(g),
};

let d2: Inode;
t.test('creates move to another partition when the parent partition has no inos left', async (t) => {
  const local: Inode[] = [];
  for (let i = 0; i < 8; i++) local.push(await c.create(ROOT_INO, `f${i}`, 0o644));
  t.ok(local.every((x) => x.ino < 10), 'the first creates stay in partition 1');
  d2 = await c.mkdir(ROOT_INO, 'd2', 0o755);
  t.ok(d2.ino >= 1000, `the next inode lives in partition 2 (${d2.ino})`);
  const l = await c.lookup(ROOT_INO, 'd2');
  t.equal(l.ino, d2.ino);
  t.equal(l.inode.mode & 0o170000, S_IFDIR, 'lookup fetches the inode from the other partition');
  t.equal((await c.getattr(ROOT_INO)).nlink, 3, 'root counts the remote subdir');
  t.equal(l.inode.parent, ROOT_INO);
  const inner = await c.create(d2.ino, 'inner', 0o644);
  t.ok(inner.ino >= 1000, 'children of a partition-2 directory live there');
  t.equal(await codeOf(c.mkdir(ROOT_INO, 'd2', 0o755)), 'EEXIST', 'a cross create still checks the name');
  t.same((await c.readdirAll(ROOT_INO)).map((e) => e.name.toString()).sort(), ['d2', 'f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7']);
});

t.test('rename across partitions, over a target, and its errno cases', async (t) => {
  const f0 = await c.lookup(ROOT_INO, 'f0');
  clock += 1000;
  await c.rename(ROOT_INO, 'f0', d2.ino, 'moved');
  t.equal(await codeOf(c.lookup(ROOT_INO, 'f0')), 'ENOENT', 'gone from the source');
  t.equal((await c.lookup(d2.ino, 'moved')).ino, f0.ino, 'present at the destination');
  t.equal((await c.getattr(f0.ino)).nlink, 1);
  t.equal((await c.getattr(d2.ino)).mtime?.sec, clock / 1000, 'destination dir mtime');
  // over an existing file whose inode lives in partition 2: its link is dropped there
  const victim = await c.create(d2.ino, 'victim', 0o644);
  await c.rename(ROOT_INO, 'f1', d2.ino, 'victim');
  t.equal(await codeOf(c.getattr(victim.ino)), 'ENOENT', 'replaced inode deleted in its own partition');
  // back again, over a partition-1 name
  await c.rename(d2.ino, 'victim', ROOT_INO, 'f2');
  t.equal(await codeOf(c.lookup(d2.ino, 'victim')), 'ENOENT');
  t.equal((await c.readdirAll(ROOT_INO)).filter((e) => e.name.toString() === 'f2').length, 1);
  // errno cases
  t.equal(await codeOf(c.rename(ROOT_INO, 'nope', d2.ino, 'x')), 'ENOENT');
  t.equal(await codeOf(c.rename(ROOT_INO, 'f3', d2.ino, 'moved', RENAME_NOREPLACE)), 'EEXIST');
  const sub = await c.mkdir(d2.ino, 'sub', 0o755);
  t.equal(await codeOf(c.rename(ROOT_INO, 'f3', d2.ino, 'sub')), 'EISDIR');
  const dirInP1 = await c.lookup(ROOT_INO, 'd2');
  void dirInP1;
  await c.create(sub.ino, 'x', 0o644);
  t.equal(await codeOf(c.rename(ROOT_INO, 'd2', d2.ino, 'loop')), 'EINVAL', 'a directory into itself');
  t.equal(await codeOf(c.rename(ROOT_INO, 'd2', sub.ino, 'loop')), 'EINVAL', 'a directory into its own subtree across partitions');
  // a directory from partition 2 into root (partition 1) keeps nlinks right
  const rootLinks = (await c.getattr(ROOT_INO)).nlink;
  await c.rename(d2.ino, 'sub', ROOT_INO, 'sub');
  t.equal((await c.getattr(ROOT_INO)).nlink, rootLinks + 1, 'root gained a subdir');
  t.equal((await c.getattr(d2.ino)).nlink, 2, 'd2 lost it');
  t.equal((await c.getattr(sub.ino)).parent, ROOT_INO, 'moved dir points at its new parent');
  await c.rename(ROOT_INO, 'f3', ROOT_INO, 'f3b');
  t.equal(await codeOf(c.rename(ROOT_INO, 'f3b', d2.ino, 'inner')), '', 'file over file across partitions');
  await c.create(d2.ino, 'nonempty', 0o644);
  const e2 = await c.mkdir(d2.ino, 'full', 0o755);
  await c.create(e2.ino, 'y', 0o644);
  t.equal(await codeOf(c.rename(ROOT_INO, 'sub', d2.ino, 'full')), 'ENOTEMPTY');
  t.equal(await codeOf(c.rename(ROOT_INO, 'sub', d2.ino, 'nonempty')), 'ENOTDIR');
  t.same(await c.recoverIntents(0), 0, 'nothing left half-done');
});

t.test('hard link to an inode in another partition', async (t) => {
  const f4 = await c.lookup(ROOT_INO, 'f4');
  const l = await c.link(f4.ino, d2.ino, 'hard');
  t.equal(l.nlink, 2);
  t.equal((await c.lookup(d2.ino, 'hard')).ino, f4.ino);
  t.equal(await codeOf(c.link(f4.ino, d2.ino, 'hard')), 'EEXIST');
  t.equal((await c.getattr(f4.ino)).nlink, 2, 'a failed link leaves nlink alone');
  t.equal(await codeOf(c.link(d2.ino, ROOT_INO, 'dl')), 'EPERM');
  await c.unlink(ROOT_INO, 'f4');
  t.equal((await c.getattr(f4.ino)).nlink, 1);
});

t.test('unlink and rmdir of entries whose inode lives in another partition', async (t) => {
  // Root's dentries are in partition 1; these inodes were created in partition 2.
  const f = await c.create(ROOT_INO, 'remote-file', 0o644);
  t.ok(f.ino >= 1000, 'the inode is in partition 2');
  await c.link(f.ino, ROOT_INO, 'remote-file-2');
  await c.unlink(ROOT_INO, 'remote-file');
  t.equal((await c.getattr(f.ino)).nlink, 1, 'one link dropped in the other partition');
  t.equal(await codeOf(c.lookup(ROOT_INO, 'remote-file')), 'ENOENT');
  await c.unlink(ROOT_INO, 'remote-file-2');
  t.equal(await codeOf(c.getattr(f.ino)), 'ENOENT', 'last link: the inode is gone');
  const d = await c.mkdir(ROOT_INO, 'remote-dir', 0o755);
  await c.create(d.ino, 'child', 0o644);
  const links = (await c.getattr(ROOT_INO)).nlink;
  t.equal(await codeOf(c.rmdir(ROOT_INO, 'remote-dir')), 'ENOTEMPTY', 'emptiness is checked where the entries are');
  t.equal(await codeOf(c.unlink(ROOT_INO, 'remote-dir')), 'EISDIR');
  await c.unlink(d.ino, 'child');
  await c.rmdir(ROOT_INO, 'remote-dir');
  t.equal(await codeOf(c.getattr(d.ino)), 'ENOENT');
  t.equal((await c.getattr(ROOT_INO)).nlink, links - 1, 'parent nlink follows');
  // A file open elsewhere survives its cross-partition unlink as an orphan.
  const o = await c.create(ROOT_INO, 'remote-open', 0o644);
  await c.openHandle(o.ino);
  await c.unlink(ROOT_INO, 'remote-open');
  t.equal((await c.getattr(o.ino)).nlink, 0);
  await c.closeHandle(o.ino);
  t.equal(await codeOf(c.getattr(o.ino)), 'ENOENT');
  // A directory whose inode lives elsewhere, renamed within its parent's partition: two phases
  // (its parent pointer is in the other partition).
  const rd = await c.mkdir(ROOT_INO, 'rd', 0o755);
  await c.create(rd.ino, 'inside', 0o644);
  const rootLinks = (await c.getattr(ROOT_INO)).nlink;
  await c.rename(ROOT_INO, 'rd', ROOT_INO, 'rd2');
  t.equal((await c.lookup(ROOT_INO, 'rd2')).ino, rd.ino);
  t.equal(await codeOf(c.lookup(ROOT_INO, 'rd')), 'ENOENT');
  t.equal((await c.getattr(rd.ino)).parent, ROOT_INO);
  t.equal((await c.getattr(ROOT_INO)).nlink, rootLinks, 'same parent: nlink unchanged');
  t.equal((await c.lookup(rd.ino, 'inside')).type, 0o100000, 'its contents moved with it');
  // A client that died after preparing both sides of an rmdir: recovery aborts, and the
  // directory takes entries again.
  const e = await c.mkdir(ROOT_INO, 'dying', 0o755);
  const old = clock - 60_000;
  await p2.exec({ op: 'prepare', txid: 'dead-rm', now: ctx.now(), intent: { kind: 'unlink-inode', ino: e.ino, peerGroup: 100, createdMs: old } });
  t.equal(await codeOf(c.create(e.ino, 'x', 0o644)), 'ENOENT', 'a directory being removed takes no entries');
  await p1.exec({ op: 'prepare', txid: 'dead-rm', now: ctx.now(), leaseMs: old, intent: { kind: 'unlink-dentry', parent: ROOT_INO, name: Buffer.from('dying'), ino: e.ino, peerGroup: 200, createdMs: old } });
  t.equal(await recoverIntents(ctx, p1), 1);
  t.equal(await recoverIntents(ctx, p2), 1);
  t.equal((await c.lookup(ROOT_INO, 'dying')).ino, e.ino, 'aborted: still there');
  t.equal(await codeOf(c.create(e.ino, 'x', 0o644)), '', 'and open for entries again');
});

t.test('recovery after a client died mid-protocol', async (t) => {
  const old = clock - 60_000; // older than the intent timeout
  // (a) only the participant prepared: recovery aborts, the name is free again
  const f5 = await c.lookup(ROOT_INO, 'f5');
  await p2.exec({ op: 'prepare', txid: 'dead-a', now: ctx.now(), intent: { kind: 'rename-dst', parent: d2.ino, name: Buffer.from('ghost'), ino: f5.ino, type: S_IFREG, peerGroup: 100, createdMs: old } });
  t.equal(await codeOf(c.create(d2.ino, 'ghost', 0o644)), 'EAGAIN', 'a reserved name cannot be taken meanwhile');
  t.equal(await recoverIntents(ctx, p2), 1);
  t.equal(await codeOf(c.lookup(d2.ino, 'ghost')), 'ENOENT', 'aborted: no entry');
  t.equal((await c.lookup(ROOT_INO, 'f5')).ino, f5.ino, 'source untouched');
  t.equal(await codeOf(p1.exec({ op: 'prepare', txid: 'dead-a', now: ctx.now(), leaseMs: clock, intent: { kind: 'rename-src', parent: ROOT_INO, name: Buffer.from('f5'), ino: f5.ino, type: S_IFREG, peerGroup: 200, createdMs: old } })), 'EAGAIN', 'the late coordinator is fenced out');
  t.equal(await recoverIntents(ctx, p1), 0, 'a fresh fence is kept');
  // (b) both prepared and the decision made (commit), participant not finished: recovery commits it
  await p2.exec({ op: 'prepare', txid: 'dead-b', now: ctx.now(), intent: { kind: 'rename-dst', parent: d2.ino, name: Buffer.from('f5-moved'), ino: f5.ino, type: S_IFREG, peerGroup: 100, createdMs: old } });
  await p1.exec({ op: 'prepare', txid: 'dead-b', now: ctx.now(), leaseMs: old, intent: { kind: 'rename-src', parent: ROOT_INO, name: Buffer.from('f5'), ino: f5.ino, type: S_IFREG, peerGroup: 200, createdMs: old } });
  await p1.exec({ op: 'finish', txid: 'dead-b', commit: true, now: ctx.now(), intent: { kind: 'rename-src' } });
  t.equal(await codeOf(c.lookup(ROOT_INO, 'f5')), 'ENOENT', 'decided: the source is gone');
  t.equal(await recoverIntents(ctx, p2), 1);
  t.equal((await c.lookup(d2.ino, 'f5-moved')).ino, f5.ino, 'and recovery completed the destination');
  t.same((await p1.read({ op: 'intent', txid: 'dead-b' })).intents ?? [], [], 'the decision is forgotten');
  // (c) both prepared, no decision: recovery on the coordinator aborts, then the participant follows
  const f6 = await c.lookup(ROOT_INO, 'f6');
  await p2.exec({ op: 'prepare', txid: 'dead-c', now: ctx.now(), intent: { kind: 'rename-dst', parent: d2.ino, name: Buffer.from('f6-moved'), ino: f6.ino, type: S_IFREG, peerGroup: 100, createdMs: old } });
  await p1.exec({ op: 'prepare', txid: 'dead-c', now: ctx.now(), leaseMs: old, intent: { kind: 'rename-src', parent: ROOT_INO, name: Buffer.from('f6'), ino: f6.ino, type: S_IFREG, peerGroup: 200, createdMs: old } });
  t.equal(await codeOf(c.unlink(ROOT_INO, 'f6')), 'EAGAIN', 'the source name is held');
  t.equal(await recoverIntents(ctx, p1), 1, 'coordinator aborts');
  t.equal(await recoverIntents(ctx, p2), 1, 'participant follows');
  t.equal((await c.lookup(ROOT_INO, 'f6')).ino, f6.ino, 'aborted: the file is where it was');
  t.equal(await codeOf(c.lookup(d2.ino, 'f6-moved')), 'ENOENT');
  await c.unlink(ROOT_INO, 'f6');
  // (d) a cross link whose client died after reserving the link: abort drops the extra nlink
  const f7 = await c.lookup(ROOT_INO, 'f7');
  await p2.exec({ op: 'prepare', txid: 'dead-d', now: ctx.now(), intent: { kind: 'link-dentry', parent: d2.ino, name: Buffer.from('f7-link'), ino: f7.ino, type: S_IFREG, peerGroup: 100, createdMs: old } });
  await p1.exec({ op: 'prepare', txid: 'dead-d', now: ctx.now(), leaseMs: old, intent: { kind: 'link-inode', ino: f7.ino, peerGroup: 200, createdMs: old } });
  t.equal((await c.getattr(f7.ino)).nlink, 2, 'link counted at prepare');
  await recoverIntents(ctx, p1);
  await recoverIntents(ctx, p2);
  t.equal((await c.getattr(f7.ino)).nlink, 1, 'and dropped on abort');
  t.equal(await codeOf(c.lookup(d2.ino, 'f7-link')), 'ENOENT');
  // (e) a cross create whose client died: the half-made inode is deleted
  const st0 = await c.statfs();
  await p2.exec({ op: 'prepare', txid: 'dead-e', now: ctx.now(), intent: { kind: 'link-dentry', parent: ROOT_INO, name: Buffer.from('half'), ino: 5000, type: S_IFREG, peerGroup: 200, createdMs: old } }).catch(() => undefined);
  await p1.exec({ op: 'prepare', txid: 'dead-e', now: ctx.now(), intent: { kind: 'link-dentry', parent: ROOT_INO, name: Buffer.from('half'), ino: 5000, type: S_IFREG, peerGroup: 200, createdMs: old } });
  const alloc = await p2.exec({ op: 'alloc', count: 1, now: ctx.now() });
  await p2.exec({ op: 'prepare', txid: 'dead-e2', mode: S_IFREG | 0o644, ino: alloc.first ?? 0, now: ctx.now(), leaseMs: old, intent: { kind: 'create-inode', parent: ROOT_INO, ino: alloc.first ?? 0, peerGroup: 100, createdMs: old } });
  t.equal((await c.statfs()).inodes, st0.inodes + 1, 'the inode exists while undecided');
  t.ok((await recoverIntents(ctx, p2)) >= 1);
  t.ok((await recoverIntents(ctx, p1)) >= 1);
  t.equal((await c.statfs()).inodes, st0.inodes, 'and is gone after recovery');
  t.equal(await codeOf(c.lookup(ROOT_INO, 'half')), 'ENOENT');
  // (f) a directory with a name reserved in it cannot be removed before the decision
  const held = await c.mkdir(d2.ino, 'held', 0o755);
  await p2.exec({ op: 'prepare', txid: 'dead-f', now: ctx.now(), intent: { kind: 'rename-dst', parent: held.ino, name: Buffer.from('incoming'), ino: 5, type: S_IFREG, peerGroup: 100, createdMs: old } });
  t.equal(await codeOf(c.rmdir(d2.ino, 'held')), 'ENOTEMPTY', 'a reserved name counts as an entry');
  t.ok((await recoverIntents(ctx, p2)) >= 1);
  t.equal(await codeOf(c.rmdir(d2.ino, 'held')), '', 'removable once the operation is resolved');
  // everything settles: no intents left after the fences age out
  clock += 11 * 30_000;
  await recoverIntents(ctx, p1);
  await recoverIntents(ctx, p2);
  t.same((await p1.read({ op: 'intents' })).intents ?? [], [], 'partition 1 clean');
  t.same((await p2.read({ op: 'intents' })).intents ?? [], [], 'partition 2 clean');
});
