// Every metadata operation and every errno path, through MetaClient over the network to a
// partition (one replica here; replication is covered by the crash and cross tests).
import t from 'tap';
import { constants } from 'node:os';
import {
  MetaPosixError, ROOT_INO, S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, S_IFMT,
  SETATTR_MODE, SETATTR_UID, SETATTR_GID, SETATTR_SIZE, SETATTR_ATIME, SETATTR_MTIME, SETATTR_MTIME_NOW, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE,
  addExtent, truncateExtents, type Inode, type ExtentKey,
} from '../../lib/meta/index.js';
import { containerstack } from '../../proto/gen/meta.js';
import { startMeta, codeOf } from './harness.js';
import { Prng } from '../../lib/common/index.js';

const pb = containerstack.meta;
const h = await startMeta();
t.teardown(() => h.close());
let clock = 1_700_000_000_000;
const c = h.client({ now: () => clock });
const tick = (): number => (clock += 1000);
const secOf = (ts: { sec?: number | null } | null | undefined): number => ts?.sec ?? 0;

t.test('root, create, lookup, getattr', async (t) => {
  const root = await c.getattr(ROOT_INO);
  t.equal(root.mode & S_IFMT, S_IFDIR);
  t.equal(root.nlink, 2);
  tick();
  const f = await c.create(ROOT_INO, 'a.txt', 0o644, 1000, 1000);
  t.equal(f.mode, S_IFREG | 0o644);
  t.equal(f.uid, 1000);
  t.equal(f.nlink, 1);
  t.ok(f.generation > 0, 'generation set');
  t.equal(secOf(f.ctime), clock / 1000);
  const l = await c.lookup(ROOT_INO, 'a.txt');
  t.equal(l.ino, f.ino);
  t.equal(l.type, S_IFREG);
  t.equal(l.inode.ino, f.ino);
  const r2 = await c.getattr(ROOT_INO);
  t.equal(secOf(r2.mtime), clock / 1000, 'parent mtime updated by create');
  t.equal(await codeOf(c.create(ROOT_INO, 'a.txt', 0o644)), 'EEXIST');
  t.equal(await codeOf(c.lookup(ROOT_INO, 'nope')), 'ENOENT');
  t.equal(await codeOf(c.lookup(f.ino, 'x')), 'ENOTDIR', 'lookup under a file');
  t.equal(await codeOf(c.create(f.ino, 'x', 0o644)), 'ENOTDIR', 'create under a file');
  t.equal(await codeOf(c.create(999_999, 'x', 0o644)), 'ENOENT', 'create under a missing dir');
  t.equal(await codeOf(c.create(ROOT_INO, 'x'.repeat(256), 0o644)), 'ENAMETOOLONG');
  t.equal(await codeOf(c.create(ROOT_INO, 'x'.repeat(255), 0o644)), '', '255 bytes is fine');
  t.equal(await codeOf(c.create(ROOT_INO, 'a/b', 0o644)), 'EINVAL');
  t.equal(await codeOf(c.create(ROOT_INO, '..', 0o644)), 'EINVAL');
  t.equal(await codeOf(c.create(ROOT_INO, '', 0o644)), 'ENOENT');
  t.equal(await codeOf(c.getattr(123_456)), 'ENOENT');
  t.equal(await codeOf(c.getattr(f.ino, f.generation + 1)), 'ESTALE', 'generation mismatch');
  const e = await c.lookup(ROOT_INO, 'nope').catch((x: unknown) => x);
  t.ok(e instanceof MetaPosixError, 'typed error');
  t.equal((e as MetaPosixError).errno, constants.errno.ENOENT, 'carries errno');
});

t.test('mknod of every type, mkdir, symlink, readlink', async (t) => {
  const d = await c.mkdir(ROOT_INO, 'nodes', 0o755);
  t.equal(d.nlink, 2);
  t.equal((await c.getattr(ROOT_INO)).nlink, 3, 'parent nlink counts the subdir');
  for (const [name, type] of [['fifo', S_IFIFO], ['sock', S_IFSOCK], ['chr', S_IFCHR], ['blk', S_IFBLK], ['reg', S_IFREG]] as const) {
    const n = await c.mknod(d.ino, name, type | 0o600, 0x0801);
    t.equal(n.mode & S_IFMT, type, `${name} type`);
    t.equal(n.rdev, type === S_IFCHR || type === S_IFBLK ? 0x0801 : 0, `${name} rdev`);
  }
  t.equal(await codeOf(c.mknod(d.ino, 'bad', 0o170000 | 0o600)), 'EINVAL', 'bad type');
  const s = await c.symlink(d.ino, 'ln', '../target/path');
  t.equal(s.mode & S_IFMT, S_IFLNK);
  t.equal(s.size, 14);
  t.equal((await c.readlink(s.ino)).toString(), '../target/path');
  t.equal(await codeOf(c.readlink(d.ino)), 'EINVAL', 'readlink of a dir');
  t.equal(await codeOf(c.symlink(d.ino, 'ln2', '')), 'ENOENT', 'empty target');
  t.equal(await codeOf(c.symlink(d.ino, 'ln3', 'x'.repeat(4097))), 'ENAMETOOLONG');
  t.equal(await codeOf(c.mkdir(d.ino, 'fifo', 0o755)), 'EEXIST');
});

t.test('readdir pages with resumable cookies', async (t) => {
  const d = await c.mkdir(ROOT_INO, 'big', 0o755);
  const names: string[] = [];
  for (let i = 0; i < 130; i++) names.push(`f${String(i).padStart(3, '0')}`);
  await Promise.all(names.map((n) => c.create(d.ino, n, 0o644)));
  const seen: string[] = [];
  let cookie: Uint8Array | undefined;
  let pages = 0;
  do {
    const p = await c.readdir(d.ino, cookie, 50);
    seen.push(...p.entries.map((e) => e.name.toString()));
    t.ok(p.entries.every((e) => e.type === S_IFREG && e.ino > 0));
    cookie = p.cookie;
    pages++;
  } while (cookie);
  t.equal(pages, 3);
  t.same(seen, names, 'every name once, in order');
  // A cookie stays valid after the entry it names is removed.
  const p1 = await c.readdir(d.ino, undefined, 10);
  await c.unlink(d.ino, 'f009');
  const p2 = await c.readdir(d.ino, p1.cookie, 5);
  t.same(p2.entries.map((e) => e.name.toString()), ['f010', 'f011', 'f012', 'f013', 'f014']);
  t.equal(await codeOf(c.readdir((await c.lookup(d.ino, 'f000')).ino)), 'ENOTDIR');
  t.equal((await c.readdirAll(d.ino)).length, 129);
});

t.test('unlink, rmdir', async (t) => {
  const d = await c.mkdir(ROOT_INO, 'u', 0o755);
  const f = await c.create(d.ino, 'f', 0o644);
  const sub = await c.mkdir(d.ino, 'sub', 0o755);
  await c.create(sub.ino, 'inner', 0o644);
  t.equal(await codeOf(c.unlink(d.ino, 'sub')), 'EISDIR');
  t.equal(await codeOf(c.rmdir(d.ino, 'f')), 'ENOTDIR');
  t.equal(await codeOf(c.rmdir(d.ino, 'sub')), 'ENOTEMPTY');
  t.equal(await codeOf(c.unlink(d.ino, 'missing')), 'ENOENT');
  t.equal(await codeOf(c.rmdir(d.ino, 'missing')), 'ENOENT');
  t.equal(await codeOf(c.rmdir(d.ino, '.')), 'EINVAL');
  tick();
  await c.unlink(d.ino, 'f');
  t.equal(await codeOf(c.getattr(f.ino)), 'ENOENT', 'inode gone with its last link');
  t.equal(secOf((await c.getattr(d.ino)).mtime), clock / 1000, 'parent mtime');
  await c.unlink(sub.ino, 'inner');
  t.equal((await c.getattr(d.ino)).nlink, 3);
  await c.rmdir(d.ino, 'sub');
  t.equal((await c.getattr(d.ino)).nlink, 2, 'parent nlink back');
  t.equal(await codeOf(c.getattr(sub.ino)), 'ENOENT');
  t.equal(await codeOf(c.unlink(f.ino, 'x')), 'ENOENT', 'unlink under a deleted inode');
});

t.test('link and nlink', async (t) => {
  const d = await c.mkdir(ROOT_INO, 'l', 0o755);
  const f = await c.create(d.ino, 'f', 0o644);
  tick();
  const l = await c.link(f.ino, d.ino, 'g');
  t.equal(l.nlink, 2);
  t.equal(secOf(l.ctime), clock / 1000, 'link changes ctime');
  t.equal(await codeOf(c.link(f.ino, d.ino, 'g')), 'EEXIST');
  t.equal(await codeOf(c.link(d.ino, ROOT_INO, 'dirlink')), 'EPERM', 'no hard links to directories');
  t.equal(await codeOf(c.link(888_888, d.ino, 'h')), 'ENOENT');
  await c.unlink(d.ino, 'f');
  t.equal((await c.getattr(f.ino)).nlink, 1, 'still reachable through g');
  t.equal((await c.lookup(d.ino, 'g')).ino, f.ino);
  await c.unlink(d.ino, 'g');
  t.equal(await codeOf(c.getattr(f.ino)), 'ENOENT');
});

t.test('rename: every case', async (t) => {
  const a = await c.mkdir(ROOT_INO, 'ra', 0o755);
  const b = await c.mkdir(ROOT_INO, 'rb', 0o755);
  const f = await c.create(a.ino, 'f', 0o644);
  tick();
  await c.rename(a.ino, 'f', b.ino, 'g');
  t.equal(await codeOf(c.lookup(a.ino, 'f')), 'ENOENT');
  t.equal((await c.lookup(b.ino, 'g')).ino, f.ino);
  t.equal(secOf((await c.getattr(f.ino)).ctime), clock / 1000, 'moved inode ctime');
  t.equal(secOf((await c.getattr(a.ino)).mtime), clock / 1000, 'source parent mtime');
  t.equal(secOf((await c.getattr(b.ino)).mtime), clock / 1000, 'target parent mtime');
  // over an existing file: the old target loses its link
  const old = await c.create(b.ino, 'old', 0o644);
  await c.rename(b.ino, 'g', b.ino, 'old');
  t.equal((await c.lookup(b.ino, 'old')).ino, f.ino);
  t.equal(await codeOf(c.getattr(old.ino)), 'ENOENT', 'replaced inode deleted');
  // same file under two names: nothing happens
  await c.link(f.ino, b.ino, 'alias');
  await c.rename(b.ino, 'old', b.ino, 'alias');
  t.equal((await c.lookup(b.ino, 'old')).ino, f.ino, 'both names remain (POSIX)');
  t.equal((await c.getattr(f.ino)).nlink, 2);
  // errno cases
  t.equal(await codeOf(c.rename(a.ino, 'missing', b.ino, 'x')), 'ENOENT');
  const d1 = await c.mkdir(a.ino, 'd1', 0o755);
  const d2 = await c.mkdir(b.ino, 'd2', 0o755);
  await c.create(d2.ino, 'child', 0o644);
  t.equal(await codeOf(c.rename(a.ino, 'd1', b.ino, 'old')), 'ENOTDIR', 'dir over a file');
  t.equal(await codeOf(c.rename(b.ino, 'old', b.ino, 'd2')), 'EISDIR', 'file over a dir');
  t.equal(await codeOf(c.rename(a.ino, 'd1', b.ino, 'd2')), 'ENOTEMPTY', 'dir over a non-empty dir');
  t.equal(await codeOf(c.rename(ROOT_INO, 'ra', d1.ino, 'x')), 'EINVAL', 'dir into its own subtree');
  t.equal(await codeOf(c.rename(ROOT_INO, 'ra', a.ino, 'x')), 'EINVAL', 'dir into itself');
  t.equal(await codeOf(c.rename(a.ino, 'd1', b.ino, 'alias', RENAME_NOREPLACE)), 'EEXIST', 'RENAME_NOREPLACE');
  t.equal(await codeOf(c.rename(a.ino, 'd1', f.ino, 'x')), 'ENOTDIR', 'target parent not a dir');
  t.equal(await codeOf(c.rename(a.ino, 'd1', b.ino, 'x'.repeat(256))), 'ENAMETOOLONG');
  // dir over an empty dir, across parents: nlinks follow
  const empty = await c.mkdir(b.ino, 'empty', 0o755);
  const bBefore = (await c.getattr(b.ino)).nlink;
  const aBefore = (await c.getattr(a.ino)).nlink;
  await c.rename(a.ino, 'd1', b.ino, 'empty');
  t.equal(await codeOf(c.getattr(empty.ino)), 'ENOENT', 'replaced empty dir deleted');
  t.equal((await c.lookup(b.ino, 'empty')).ino, d1.ino);
  t.equal((await c.getattr(b.ino)).nlink, bBefore, 'target parent: one subdir replaced by another');
  t.equal((await c.getattr(a.ino)).nlink, aBefore - 1, 'source parent lost a subdir');
  t.equal((await c.getattr(d1.ino)).parent, b.ino, 'moved dir knows its new parent');
  // after the move, moving b's ancestor into d1 is refused
  t.equal(await codeOf(c.rename(ROOT_INO, 'rb', d1.ino, 'loop')), 'EINVAL');
  // rename within one dir
  await c.rename(b.ino, 'alias', b.ino, 'renamed');
  t.equal((await c.lookup(b.ino, 'renamed')).ino, f.ino);
});

t.test('setattr: POSIX time rules and truncate', async (t) => {
  const f = await c.create(ROOT_INO, 'attrs', 0o644);
  tick();
  let a = await c.setattr(f.ino, { valid: SETATTR_MODE, mode: 0o4755 });
  t.equal(a.mode, S_IFREG | 0o4755);
  t.equal(secOf(a.ctime), clock / 1000, 'chmod sets ctime');
  t.equal(secOf(a.mtime), clock / 1000 - 1, 'chmod leaves mtime');
  tick();
  a = await c.setattr(f.ino, { valid: SETATTR_UID | SETATTR_GID, uid: 5, gid: 6 });
  t.equal(a.uid, 5);
  t.equal(a.gid, 6);
  t.equal(a.mode, S_IFREG | 0o755, 'chown clears setuid');
  t.equal(secOf(a.ctime), clock / 1000);
  tick();
  a = await c.setattr(f.ino, { valid: SETATTR_ATIME | SETATTR_MTIME, atime: { sec: 100, nsec: 5 }, mtime: { sec: 200, nsec: 7 } });
  t.same([secOf(a.atime), a.atime?.nsec, secOf(a.mtime), a.mtime?.nsec], [100, 5, 200, 7], 'explicit times with ns');
  t.equal(secOf(a.ctime), clock / 1000, 'utimes sets ctime to now');
  tick();
  a = await c.setattr(f.ino, { valid: SETATTR_MTIME_NOW });
  t.equal(secOf(a.mtime), clock / 1000, 'UTIME_NOW');
  tick();
  a = await c.appendExtents(f.ino, [{ groupId: 1, extentId: 1, offset: 0, length: 1000, crc: 7, fileOffset: 0 }]).then((r) => r.inode);
  t.equal(a.size, 1000);
  t.equal(secOf(a.mtime), clock / 1000, 'write sets mtime');
  tick();
  a = await c.truncate(f.ino, 300);
  t.equal(a.size, 300);
  t.equal(a.extents.length, 1);
  t.equal(a.extents[0]?.length, 300);
  t.equal(secOf(a.mtime), clock / 1000, 'truncate sets mtime');
  t.equal(secOf(a.ctime), clock / 1000, 'truncate sets ctime');
  a = await c.truncate(f.ino, 5000);
  t.equal(a.size, 5000, 'extend leaves a hole');
  t.equal(a.extents.length, 1);
  const d = await c.mkdir(ROOT_INO, 'tdir', 0o755);
  t.equal(await codeOf(c.setattr(d.ino, { valid: SETATTR_SIZE, size: 0 })), 'EISDIR');
  const s = await c.symlink(ROOT_INO, 'tlink', 'x');
  t.equal(await codeOf(c.setattr(s.ino, { valid: SETATTR_SIZE, size: 0 })), 'EINVAL');
  t.equal(await codeOf(c.setattr(777_777, { valid: SETATTR_MODE, mode: 0 })), 'ENOENT');
});

t.test('extent map: append, overwrite, merge, truncate', async (t) => {
  const f = await c.create(ROOT_INO, 'data', 0o644);
  let r = await c.appendExtents(f.ino, [{ groupId: 3, extentId: 9, offset: 0, length: 4096, crc: 11, fileOffset: 0 }]);
  r = await c.appendExtents(f.ino, [{ groupId: 3, extentId: 9, offset: 4096, length: 4096, crc: 12, fileOffset: 4096 }]);
  t.equal(r.inode.extents.length, 1, 'a sequential append merges into one key');
  t.equal(r.inode.extents[0]?.length, 8192);
  t.equal(r.inode.size, 8192);
  // overwrite the middle with data from another extent
  r = await c.appendExtents(f.ino, [{ groupId: 4, extentId: 1, offset: 100, length: 1000, crc: 13, fileOffset: 2000 }]);
  t.same(r.inode.extents.map((e) => [e.groupId, e.extentId, e.offset, e.length, e.fileOffset]), [[3, 9, 0, 2000, 0], [4, 1, 100, 1000, 2000], [3, 9, 3000, 5192, 3000]]);
  t.same(r.freed.map((e) => [e.groupId, e.offset, e.length]), [[3, 2000, 1000]], 'the overwritten bytes are reported freed');
  t.equal(r.inode.size, 8192, 'an overwrite inside the file keeps its size');
  r = await c.appendExtents(f.ino, [{ groupId: 5, extentId: 1, offset: 0, length: 10, crc: 1, fileOffset: 20_000 }]);
  t.equal(r.inode.size, 20_010, 'a write past the end extends (with a hole)');
  const d = await c.mkdir(ROOT_INO, 'edir', 0o755);
  t.equal(await codeOf(c.appendExtents(d.ino, [{ groupId: 1, extentId: 1, offset: 0, length: 1, crc: 0, fileOffset: 0 }])), 'EISDIR');
  t.equal(await codeOf(c.appendExtents(f.ino, [{ groupId: 1, extentId: 1, offset: 0, length: 0, crc: 0, fileOffset: 0 }])), 'EINVAL', 'empty extent');
  t.equal(await codeOf(c.appendExtents(f.ino, [], { generation: f.generation + 5 })), 'ESTALE');
  // pure functions: an overwrite spanning several pieces
  const node = pb.Inode.create({ extents: [] }) as Inode;
  const freed: ExtentKey[] = [];
  for (let i = 0; i < 4; i++) addExtent(node, { groupId: i, extentId: 1, offset: 0, length: 10, crc: 0, fileOffset: i * 10 }, freed);
  addExtent(node, { groupId: 9, extentId: 1, offset: 0, length: 20, crc: 0, fileOffset: 5 }, freed);
  t.same(node.extents.map((e) => [e.groupId, e.fileOffset, e.length, e.offset]), [[0, 0, 5, 0], [9, 5, 20, 0], [2, 25, 5, 5], [3, 30, 10, 0]]);
  t.equal(freed.reduce((s, e) => s + (e.length ?? 0), 0), 20);
  truncateExtents(node, 27, freed);
  t.same(node.extents.map((e) => [e.groupId, e.fileOffset, e.length]), [[0, 0, 5], [9, 5, 20], [2, 25, 2]]);
});

/** The straightforward O(N) extent insert that addExtent replaced: the model it must match. */
function referenceAddExtent(list: ExtentKey[], add: ExtentKey, freed: ExtentKey[]): ExtentKey[] {
  type X = { groupId: number; extentId: number; offset: number; length: number; crc: number; fileOffset: number };
  const f = (e: ExtentKey): X => ({ groupId: e.groupId ?? 0, extentId: e.extentId ?? 0, offset: e.offset ?? 0, length: e.length ?? 0, crc: e.crc ?? 0, fileOffset: e.fileOffset ?? 0 });
  const n = f(add);
  const a = n.fileOffset;
  const b = a + n.length;
  const out: X[] = [];
  for (const e of list.map(f)) {
    const s = e.fileOffset;
    const t = s + e.length;
    if (t <= a || s >= b) {
      out.push(e);
      continue;
    }
    if (s < a) out.push({ ...e, length: a - s, crc: 0 });
    const cs = Math.max(s, a);
    const ct = Math.min(t, b);
    freed.push({ groupId: e.groupId, extentId: e.extentId, offset: e.offset + (cs - s), length: ct - cs, crc: 0, fileOffset: cs });
    if (t > b) out.push({ ...e, offset: e.offset + (b - s), length: t - b, crc: 0, fileOffset: b });
  }
  let i = out.findIndex((e) => e.fileOffset > a);
  if (i < 0) i = out.length;
  const prev = out[i - 1];
  if (prev && prev.groupId === n.groupId && prev.extentId === n.extentId && prev.fileOffset + prev.length === a && prev.offset + prev.length === n.offset) out[i - 1] = { ...prev, length: prev.length + n.length, crc: 0 };
  else out.splice(i, 0, n);
  return out;
}

t.test('addExtent matches the O(N) model on seeded random overwrites, appends and contiguous runs', async (t) => {
  const norm = (xs: readonly ExtentKey[]): number[][] => xs.map((e) => [e.groupId ?? 0, e.extentId ?? 0, e.offset ?? 0, e.length ?? 0, e.crc ?? 0, e.fileOffset ?? 0]);
  let bad = 0;
  for (let seed = 1; seed <= 40; seed++) {
    const rnd = new Prng(seed);
    const node = pb.Inode.create({ extents: [] }) as Inode;
    let model: ExtentKey[] = [];
    const freedA: ExtentKey[] = [];
    const freedB: ExtentKey[] = [];
    let appendAt = 0; // a stream of appends in one extent, so contiguous pieces merge
    for (let i = 0; i < 300; i++) {
      const kind = rnd.int(4);
      const len = 1 + rnd.int(kind === 0 ? 5000 : 300);
      const add: ExtentKey =
        kind === 0
          ? { groupId: 1, extentId: 7, offset: appendAt, length: len, crc: 3, fileOffset: appendAt }
          : { groupId: 2 + rnd.int(3), extentId: rnd.int(2), offset: rnd.int(100_000), length: len, crc: 1, fileOffset: rnd.int(60_000) };
      if (kind === 0) appendAt += len;
      addExtent(node, add, freedA);
      model = referenceAddExtent(model, add, freedB);
    }
    if (JSON.stringify(norm(node.extents)) !== JSON.stringify(norm(model)) || JSON.stringify(norm(freedA)) !== JSON.stringify(norm(freedB))) bad++;
  }
  t.equal(bad, 0, '40 seeds x 300 inserts: same extents and same freed ranges as the model');
  // A commit of many keys on a big file stays cheap: 20k extents, then 4k overwrites.
  const big = pb.Inode.create({ extents: [] }) as Inode;
  const freed: ExtentKey[] = [];
  for (let i = 0; i < 20_000; i++) addExtent(big, { groupId: 1 + (i % 2), extentId: 1, offset: i * 4096, length: 4096, crc: 0, fileOffset: i * 4096 }, freed);
  t.equal(big.extents.length, 20_000, 'alternating groups: nothing merges');
  const r = new Prng(99);
  for (let i = 0; i < 4096; i++) addExtent(big, { groupId: 5, extentId: 2, offset: i * 4096, length: 4096, crc: 0, fileOffset: r.int(20_000) * 4096 }, freed);
  let sorted = true;
  for (let i = 1; i < big.extents.length; i++) if ((big.extents[i - 1]!.fileOffset ?? 0) + (big.extents[i - 1]!.length ?? 0) > (big.extents[i]!.fileOffset ?? 0)) sorted = false;
  t.ok(sorted, 'the list stays in file order without overlaps');
  t.equal(big.extents.reduce((n, e) => n + (e.length ?? 0), 0), 20_000 * 4096, 'and covers the file exactly');
});

t.test('xattrs: create/replace flags, get, list, remove', async (t) => {
  const f = await c.create(ROOT_INO, 'xa', 0o644);
  tick();
  await c.setxattr(f.ino, 'user.a', Buffer.from('1'));
  t.equal(secOf((await c.getattr(f.ino)).ctime), clock / 1000, 'setxattr sets ctime');
  t.equal((await c.getxattr(f.ino, 'user.a')).toString(), '1');
  t.equal(await codeOf(c.setxattr(f.ino, 'user.a', Buffer.from('2'), XATTR_CREATE)), 'EEXIST');
  t.equal(await codeOf(c.setxattr(f.ino, 'user.b', Buffer.from('2'), XATTR_REPLACE)), 'ENODATA');
  await c.setxattr(f.ino, 'user.a', Buffer.from('3'), XATTR_REPLACE);
  await c.setxattr(f.ino, 'user.b', Buffer.from('4'), XATTR_CREATE);
  t.same(await c.listxattr(f.ino), ['user.a', 'user.b']);
  t.equal((await c.getxattr(f.ino, 'user.a')).toString(), '3');
  t.equal(await codeOf(c.getxattr(f.ino, 'user.zz')), 'ENODATA');
  await c.removexattr(f.ino, 'user.a');
  t.equal(await codeOf(c.removexattr(f.ino, 'user.a')), 'ENODATA');
  t.same(await c.listxattr(f.ino), ['user.b']);
  t.equal(await codeOf(c.setxattr(f.ino, 'u'.repeat(256), Buffer.from('x'))), 'ERANGE');
  t.equal(await codeOf(c.setxattr(f.ino, '', Buffer.from('x'))), 'ERANGE');
  t.equal(await codeOf(c.setxattr(f.ino, 'user.big', Buffer.alloc(64 * 1024 + 1))), 'E2BIG');
  t.equal(await codeOf(c.setxattr(666_666, 'user.a', Buffer.from('x'))), 'ENOENT');
  t.equal(await codeOf(c.getxattr(666_666, 'user.a')), 'ENOENT');
  // xattrs go with the inode
  await c.unlink(ROOT_INO, 'xa');
  t.equal(await codeOf(c.listxattr(f.ino)), 'ENOENT');
});

t.test('orphans: unlinked while open lives until last close; lease expiry reclaims', async (t) => {
  const f = await c.create(ROOT_INO, 'orph', 0o644);
  await c.openHandle(f.ino);
  await c.openHandle(f.ino);
  await c.unlink(ROOT_INO, 'orph');
  t.equal(await codeOf(c.lookup(ROOT_INO, 'orph')), 'ENOENT', 'name is gone');
  const a = await c.getattr(f.ino);
  t.equal(a.nlink, 0, 'inode still readable through the handle');
  t.equal(await codeOf(c.link(f.ino, ROOT_INO, 'resurrect')), 'ENOENT', 'no link to an orphan');
  await c.closeHandle(f.ino);
  t.equal((await c.getattr(f.ino)).nlink, 0, 'one handle left');
  await c.closeHandle(f.ino);
  t.equal(await codeOf(c.getattr(f.ino)), 'ENOENT', 'deleted at last close');
  t.equal(await codeOf(c.closeHandle(f.ino)), 'EBADF');

  // A client that crashes holding a handle: its lease runs out and reclaim deletes the orphan.
  let crashedNow = clock;
  const crashed = h.client({ now: () => crashedNow, leaseMs: 5000 });
  const g = await crashed.create(ROOT_INO, 'orph2', 0o644);
  await crashed.openHandle(g.ino);
  await c.unlink(ROOT_INO, 'orph2');
  t.equal((await c.getattr(g.ino)).nlink, 0);
  t.equal(await c.reclaim(crashedNow + 1000), 0, 'lease still valid: nothing reclaimed');
  t.equal((await c.getattr(g.ino)).nlink, 0);
  crashedNow += 1; // (the crashed client never renews again)
  t.equal(await c.reclaim(crashedNow + 10_000), 1, 'expired lease: the orphan is reclaimed');
  t.equal(await codeOf(c.getattr(g.ino)), 'ENOENT');
  // A live client's open, non-orphan file is untouched by reclaim of others.
  const k = await c.create(ROOT_INO, 'kept', 0o644);
  await c.openHandle(k.ino);
  await c.reclaim(clock + 1);
  t.equal((await c.getattr(k.ino)).nlink, 1);
  await c.closeHandle(k.ino);
});

t.test('ino allocation: leased blocks and partition cursor; statfs', async (t) => {
  const before = await c.statfs();
  const leased = h.client({ inoBlock: 16 });
  const inos: number[] = [];
  for (let i = 0; i < 20; i++) inos.push((await leased.create(ROOT_INO, `lease${i}`, 0o644)).ino);
  t.same(inos.slice(1, 16).map((x, i) => x - (inos[i] as number)), Array(15).fill(1), 'consecutive inos from one block');
  t.ok((inos[16] as number) > (inos[15] as number), 'next block is higher');
  t.equal(new Set(inos).size, 20);
  // A failed create gives its ino back, so the next create uses it.
  await codeOf(leased.create(ROOT_INO, 'lease0', 0o644));
  const next = await leased.create(ROOT_INO, 'leaseX', 0o644);
  t.equal(next.ino, (inos[19] as number) + 1, 'the ino of the failed create is reused (never seen by anyone)');
  const cursor = h.client({ inoMode: 'cursor' });
  const x = await cursor.create(ROOT_INO, 'cur1', 0o644);
  const y = await cursor.create(ROOT_INO, 'cur2', 0o644);
  t.equal(y.ino, x.ino + 1, 'cursor mode allocates in the partition');
  t.ok(x.ino > Math.max(...inos), 'never below a leased block');
  const after = await c.statfs();
  t.equal(after.inodes, before.inodes + 23);
  t.same(after.nearlyFull, []);
});

t.test('a partition reports nearly full and refuses inos past its end', async (t) => {
  const small = await startMeta({ partitions: [{ groupId: 7, start: 1, end: 20 }] });
  t.teardown(() => small.close());
  const m = small.client({ inoMode: 'cursor' });
  for (let i = 0; i < 17; i++) await m.create(ROOT_INO, `n${i}`, 0o644);
  t.same((await m.statfs()).nearlyFull, [7], 'nearly full past 90%');
  await m.create(ROOT_INO, 'last', 0o644);
  t.equal(await codeOf(m.create(ROOT_INO, 'over', 0o644)), 'ENOSPC');
  const l = small.client({ inoBlock: 100 });
  t.equal(await codeOf(l.create(ROOT_INO, 'over2', 0o644)), 'ENOSPC', 'no block to lease');
});
