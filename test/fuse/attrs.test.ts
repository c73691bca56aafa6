// The kernel engine's attribute validity (attrTimeoutS): on a real mount, what the kernel asks
// for a create, stat and unlink of a new file with and without a validity (each FUSE request
// counted by opcode and nodeid as the session receives it); and, through an in-memory transport
// (it checks the order of what the session writes), that an open whose fresh attributes differ
// from what the kernel was told tells the kernel to drop them before the open is answered.
import t from 'tap';
import { promises as fsp, writeFileSync, appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassthroughVolume } from '../../fuse/index.js';
import { KernelSession, FdTransport, kernelMount, kernelUnmount, protocol as P, type Transport } from '../../fuse/kernel/index.js';
import { tempDirFor } from '../lib/tmp.js';

/** Passes everything through, keeping [opcode, nodeid] of each request the kernel sends. */
class CountingTransport implements Transport {
  readonly seen: [number, number][] = [];
  constructor(private readonly inner: Transport) {}
  start(onRequest: (buf: Buffer, n: number, release: () => void) => void, onEnd: (err?: Error) => void): void {
    this.inner.start((buf, n, release) => {
      const d = P.decodeRequest(buf, n);
      if (d.kind !== 'drop') this.seen.push([d.header.opcode, d.header.nodeid]);
      onRequest(buf, n, release);
    }, onEnd);
  }
  write(reply: Buffer): number {
    return this.inner.write(reply);
  }
  pause(): void {
    this.inner.pause();
  }
  resume(): void {
    this.inner.resume();
  }
  close(): void {
    this.inner.close();
  }
}

/**
 * Path stats served from a cache, as lib/fs's attribute cache serves them; open() refreshes the
 * file's entry (lib/fs revalidates the inode at open, which refreshes its cache) and writes
 * through the mount drop it. Handle stats (fgetattr) are fresh.
 */
class CachingVolume extends PassthroughVolume {
  private readonly cache = new Map<string, Awaited<ReturnType<PassthroughVolume['getattr']>>>();
  override async getattr(path: string): ReturnType<PassthroughVolume['getattr']> {
    const hit = this.cache.get(path);
    if (hit) return hit;
    const st = await super.getattr(path);
    this.cache.set(path, st);
    return st;
  }
  override async open(path: string, flags: number): Promise<number> {
    const fh = await super.open(path, flags);
    this.cache.set(path, await super.fgetattr(path, fh));
    return fh;
  }
  override async write(path: string, fh: number, data: Buffer, size: number, offset: number): Promise<number> {
    this.cache.delete(path);
    return super.write(path, fh, data, size, offset);
  }
  override async release(path: string, fh: number): Promise<void> {
    this.cache.delete(path);
    return super.release(path, fh);
  }
}

async function mount(t: { teardown(fn: () => unknown): void }, attrTimeoutS: number, caching = false): Promise<{ mnt: string; backing: string; tr: CountingTransport; s: KernelSession }> {
  const base = tempDirFor(t, 'fuse-attr-');
  const backing = join(base, 'b');
  const mnt = join(base, 'm');
  mkdirSync(backing);
  const fd = await kernelMount(mnt, { fsname: 'attrtest', subtype: 'containerfs', allowOther: false, defaultPermissions: true, mkdir: true });
  const tr = new CountingTransport(new FdTransport(fd, { bufferBytes: 1024 * 1024 + 4096, reader: 'auto' }));
  const s = new KernelSession(caching ? new CachingVolume(backing) : new PassthroughVolume(backing), tr, { attrTimeoutS, entryTimeoutS: 0, dirAttrTimeoutS: 1 });
  s.start();
  t.teardown(async () => {
    await kernelUnmount(mnt, true);
    await s.done;
    tr.close();
  });
  await s.initialized;
  return { mnt, backing, tr, s };
}

/** Requests of opcode `op` the kernel sent for the files in the root (nodeid 1 is the root itself). */
const forFiles = (tr: CountingTransport, op: number, from: number): number => tr.seen.slice(from).filter(([o, id]) => o === op && id !== 1).length;

// Only fs.promises calls here: the session runs in this process, so a synchronous call on the
// mount would wait for a reply this thread could not give.
t.test('with an attribute validity the kernel asks nothing more for a new file it was just told about', async (t) => {
  // 5 s rather than the mount's 10 ms default so that a slow machine cannot let it lapse between
  // two steps of one system call; the mechanism is the same.
  const { mnt, tr, s } = await mount(t, 5);
  await fsp.writeFile(join(mnt, 'warm'), ''); // the root's attributes are in the kernel's cache from here on
  const from = tr.seen.length;
  const getattrsBefore = s.opStats().getattr?.count ?? 0;
  await fsp.writeFile(join(mnt, 'f'), '');
  t.equal((await fsp.stat(join(mnt, 'f'))).size, 0);
  await fsp.unlink(join(mnt, 'f'));
  t.equal(tr.seen.slice(from).filter(([o]) => o === P.OP.CREATE).length, 1, 'one CREATE');
  t.equal(forFiles(tr, P.OP.GETATTR, from), 0, 'no GETATTR of the new file: not for the open after CREATE, not for stat');
  // What is left is the directory's: the kernel drops its attributes after each change in it.
  const dirGetattrs = tr.seen.slice(from).filter(([o, id]) => o === P.OP.GETATTR && id === 1).length;
  t.equal((s.opStats().getattr?.count ?? 0) - getattrsBefore, dirGetattrs, `opStats: ${dirGetattrs} GETATTRs, all of the directory`);
  t.ok(tr.seen.slice(from).filter(([o]) => o === P.OP.LOOKUP).length >= 2, 'stat and unlink still looked the name up (entry timeout 0)');
});

t.test('without one (attrTimeoutS 0) the kernel asks again for each', async (t) => {
  const { mnt, tr } = await mount(t, 0);
  await fsp.writeFile(join(mnt, 'warm'), '');
  const from = tr.seen.length;
  await fsp.writeFile(join(mnt, 'f'), '');
  await fsp.stat(join(mnt, 'f'));
  await fsp.unlink(join(mnt, 'f'));
  t.ok(forFiles(tr, P.OP.GETATTR, from) >= 2, `GETATTRs of the new file: ${forFiles(tr, P.OP.GETATTR, from)} (open after CREATE, stat after LOOKUP)`);
});

t.test('close-to-open on a real mount: a change behind cached attributes is seen by the next open', async (t) => {
  // The volume answers LOOKUP from its attribute cache (as lib/fs does) and revalidates at open:
  // the kernel holds the old size from the LOOKUP of this very open until told otherwise.
  const { mnt, backing } = await mount(t, 5, true);
  await fsp.writeFile(join(mnt, 'c'), 'short');
  t.equal((await fsp.stat(join(mnt, 'c'))).size, 5);
  appendFileSync(join(backing, 'c'), ' and longer'); // another writer, not through this mount
  t.equal((await fsp.stat(join(mnt, 'c'))).size, 5, 'a stat by path may show the cached size (the volume cache)');
  t.equal(await fsp.readFile(join(mnt, 'c'), 'utf8'), 'short and longer', 'open, fstat and read see all of it');
  const h = await fsp.open(join(mnt, 'c'), 'r');
  t.equal((await h.stat()).size, 16, 'fstat after open: the fresh size');
  await h.close();
});

// ---- in-memory transport: the order of what the session writes ----

class MemTransport implements Transport {
  written: Buffer[] = [];
  private deliver!: (buf: Buffer, n: number, release: () => void) => void;
  private waiters: (() => void)[] = [];
  start(onRequest: (buf: Buffer, n: number, release: () => void) => void): void {
    this.deliver = onRequest;
  }
  push(b: Buffer): void {
    this.deliver(b, b.length, () => undefined);
  }
  write(reply: Buffer): number {
    this.written.push(Buffer.from(reply));
    for (const w of this.waiters.splice(0)) w();
    return 0;
  }
  pause(): void {}
  resume(): void {}
  close(): void {}
  async reply(unique: number): Promise<{ index: number; error: number; body: Buffer }> {
    for (;;) {
      const index = this.written.findIndex((x) => P.readOutHeader(x)?.unique === unique);
      if (index >= 0) {
        const r = this.written[index] as Buffer;
        return { index, error: (P.readOutHeader(r) as { error: number }).error, body: r.subarray(P.OUT_HEADER_SIZE) };
      }
      await new Promise<void>((res) => this.waiters.push(res));
    }
  }
}


t.test('session: an open whose fresh attributes differ from what the kernel holds sends NOTIFY_INVAL_INODE before the OPEN reply', async (t) => {
  const dir = tempDirFor(t, 'fuse-inval-');
  writeFileSync(join(dir, 'f'), 'short');
  const tr = new MemTransport();
  const s = new KernelSession(new CachingVolume(dir), tr, { attrTimeoutS: 5, entryTimeoutS: 0 });
  s.start();
  let u = 10;
  const req = (opcode: number, b: Buffer, nodeid = 1): number => {
    const unique = u++;
    tr.push(P.encodeRequest({ unique, opcode, nodeid, uid: 0, gid: 0, pid: 1 }, b));
    return unique;
  };
  const init = Buffer.alloc(64);
  init.writeUInt32LE(7, 0);
  init.writeUInt32LE(44, 4);
  init.writeUInt32LE(1 << 20, 8);
  init.writeUInt32LE(0xffffffff, 12);
  t.equal((await tr.reply(req(P.OP.INIT, init))).error, 0);
  const lk = await tr.reply(req(P.OP.LOOKUP, Buffer.from('f\0')));
  const nodeid = Number(lk.body.readBigUInt64LE(0));
  t.equal(Number(lk.body.readBigUInt64LE(40 + 8)), 5, 'LOOKUP told size 5');
  const openBody = Buffer.alloc(8); // flags O_RDONLY, open_flags 0
  const notifies = (): Buffer[] => tr.written.filter((b) => P.readOutHeader(b)?.unique === 0);

  // Unchanged: the open is answered with no notice.
  const o1 = await tr.reply(req(P.OP.OPEN, openBody, nodeid));
  t.equal(o1.error, 0);
  t.equal(notifies().length, 0, 'attributes unchanged: nothing sent unasked');

  appendFileSync(join(dir, 'f'), ' and longer'); // the cache still says 5
  t.equal(Number((await tr.reply(req(P.OP.LOOKUP, Buffer.from('f\0')))).body.readBigUInt64LE(40 + 8)), 5, 'LOOKUP answers the cached size');
  const o2 = await tr.reply(req(P.OP.OPEN, openBody, nodeid));
  t.equal(o2.error, 0);
  const n = notifies();
  t.equal(n.length, 1, 'one notice');
  const note = n[0] as Buffer;
  t.equal(note.readInt32LE(4), P.NOTIFY_INVAL_INODE, 'NOTIFY_INVAL_INODE');
  t.equal(Number(note.readBigUInt64LE(16)), nodeid, 'for the opened node');
  t.equal(Number(note.readBigInt64LE(24)), -1, 'attributes only (the open drops the pages itself)');
  t.ok(tr.written.indexOf(note) < o2.index, 'written before the OPEN reply');
  t.same(s.opStats().notify_inval_inode?.count, 1, 'counted in opStats');

  // Once told to drop them, the kernel asks (GETATTR): a further open has nothing to revalidate.
  await tr.reply(req(P.OP.OPEN, openBody, nodeid));
  t.equal(notifies().length, 1, 'no second notice');
});
