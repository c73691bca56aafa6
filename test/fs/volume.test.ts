// lib/fs's Volume against a real cluster of processes (master, 3 metanodes, 3 datanodes):
// the fs.promises surface, errors as Node gives them, sparse files and truncation, overwrites,
// buffering and read-ahead checked byte for byte, symlinks (ELOOP), long names, xattrs, streams,
// unlink while open, and close-to-open consistency between two clients.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { Prng } from '../../lib/common/index.js';
import { startVolumeCluster } from './cluster.js';
import { code } from '../lib/errors.js';

const { open, cluster } = await startVolumeCluster((fn) => t.teardown(fn));

const sha = (b: Buffer): string => createHash('sha1').update(b).digest('hex');

const vol = await open();

t.test('files, directories and Node-style errors', async (t) => {
  await vol.mkdir('/d1');
  await vol.writeFile('/d1/f', 'hello');
  t.equal(await vol.readFile('/d1/f', 'utf8'), 'hello');
  const s = await vol.stat('/d1/f');
  t.ok(s.isFile());
  t.equal(s.size, 5);
  t.equal(s.mode & 0o777, 0o644, 'umask 022 applied to 0666');
  t.equal(s.nlink, 1);
  t.same(await vol.readdir('/d1'), ['f']);
  const ents = await vol.readdir('/', { withFileTypes: true });
  t.ok(ents.find((e) => e.name === 'd1')?.isDirectory(), 'withFileTypes');
  t.equal(await code(vol.readFile('/nope')), 'ENOENT');
  const err = (await vol.readFile("/nope").catch((e: unknown) => e)) as { errno: number; syscall: string; path: string };
  t.equal(err.errno, -2, 'errno as Node gives it');
  t.equal(err.path, '/nope');
  t.equal(await code(vol.readFile('/d1/f/x')), 'ENOTDIR');
  t.equal(await code(vol.mkdir('/d1')), 'EEXIST');
  t.equal(await code(vol.rmdir('/d1')), 'ENOTEMPTY');
  t.equal(await code(vol.unlink('/d1')), 'EISDIR');
  t.equal(await code(vol.rmdir('/d1/f')), 'ENOTDIR');
  t.equal(await code(vol.open('/d1', 'w')), 'EISDIR');
  t.equal(await code(vol.open('/d1/f', 'wx')), 'EEXIST');
  t.equal(await vol.mkdir('/r/s/t', { recursive: true }), '/r');
  t.ok((await vol.stat('/r/s/t')).isDirectory());
  await vol.rm('/r', { recursive: true });
  t.equal(await code(vol.stat('/r')), 'ENOENT');
  await vol.rm('/r', { recursive: true, force: true });
  await vol.appendFile('/d1/f', ' world');
  t.equal(await vol.readFile('/d1/f', 'utf8'), 'hello world');
  // links and renames
  await vol.link('/d1/f', '/d1/g');
  t.equal((await vol.stat('/d1/f')).nlink, 2, 'hard link count');
  await vol.unlink('/d1/g');
  t.equal((await vol.stat('/d1/f')).nlink, 1);
  await vol.rename('/d1/f', '/d1/h');
  t.equal(await code(vol.stat('/d1/f')), 'ENOENT');
  t.equal(await vol.readFile('/d1/h', 'utf8'), 'hello world');
  await vol.writeFile('/d1/k', 'other');
  await vol.rename('/d1/k', '/d1/h');
  t.equal(await vol.readFile('/d1/h', 'utf8'), 'other', 'rename replaces');
  await vol.mkdir('/d1/sub');
  t.equal(await code(vol.rename('/d1', '/d1/sub/x')), 'EINVAL', 'no move into itself');
  t.equal(await code(vol.rename('/d1/h', '/d1/sub')), 'EISDIR');
  // attributes
  await vol.chmod('/d1/h', 0o600);
  t.equal((await vol.stat('/d1/h')).mode & 0o777, 0o600);
  const when = new Date('2020-01-02T03:04:05.678Z');
  await vol.utimes('/d1/h', when, when);
  t.equal((await vol.stat('/d1/h')).mtime.getTime(), when.getTime(), 'utimes to the ms');
  await vol.utimes('/d1/h', new Date(1e12), new Date(1.5e12));
  t.match(await vol.stat('/d1/h'), { atimeMs: 1e12, mtimeMs: 1.5e12 }, 'atime and mtime set apart');
  await vol.chown('/d1/h', 1234, 5678);
  t.match(await vol.stat('/d1/h'), { uid: 1234, gid: 5678 });
  const before = (await vol.stat('/d1/h')).mtimeMs;
  await vol.writeFile('/d1/h', 'newer');
  t.ok((await vol.stat('/d1/h')).mtimeMs > before, 'a write moves mtime');
  // xattrs
  await vol.setxattr('/d1/h', 'user.k', 'v1');
  t.equal((await vol.getxattr('/d1/h', 'user.k')).toString(), 'v1');
  t.same(await vol.listxattr('/d1/h'), ['user.k']);
  await vol.removexattr('/d1/h', 'user.k');
  t.equal(await code(vol.getxattr('/d1/h', 'user.k')), 'ENODATA');
  // With no xattrs the inode's count answers (no round trip): it must follow this client's own
  // changes, also while the file is open, and another client's once the attributes are fresh.
  const xh = await vol.open('/d1/h', 'r');
  t.equal(await code(vol.getxattr('/d1/h', 'security.capability')), 'ENODATA');
  await vol.setxattr('/d1/h', 'user.open', 'yes');
  t.equal((await vol.getxattr('/d1/h', 'user.open')).toString(), 'yes', 'set while open: seen at once');
  t.same(await vol.listxattr('/d1/h'), ['user.open']);
  await vol.removexattr('/d1/h', 'user.open');
  t.same(await vol.listxattr('/d1/h'), []);
  await xh.close();
  const other = await open();
  await other.setxattr('/d1/h', 'user.other', 'o');
  const fresh = await vol.open('/d1/h', 'r'); // close-to-open: the open revalidates the inode
  t.equal((await vol.getxattr('/d1/h', 'user.other')).toString(), 'o', "another client's xattr after an open");
  await fresh.close();
  const fs = await vol.statfs();
  t.ok(fs.blocks > 0 && fs.files > fs.ffree, 'statfs counts inodes');
});

t.test('symlinks, ELOOP and ENAMETOOLONG', async (t) => {
  await vol.mkdir('/sl');
  await vol.writeFile('/sl/target', 'T');
  await vol.symlink('target', '/sl/rel');
  await vol.symlink('/sl/target', '/sl/abs');
  await vol.symlink('../sl', '/sl/up');
  t.equal(await vol.readFile('/sl/rel', 'utf8'), 'T');
  t.equal(await vol.readFile('/sl/abs', 'utf8'), 'T');
  t.equal(await vol.readFile('/sl/up/up/up/target', 'utf8'), 'T', 'symlinks to directories in the middle');
  t.equal(await vol.readlink('/sl/rel'), 'target');
  t.ok((await vol.lstat('/sl/rel')).isSymbolicLink());
  t.ok((await vol.stat('/sl/rel')).isFile());
  t.equal(await code(vol.readlink('/sl/target')), 'EINVAL');
  await vol.symlink('loop2', '/sl/loop1');
  await vol.symlink('loop1', '/sl/loop2');
  t.equal(await code(vol.readFile('/sl/loop1')), 'ELOOP');
  t.equal(await code(vol.stat('/sl/loop1')), 'ELOOP');
  t.ok((await vol.lstat('/sl/loop1')).isSymbolicLink(), 'lstat does not follow');
  // 40 links in a chain resolve, 41 do not (Linux's SYMLOOP_MAX)
  await vol.writeFile('/sl/c0', 'end');
  for (let i = 1; i <= 41; i++) await vol.symlink(`c${i - 1}`, `/sl/c${i}`);
  t.equal(await vol.readFile('/sl/c40', 'utf8'), 'end');
  t.equal(await code(vol.readFile('/sl/c41')), 'ELOOP');
  t.equal(await code(vol.writeFile('/sl/' + 'x'.repeat(256), 'a')), 'ENAMETOOLONG');
  await vol.writeFile('/sl/' + 'x'.repeat(255), 'a');
  t.equal(await code(vol.stat('/' + 'a/'.repeat(2100))), 'ENAMETOOLONG', 'path longer than PATH_MAX');
  await vol.symlink('dangling-nowhere', '/sl/dangling');
  t.equal(await code(vol.stat('/sl/dangling')), 'ENOENT');
});

t.test('sparse files, truncation, overwrites and random writes match a model', async (t) => {
  const h = await vol.open('/sparse', 'w+');
  await h.write(Buffer.from('tail'), 0, 4, 10 * 1024 * 1024);
  t.equal((await h.stat()).size, 10 * 1024 * 1024 + 4, 'size includes buffered bytes');
  await h.sync();
  const b = Buffer.alloc(16);
  await h.read(b, 0, 16, 5 * 1024 * 1024);
  t.same(b, Buffer.alloc(16), 'a hole reads as zeros');
  await h.truncate(100);
  t.equal((await h.stat()).size, 100);
  await h.truncate(5000);
  const all = await h.readFile();
  t.equal(all.length, 5000);
  t.same(all, Buffer.alloc(5000), 'truncate up adds zeros, the cut tail is gone');
  await h.close();
  // A random model: writes at random places, some synced, truncates; the file must equal the model.
  const p = new Prng(7);
  let model = Buffer.alloc(0);
  const f = await vol.open('/model', 'w+');
  for (let i = 0; i < 200; i++) {
    const k = p.int(10);
    if (k < 7) {
      const off = p.int(3 * 1024 * 1024);
      const len = p.pick([1, 100, 4096, 65_536, 300_000]);
      const data = randomBytes(len);
      await f.write(data, 0, len, off);
      if (off + len > model.length) model = Buffer.concat([model, Buffer.alloc(off + len - model.length)]);
      data.copy(model, off);
    } else if (k < 8) {
      const len = p.int(3 * 1024 * 1024);
      await f.truncate(len);
      model = len <= model.length ? Buffer.from(model.subarray(0, len)) : Buffer.concat([model, Buffer.alloc(len - model.length)]);
    } else if (k < 9) {
      await f.sync();
    } else {
      const off = p.int(model.length + 1);
      const len = p.int(200_000) + 1;
      const buf = Buffer.alloc(len);
      const { bytesRead } = await f.read(buf, 0, len, off);
      const want = model.subarray(off, off + len);
      if (bytesRead !== want.length || !buf.subarray(0, bytesRead).equals(want)) {
        t.fail(`step ${i}: read ${off}+${len} differs from the model`);
        break;
      }
    }
  }
  await f.close();
  const back = (await vol.readFile('/model')) as Buffer;
  t.equal(back.length, model.length);
  t.equal(sha(back), sha(model), 'file equals the model after 200 random steps');
  // A second client, opening after the close, sees the same bytes (close-to-open).
  const other = await open();
  t.equal(sha((await other.readFile('/model')) as Buffer), sha(model), 'another client reads the same');
});

t.test('large sequential write and read (buffered appends, read-ahead)', async (t) => {
  const big = randomBytes(24 * 1024 * 1024 + 12345);
  const h = await vol.open('/big', 'w');
  for (let o = 0; o < big.length; o += 128 * 1024) await h.write(big, o, Math.min(128 * 1024, big.length - o), o);
  await h.close();
  const r = await vol.open('/big', 'r');
  const out = Buffer.alloc(big.length);
  let pos = 0;
  for (;;) {
    const { bytesRead } = await r.read(out, pos, Math.min(128 * 1024, out.length - pos), pos);
    if (bytesRead === 0) break;
    pos += bytesRead;
  }
  await r.close();
  t.equal(pos, big.length);
  t.equal(sha(out), sha(big), '24 MiB round trip in 128 KiB pieces');
  // streams
  const src = randomBytes(3 * 1024 * 1024 + 7);
  await pipeline(Readable.from([src.subarray(0, 1000), src.subarray(1000)]), vol.createWriteStream('/streamed'));
  const chunks: Buffer[] = [];
  for await (const c of vol.createReadStream('/streamed', { highWaterMark: 65_536 })) chunks.push(c as Buffer);
  t.equal(sha(Buffer.concat(chunks)), sha(src), 'createWriteStream then createReadStream');
  const part: Buffer[] = [];
  for await (const c of vol.createReadStream('/streamed', { start: 10, end: 19 })) part.push(c as Buffer);
  t.same(Buffer.concat(part), src.subarray(10, 20), 'inclusive end as node:fs');
});

t.test('a stream of appends commits several of them per metadata entry', async (t) => {
  // Proposals answered by the metanodes (only a partition's leader answers one OK).
  const proposals = async (): Promise<number> => {
    let n = 0;
    for (const m of cluster.nodes.filter((x) => x.kind === 'meta')) {
      const text = await (await fetch(`http://${m.admin}/metrics`)).text();
      for (const line of text.split('\n')) if (line.startsWith('rpc_server_calls_total{') && line.includes('method="table.Propose"') && line.includes('code="OK"')) n += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return n;
  };
  // 256 KiB appends, 4 in flight: 64 batches for 16 MiB.
  const v = await open({ flushBytes: 256 * 1024, maxAppendBytes: 256 * 1024, maxDirtyBytes: 1024 * 1024 });
  const data = randomBytes(16 * 1024 * 1024);
  const h = await v.open('/coalesced', 'w');
  const before = await proposals();
  for (let o = 0; o < data.length; o += 64 * 1024) await h.write(data, o, 64 * 1024, o);
  await h.close();
  const used = (await proposals()) - before;
  // A commit takes the batches that landed while the one before it ran: ~40 entries here
  // without waiting for those still landing, 16-17 with it (up to 4 batches per entry).
  t.ok(used > 0 && used <= 28, `${used} metadata entries for 64 appended batches`);
  const back = await open();
  t.equal(sha((await back.readFile('/coalesced')) as Buffer), sha(data), 'every batch is in the extent map, in order');
  t.equal((await back.stat('/coalesced')).size, data.length);
});

t.test('unlink and rename-over while open: the open file stays readable until closed', async (t) => {
  await vol.writeFile('/held', 'still here');
  const h = await vol.open('/held', 'r');
  await vol.unlink('/held');
  t.equal(await code(vol.stat('/held')), 'ENOENT');
  t.equal((await h.readFile()).toString(), 'still here');
  await h.close();
  await vol.writeFile('/over', 'old');
  await vol.writeFile('/new', 'new');
  const h2 = await vol.open('/over', 'r');
  await vol.rename('/new', '/over');
  t.equal((await h2.readFile()).toString(), 'old', 'the replaced inode is still readable');
  await h2.close();
  t.equal(await vol.readFile('/over', 'utf8'), 'new');
});

t.test('close-to-open between two clients', async (t) => {
  const a = await open();
  const b = await open();
  await a.writeFile('/cto', 'v1');
  t.equal(await b.readFile('/cto', 'utf8'), 'v1');
  const ha = await a.open('/cto', 'r+');
  await ha.write('v2-longer', 0, undefined, 0);
  await ha.close();
  t.equal(await b.readFile('/cto', 'utf8'), 'v2-longer', 'what one closed, the other sees at its next open');
  await b.unlink('/cto');
  t.equal(await code(a.open('/cto', 'r')), 'ENOENT', 'open revalidates the name');
  const hb = await b.open('/cto2', 'w');
  await hb.write('fsynced');
  await hb.sync();
  t.equal(await a.readFile('/cto2', 'utf8'), 'fsynced', 'fsync publishes too');
  await hb.close();
});

t.test('read-ahead windows never serve bytes older than a write (same or another handle)', async (t) => {
  const base = randomBytes(8 * 1024 * 1024);
  await vol.writeFile('/ra', base);
  const r = await vol.open('/ra', 'r');
  const w = await vol.open('/ra', 'r+');
  const buf = Buffer.alloc(128 * 1024);
  // Sequential reads: windows fetched ahead past 2 MiB.
  for (let pos = 0; pos < 1024 * 1024; pos += buf.length) await r.read(buf, 0, buf.length, pos);
  const patch = Buffer.alloc(4096, 0xab);
  await w.write(patch, 0, patch.length, 2 * 1024 * 1024 + 100);
  await r.read(buf, 0, buf.length, 2 * 1024 * 1024);
  t.same(buf.subarray(100, 100 + 4096), patch, 'buffered write visible through the other handle');
  await w.sync();
  await r.read(buf, 0, buf.length, 2 * 1024 * 1024);
  t.same(buf.subarray(100, 100 + 4096), patch, 'and after its commit');
  t.same(buf.subarray(0, 100), base.subarray(2 * 1024 * 1024, 2 * 1024 * 1024 + 100), 'bytes around it unchanged');
  // Out-of-order reads around the last position still return the right bytes.
  const p = new Prng(11);
  const model = Buffer.from(base);
  patch.copy(model, 2 * 1024 * 1024 + 100);
  for (let i = 0; i < 50; i++) {
    const pos = Math.max(0, 1024 * 1024 + (p.int(64) - 32) * 64 * 1024);
    const { bytesRead } = await r.read(buf, 0, buf.length, pos);
    if (!buf.subarray(0, bytesRead).equals(model.subarray(pos, pos + bytesRead))) {
      t.fail(`read at ${pos} differs`);
      break;
    }
  }
  await w.truncate(3 * 1024 * 1024);
  const tail = Buffer.alloc(1024);
  t.equal((await r.read(tail, 0, 1024, 5 * 1024 * 1024)).bytesRead, 0, 'a truncate voids windows past the new end');
  await r.close();
  await w.close();
});

t.test('small random reads through the extent block cache: right bytes, and never stale after an overwrite', async (t) => {
  const a = await open();
  const b = await open({ readCacheBytes: 1024 * 1024 }); // 8 blocks: evictions happen
  const data = randomBytes(3 * 1024 * 1024);
  await a.writeFile('/cached', data);
  const rng = new Prng(7);
  const h = await b.open('/cached', 'r');
  const buf = Buffer.alloc(4096);
  let bad = 0;
  for (let i = 0; i < 300; i++) {
    const at = rng.int(data.length - 4096);
    const n = 1 + rng.int(4096);
    const { bytesRead } = await h.read(buf, 0, n, at);
    if (bytesRead !== n || !buf.subarray(0, n).equals(data.subarray(at, at + n))) bad++;
  }
  t.equal(bad, 0, '300 random reads match');
  await h.close();
  // Another client overwrites the middle: the new bytes are a new extent, so a reopen sees them.
  const patch = randomBytes(64 * 1024);
  const ha = await a.open('/cached', 'r+');
  await ha.write(patch, 0, patch.length, 1024 * 1024);
  await ha.close();
  patch.copy(data, 1024 * 1024);
  const h2 = await b.open('/cached', 'r');
  for (let i = 0; i < 100; i++) {
    const at = 1024 * 1024 - 2048 + rng.int(64 * 1024);
    await h2.read(buf, 0, 4096, at);
    if (!buf.equals(data.subarray(at, at + 4096))) bad++;
  }
  t.equal(bad, 0, 'reads across the overwritten range give the new bytes');
  await h2.close();
});
