// The kernel engine (fuse/kernel): the protocol decoder on truncated, fuzzed and malformed bytes
// (it answers or drops, never throws), the session's answers to requests the kernel can send
// but this machine's kernel cannot be made to (an opcode we do not know, a request before INIT,
// a malformed body) through an in-memory transport (nothing real can inject them), the node
// table, and on real mounts: the pure-TS threadpool reader against the native poll and threads
// ones (the same seeded differential run), ENOSYS as the kernel reports it (fallocate),
// RENAME_NOREPLACE, touch -m/-a, readdir paging, and a non-root mount through fusermount.
import t from 'tap';
import { promises as fsp, chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Prng } from '../../lib/common/index.js';
import { PassthroughVolume } from '../../fuse/index.js';
import { KernelSession, NodeTable, loadNativeReader, protocol as P, type Transport } from '../../fuse/kernel/index.js';
import { runDifferential } from './differential.js';
import { startPassthrough, stopMount } from './helpers.js';
import { tempDirFor } from '../lib/tmp.js';

const H = { unique: 2, nodeid: 1, uid: 0, gid: 0, pid: 1 };

/** A temporary directory removed when the test file ends. */
const tmp = (prefix: string): string => tempDirFor(t, prefix);

function body(...parts: (number | string | Buffer | [number, 'u64'])[]): Buffer {
  const bufs = parts.map((p) => {
    if (typeof p === 'number') {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(p);
      return b;
    }
    if (typeof p === 'string') return Buffer.from(`${p}\0`);
    if (Array.isArray(p)) {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt(p[0]));
      return b;
    }
    return p;
  });
  return Buffer.concat(bufs);
}

const u64 = (n: number): [number, 'u64'] => [n, 'u64'];

/** A well-formed request of each opcode the decoder reads a body for. */
function samples(): Buffer[] {
  const r = (opcode: number, b: Buffer): Buffer => P.encodeRequest({ ...H, opcode }, b);
  return [
    r(P.OP.INIT, body(7, 38, 131072, 0xffffffff, 0, Buffer.alloc(44))),
    r(P.OP.LOOKUP, body('name')),
    r(P.OP.FORGET, body(u64(3))),
    r(P.OP.BATCH_FORGET, body(2, 0, u64(5), u64(1), u64(6), u64(2))),
    r(P.OP.GETATTR, body(1, 0, u64(9))),
    r(P.OP.SETATTR, body(P.FATTR.MODE | P.FATTR.SIZE, 0, u64(1), u64(100), u64(0), u64(1), u64(2), u64(3), 4, 5, 6, 0o644, 0, 0, 0, 0)),
    r(P.OP.SYMLINK, body('link', 'target')),
    r(P.OP.MKNOD, body(0o100644, 0, 0o22, 0, 'node')),
    r(P.OP.MKDIR, body(0o755, 0o22, 'dir')),
    r(P.OP.RENAME, body(u64(1), 'a', 'b')),
    r(P.OP.RENAME2, body(u64(1), 1, 0, 'a', 'b')),
    r(P.OP.LINK, body(u64(4), 'hard')),
    r(P.OP.OPEN, body(2, 0)),
    r(P.OP.CREATE, body(0o102, 0o644, 0o22, 0, 'new')),
    r(P.OP.READ, body(u64(1), u64(0), 4096, 0, u64(0), 0, 0)),
    r(P.OP.WRITE, body(u64(1), u64(0), 5, 0, u64(0), 0, 0, Buffer.from('hello'))),
    r(P.OP.RELEASE, body(u64(1), 0, 0, u64(0))),
    r(P.OP.FLUSH, body(u64(1), 0, 0, u64(0))),
    r(P.OP.FSYNC, body(u64(1), 1, 0)),
    r(P.OP.SETXATTR, body(3, 0, 'user.x', Buffer.from('abc'))),
    r(P.OP.GETXATTR, body(0, 0, 'user.x')),
    r(P.OP.LISTXATTR, body(100, 0)),
    r(P.OP.ACCESS, body(4, 0)),
    r(P.OP.INTERRUPT, body(u64(7))),
    r(P.OP.READDIR, body(u64(1), u64(0), 4096, 0, u64(0), 0, 0)),
  ];
}

t.test('decoder: well-formed requests decode; every truncation answers or drops, never throws', async (t) => {
  for (const s of samples()) {
    const d = P.decodeRequest(s, s.length);
    t.equal(d.kind, 'ok', `opcode ${s.readUInt32LE(4)} decodes`);
    for (let n = 0; n < s.length; n++) {
      // A truncated read with a consistent header length (the kernel's len says n).
      const cut = Buffer.from(s.subarray(0, n));
      if (n >= 4) cut.writeUInt32LE(n, 0);
      const r = P.decodeRequest(cut, n);
      if (n < P.IN_HEADER_SIZE) {
        if (r.kind !== 'drop') t.fail(`opcode ${s.readUInt32LE(4)}: ${n} bytes should drop`);
      } else if (r.kind === 'ok' && r.req.op !== 'readlink' && n < s.length && !['init'].includes(r.req.op)) {
        // Only bodies that read nothing may decode when cut (none of the samples).
        t.fail(`opcode ${s.readUInt32LE(4)} cut to ${n} bytes decoded as ${r.req.op}`);
      }
    }
  }
  const w = P.decodeRequest(samples()[15] as Buffer, (samples()[15] as Buffer).length);
  t.ok(w.kind === 'ok' && w.req.op === 'write' && w.req.data.toString() === 'hello', 'write data is the body after write_in');
  const cutWrite = Buffer.from((samples()[15] as Buffer).subarray(0, P.IN_HEADER_SIZE + 40 + 2));
  cutWrite.writeUInt32LE(cutWrite.length, 0);
  const cw = P.decodeRequest(cutWrite, cutWrite.length);
  t.ok(cw.kind === 'bad' && cw.errno === P.E.EIO, 'a write whose data is shorter than its size: EIO');
});

t.test('decoder: header checks, names, huge numbers', async (t) => {
  const s = samples()[1] as Buffer;
  t.equal(P.decodeRequest(s, s.length - 1).kind, 'drop', 'len that disagrees with the bytes read: dropped');
  const noNul = P.encodeRequest({ ...H, opcode: P.OP.LOOKUP }, Buffer.from('abc'));
  const d1 = P.decodeRequest(noNul, noNul.length);
  t.ok(d1.kind === 'bad' && d1.errno === P.E.EIO, 'unterminated name: EIO');
  const slash = P.encodeRequest({ ...H, opcode: P.OP.LOOKUP }, Buffer.from('a/b\0'));
  t.equal(P.decodeRequest(slash, slash.length).kind, 'bad', 'a name with a slash is refused');
  const empty = P.encodeRequest({ ...H, opcode: P.OP.MKDIR }, body(0o755, 0, Buffer.from([0])));
  t.equal(P.decodeRequest(empty, empty.length).kind, 'bad', 'an empty name is refused');
  const big = P.encodeRequest({ ...H, opcode: P.OP.READ }, body(u64(1), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0xff]), 4096, 0, u64(0), 0, 0));
  const d2 = P.decodeRequest(big, big.length);
  t.ok(d2.kind === 'bad' && d2.errno === P.E.EINVAL, 'an offset beyond 2^53: EINVAL');
  const huge = P.encodeRequest({ ...H, opcode: P.OP.BATCH_FORGET }, body(0xffffffff, 0));
  t.equal(P.decodeRequest(huge, huge.length).kind, 'bad', 'a batch forget claiming 4G entries is refused, not allocated');
  const unknown = P.encodeRequest({ ...H, opcode: 4242 }, Buffer.alloc(0));
  const d3 = P.decodeRequest(unknown, unknown.length);
  t.ok(d3.kind === 'ok' && d3.req.op === 'unsupported', 'an unknown opcode decodes as unsupported');
});

t.test('decoder fuzz: random bytes and mutated requests never throw', async (t) => {
  const p = new Prng(12345);
  const base = samples();
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    let b: Buffer;
    if (i % 2 === 0) {
      b = Buffer.alloc(p.int(200));
      for (let j = 0; j < b.length; j++) b[j] = p.int(256);
      if (b.length >= 8 && p.int(2) === 0) {
        b.writeUInt32LE(b.length, 0);
        b.writeUInt32LE(p.int(60), 4);
      }
    } else {
      b = Buffer.from(p.pick(base));
      for (let k = 0; k < 1 + p.int(4); k++) b[p.int(b.length)] = p.int(256);
    }
    const d = P.decodeRequest(b, b.length);
    if (d.kind === 'ok') decoded++;
    if (!['ok', 'bad', 'drop'].includes(d.kind)) t.fail(`unexpected kind ${(d as { kind: string }).kind}`);
  }
  t.ok(decoded > 0, `some mutated requests still decode (${decoded})`);
});

/** An in-memory transport: requests pushed by the test, replies collected. */
class MemTransport implements Transport {
  replies: Buffer[] = [];
  pauses = 0;
  private deliver!: (buf: Buffer, n: number, release: () => void) => void;
  private endCb!: (err?: Error) => void;
  private waiters: (() => void)[] = [];
  start(onRequest: (buf: Buffer, n: number, release: () => void) => void, onEnd: (err?: Error) => void): void {
    this.deliver = onRequest;
    this.endCb = onEnd;
  }
  push(b: Buffer): void {
    this.deliver(b, b.length, () => undefined);
  }
  write(reply: Buffer): number {
    this.replies.push(Buffer.from(reply));
    for (const w of this.waiters.splice(0)) w();
    return 0;
  }
  pause(): void {
    this.pauses++;
  }
  resume(): void {}
  close(): void {}
  end(): void {
    this.endCb();
  }
  async reply(unique: number): Promise<{ error: number; body: Buffer }> {
    for (;;) {
      const r = this.replies.find((x) => P.readOutHeader(x)?.unique === unique);
      if (r) return { error: (P.readOutHeader(r) as { error: number }).error, body: r.subarray(P.OUT_HEADER_SIZE) };
      await new Promise<void>((res) => this.waiters.push(res));
    }
  }
}

/** A session over a local directory on an in-memory transport, and a way to send it requests. */
function memSession(dir: string, opts: ConstructorParameters<typeof KernelSession>[2] = {}): { tr: MemTransport; s: KernelSession; req: (opcode: number, b: Buffer, nodeid?: number) => number } {
  const tr = new MemTransport();
  const s = new KernelSession(new PassthroughVolume(dir), tr, opts);
  s.start();
  let u = 10;
  const req = (opcode: number, b: Buffer, nodeid = 1): number => {
    const unique = u++;
    tr.push(P.encodeRequest({ ...H, unique, opcode, nodeid }, b));
    return unique;
  };
  return { tr, s, req };
}

t.test('session: INIT, ENOSYS for what it does not do, EIO before INIT and for malformed bodies', async (t) => {
  const dir = tmp('fuse-kt-');
  writeFileSync(join(dir, 'f'), 'hello');
  const { tr, s, req } = memSession(dir, { maxInFlight: 2 });
  t.equal((await tr.reply(req(P.OP.GETATTR, body(0, 0, u64(0))))).error, -P.E.EIO, 'a request before INIT: EIO');
  const init = await tr.reply(req(P.OP.INIT, body(7, 44, 1 << 20, 0xffffffff, 0, Buffer.alloc(44))));
  t.equal(init.error, 0);
  t.equal(init.body.readUInt32LE(0), 7, 'major 7');
  t.equal(init.body.readUInt32LE(4), P.FUSE_KERNEL_MINOR, 'our minor');
  const flags = init.body.readUInt32LE(12);
  for (const f of ['ASYNC_READ', 'ATOMIC_O_TRUNC', 'BIG_WRITES', 'PARALLEL_DIROPS', 'MAX_PAGES'] as const) t.ok(flags & P.INIT_FLAGS[f], `${f} negotiated`);
  t.notOk(flags & P.INIT_FLAGS.WRITEBACK_CACHE, 'no writeback cache by default');
  t.notOk(flags & P.INIT_FLAGS.POSIX_LOCKS, 'no POSIX locks: the kernel keeps them locally');
  t.equal(init.body.readUInt32LE(20), 1024 * 1024, 'max_write 1 MiB');
  t.equal(init.body.readUInt16LE(28), 256, 'max_pages 256');
  t.equal(init.body.readUInt16LE(16), 2, 'max_background is the in-flight bound');
  for (const op of [4242, P.OP.FALLOCATE, P.OP.LSEEK, P.OP.COPY_FILE_RANGE, P.OP.IOCTL, P.OP.POLL, P.OP.BMAP, P.OP.GETLK, P.OP.SETLK, P.OP.READDIRPLUS, P.OP.TMPFILE]) {
    t.equal((await tr.reply(req(op, Buffer.alloc(64)))).error, -P.E.ENOSYS, `opcode ${op}: ENOSYS`);
  }
  t.equal((await tr.reply(req(P.OP.LOOKUP, Buffer.from('f')))).error, -P.E.EIO, 'unterminated name: EIO');
  const lk = await tr.reply(req(P.OP.LOOKUP, body('f')));
  t.equal(lk.error, 0, 'lookup of an existing file');
  const nodeid = Number(lk.body.readBigUInt64LE(0));
  t.ok(nodeid > 1, 'a new nodeid');
  t.equal(Number(lk.body.readBigUInt64LE(40 + 8)), 5, 'attr.size');
  const lk2 = await tr.reply(req(P.OP.LOOKUP, body('f')));
  t.equal(Number(lk2.body.readBigUInt64LE(0)), nodeid, 'the same name keeps its nodeid');
  t.equal((await tr.reply(req(P.OP.LOOKUP, body('nope')))).error, -2, 'ENOENT');
  t.equal((await tr.reply(req(P.OP.GETATTR, body(0, 0, u64(0)), 999_999))).error, -116, 'an unknown nodeid: ESTALE');
  const rd = await tr.reply(req(P.OP.READLINK, Buffer.alloc(0), nodeid));
  t.equal(rd.error, -P.E.EINVAL, 'readlink of a regular file: the volume errno passes through');
  // Forget both lookups: the node goes; a request on it is stale.
  req(P.OP.FORGET, body(u64(2)), nodeid); // no reply: FORGET is never answered
  t.equal((await tr.reply(req(P.OP.GETATTR, body(0, 0, u64(0)), nodeid))).error, -116, 'forgotten: ESTALE');
  const fl = (await tr.reply(req(P.OP.GETXATTR, body(0, 0, 'user.x')))).error;
  t.ok(fl < 0, 'getxattr on a volume without xattrs answers an errno');
  // The in-flight bound pauses the transport.
  const many = [req(P.OP.STATFS, Buffer.alloc(0)), req(P.OP.STATFS, Buffer.alloc(0)), req(P.OP.STATFS, Buffer.alloc(0))];
  for (const m of many) t.equal((await tr.reply(m)).error, 0);
  t.ok(tr.pauses > 0, 'reads paused at the in-flight bound');
  tr.end();
  await s.done;
});

t.test("session: directories' attributes are cached dirAttrTimeoutS, files' attrTimeoutS", async (t) => {
  const dir = tmp('fuse-kt-');
  writeFileSync(join(dir, 'f'), 'hello');
  mkdirSync(join(dir, 'd'));
  const { tr, s, req } = memSession(dir, { attrTimeoutS: 0, entryTimeoutS: 0, dirAttrTimeoutS: 5 });
  t.equal((await tr.reply(req(P.OP.INIT, body(7, 44, 1 << 20, 0xffffffff, 0, Buffer.alloc(44))))).error, 0);
  // fuse_entry_out: nodeid, generation, entry_valid, attr_valid (u64 each), then their nsecs.
  const f = await tr.reply(req(P.OP.LOOKUP, body('f')));
  t.equal(Number(f.body.readBigUInt64LE(24)), 0, 'a file: attr_valid 0 (close-to-open needs a fresh size)');
  const d = await tr.reply(req(P.OP.LOOKUP, body('d')));
  t.equal(Number(d.body.readBigUInt64LE(24)), 5, 'a directory: attr_valid 5');
  t.equal(Number(d.body.readBigUInt64LE(16)), 5, 'and its name too (entry_valid 5)');
  t.equal(Number(f.body.readBigUInt64LE(16)), 0, "a file's name: entryTimeoutS (0)");
  // fuse_attr_out: attr_valid first.
  const root = await tr.reply(req(P.OP.GETATTR, body(0, 0, u64(0))));
  t.equal(Number(root.body.readBigUInt64LE(0)), 5, 'GETATTR of the root directory: 5');
  tr.end();
  await s.done;
});

t.test('session: READ replies reuse pooled buffers; concurrent READs (more than the pool) each get their own bytes', async (t) => {
  const dir = tmp('fuse-kt-');
  const rnd = new Prng(7);
  const data = Buffer.alloc(2 << 20);
  for (let i = 0; i < data.length; i++) data[i] = rnd.int(256);
  writeFileSync(join(dir, 'f'), data);
  const { tr, s, req } = memSession(dir);
  t.equal((await tr.reply(req(P.OP.INIT, body(7, 44, 1 << 20, 0xffffffff, 0, Buffer.alloc(44))))).error, 0);
  const nodeid = Number((await tr.reply(req(P.OP.LOOKUP, body('f')))).body.readBigUInt64LE(0));
  const fh = Number((await tr.reply(req(P.OP.OPEN, body(0, 0), nodeid))).body.readBigUInt64LE(0));
  const size = 48 * 1024;
  for (const round of [1, 2, 3]) {
    // 40 in flight at once: 16 pooled buffers, the rest fresh; every reply must hold its own range.
    const offs = Array.from({ length: 40 }, (_, i) => ((i * 37 + round * 11) % 40) * size);
    const uniques = offs.map((o) => req(P.OP.READ, body(u64(fh), u64(o), size, 0, u64(0), 0, 0), nodeid));
    const replies = await Promise.all(uniques.map((u) => tr.reply(u)));
    const bad = replies.filter((r, i) => r.error !== 0 || !r.body.equals(Buffer.from(data.subarray(offs[i] as number, (offs[i] as number) + size)))).length;
    t.equal(bad, 0, `round ${round}: 40 concurrent READs, each with its own bytes`);
  }
  // A READ that fails (a bad handle) gives its buffer back and answers an error.
  t.not((await tr.reply(req(P.OP.READ, body(u64(999999), u64(0), size, 0, u64(0), 0, 0), nodeid))).error, 0, 'a READ on an unknown handle fails');
  const again = await tr.reply(req(P.OP.READ, body(u64(fh), u64(size), size, 0, u64(0), 0, 0), nodeid));
  t.ok(again.body.equals(Buffer.from(data.subarray(size, 2 * size))), 'and the next READ is still right');
  tr.end();
  await s.done;
});

t.test('node table: paths, renames of directories, unlinked nodes keep their path, bound', async (t) => {
  const n = new NodeTable(3);
  const d = n.lookup(1, 'd');
  const f = n.lookup(d, 'f');
  t.equal(n.path(f), '/d/f');
  n.rename(1, 'd', 1, 'e');
  t.equal(n.path(f), '/e/f', 'a renamed directory moves its children');
  n.remove(d, 'f');
  t.equal(n.path(f), '/e/f', 'unlinked: the last path');
  const g = n.lookup(d, 'f');
  t.not(g, f, 'a new file of that name gets a new nodeid');
  n.forget(f, 1);
  t.equal(n.path(f), undefined, 'forgotten');
  n.lookup(1, 'x');
  t.throws(() => n.lookup(1, 'y'), { code: 'ENFILE' }, 'past the bound: ENFILE');
});

t.test('real mounts: the three /dev/fuse readers give the same results', async (t) => {
  for (const reader of ['poll', 'threads', 'threadpool']) {
    const m = await startPassthrough(process.env, 'kernel', reader);
    t.teardown(() => stopMount(m.child, m.mnt));
    t.match(m.out(), new RegExp(`reader ${reader}`), `${reader} reader in use`);
    const local = tmp('fuse-kl-');
    const r = await runDifferential(m.mnt, local, 7, 200);
    t.same(r.mismatches, [], `${reader}: ${r.steps} steps, no mismatch`);
    t.same(r.treeA, r.treeB, `${reader}: trees identical`);
    await stopMount(m.child, m.mnt);
  }
});

t.test('real mount with the writeback cache (option): same results as a local directory', async (t) => {
  const m = await startPassthrough(process.env, 'kernel', 'auto', 'writeback');
  t.teardown(() => stopMount(m.child, m.mnt));
  const local = tmp('fuse-kw-');
  const r = await runDifferential(m.mnt, local, 11, 200);
  t.same(r.mismatches, [], `${r.steps} steps, no mismatch`);
  t.same(r.treeA, r.treeB, 'trees identical');
  // A write-only append handle still works (the session opens it read-write for the kernel).
  const f = join(m.mnt, 'appended');
  await fsp.writeFile(f, 'abc');
  await fsp.appendFile(f, 'def');
  t.equal(await fsp.readFile(f, 'utf8'), 'abcdef');
});

t.test('real mount: ENOSYS as the kernel reports it, RENAME_NOREPLACE, one time alone, ns-free times', async (t) => {
  const m = await startPassthrough(process.env, 'kernel');
  t.teardown(() => stopMount(m.child, m.mnt));
  const f = join(m.mnt, 'f');
  await fsp.writeFile(f, 'x');
  const fa = spawnSync('fallocate', ['-l', '1M', f], { encoding: 'utf8' });
  t.not(fa.status, 0, 'fallocate fails (we answered ENOSYS)');
  t.match(fa.stderr, /not supported/i, fa.stderr);
  await fsp.writeFile(join(m.mnt, 'g'), 'y');
  const mv = spawnSync('mv', ['--no-clobber', f, join(m.mnt, 'g')], { encoding: 'utf8' });
  t.equal(await fsp.readFile(join(m.mnt, 'g'), 'utf8'), 'y', `mv -n keeps the target (${mv.stderr.trim()})`);
  const tm = spawnSync('touch', ['-m', '-d', '2015-06-07T08:09:10Z', f]);
  t.equal(tm.status, 0);
  t.equal((await fsp.stat(f)).mtime.toISOString(), '2015-06-07T08:09:10.000Z', 'touch -m (a SETATTR with the mtime alone)');
  const ta = spawnSync('touch', ['-a', '-d', '2001-02-03T04:05:06Z', f]);
  t.equal(ta.status, 0);
  const st = await fsp.stat(f);
  t.equal(st.atime.toISOString(), '2001-02-03T04:05:06.000Z', 'touch -a');
  t.equal(st.mtime.toISOString(), '2015-06-07T08:09:10.000Z', 'touch -a left the mtime');
  // O_TRUNC through ATOMIC_O_TRUNC: open(O_TRUNC) truncates in the open itself.
  await fsp.writeFile(f, 'longer content');
  await fsp.writeFile(f, 'ab');
  t.equal(await fsp.readFile(f, 'utf8'), 'ab');
  // A big directory is paged through several READDIRs.
  await fsp.mkdir(join(m.mnt, 'many'));
  for (let i = 0; i < 600; i++) await fsp.writeFile(join(m.mnt, 'many', `file-with-a-longish-name-${i}`), '');
  t.equal((await fsp.readdir(join(m.mnt, 'many'))).length, 600, 'readdir pages');
});

t.test('a non-root user mounts through fusermount (the fd comes back over _FUSE_COMMFD)', async (t) => {
  // /dev/fuse is root-only on this machine: the run gets, in a mount namespace of its own, a
  // copy of the device node that others may open (nothing outside the namespace changes).
  const built = loadNativeReader(); // built as root: nobody cannot write dist/
  if ('error' in built) throw new Error(built.error);
  const base = tmp('fuse-nonroot-');
  chmodSync(base, 0o755);
  for (const d of ['b', 'm']) {
    mkdirSync(join(base, d));
    chownSync(join(base, d), 65534, 65534);
  }
  const dev = join(base, 'fuse');
  t.equal(spawnSync('mknod', [dev, 'c', '10', '229']).status, 0, 'a /dev/fuse node');
  chmodSync(dev, 0o666);
  const index = new URL('../../fuse/index.js', import.meta.url).href;
  const script = join(base, 's.mjs');
  writeFileSync(script, `
import { mountVolume, PassthroughVolume, resolveEngine } from ${JSON.stringify(index)};
import { promises as fsp, readFileSync } from 'node:fs';
const engine = resolveEngine('auto').engine;
const h = await mountVolume(undefined, new PassthroughVolume(${JSON.stringify(join(base, 'b'))}), ${JSON.stringify(join(base, 'm'))}, { engine: 'kernel', attrTimeoutS: 0, entryTimeoutS: 0 });
const line = readFileSync('/proc/mounts', 'utf8').split('\\n').find((l) => l.includes(${JSON.stringify(join(base, 'm'))}));
await fsp.writeFile(${JSON.stringify(join(base, 'm', 'x'))}, 'as nobody');
const back = readFileSync(${JSON.stringify(join(base, 'b', 'x'))}, 'utf8');
await h.unmount();
const after = readFileSync('/proc/mounts', 'utf8').includes(${JSON.stringify(join(base, 'm'))});
console.log(JSON.stringify({ engine, line, back, after }));
`);
  chmodSync(script, 0o644);
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount --bind ${dev} /dev/fuse && exec setpriv --reuid=65534 --regid=65534 --clear-groups ${process.execPath} ${script}`], { encoding: 'utf8', timeout: 60_000, cwd: '/' });
  t.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { engine: string; line: string; back: string; after: boolean };
  t.equal(out.engine, 'kernel', 'auto picks the kernel engine for a user who can open /dev/fuse');
  t.match(out.line, /fuse\.containerfs .*user_id=65534/, 'mounted by fusermount for uid 65534');
  t.equal(out.back, 'as nobody', 'a write through the mount reached the backing directory');
  t.equal(out.after, false, 'unmounted (fusermount -u)');
});

t.test('suid/sgid are cleared on write, truncate and chown as on a local directory (HANDLE_KILLPRIV_V2)', async (t) => {
  const m = await startPassthrough(process.env, 'kernel');
  t.teardown(() => stopMount(m.child, m.mnt));
  const local = tmp('fuse-kp-');
  chmodSync(local, 0o755);
  const sh = (cmd: string, uid = 65534) => spawnSync('sh', ['-c', cmd], { uid, gid: uid, encoding: 'utf8' });
  const run = async (root: string): Promise<Record<string, string>> => {
    const f = (n: string) => join(root, n);
    for (const [n, mode] of [['w', 0o6777], ['wg', 0o2666], ['wgin', 0o2666], ['root', 0o6777], ['tr', 0o6777], ['ch', 0o6755]] as const) {
      await fsp.writeFile(f(n), 'x');
      await fsp.chmod(f(n), mode);
    }
    await fsp.chown(f('wgin'), 0, 65534);
    await fsp.chmod(f('wgin'), 0o2666);
    sh(`echo more >> ${f('w')}`);
    sh(`echo more >> ${f('wg')}`);
    sh(`echo more >> ${f('wgin')}`);
    sh(`echo more >> ${f('root')}`, 0);
    sh(`truncate -s 0 ${f('tr')}`);
    await fsp.chown(f('ch'), 4242, 4242);
    const out: Record<string, string> = {};
    for (const n of ['w', 'wg', 'wgin', 'root', 'tr', 'ch']) out[n] = ((await fsp.stat(f(n))).mode & 0o7777).toString(8);
    return out;
  };
  const got = await run(m.mnt);
  const want = await run(local);
  t.same(got, want, `modes as on a local directory: ${JSON.stringify(want)}`);
  t.equal(got.w, '777', 'a write by a non-owner without CAP_FSETID drops suid and (group-executable) sgid');
  t.equal(got.wg, '666', "sgid without group execute goes for a writer outside the file's group");
  t.equal(got.wgin, '2666', 'and stays for one in it');
  t.equal(got.root, '6777', "root's write keeps them");
});
