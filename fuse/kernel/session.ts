// The request loop of the kernel engine: requests come from a Transport (the /dev/fuse fd, or a
// test's in-memory queue), are decoded (protocol.ts), turned from nodeids into paths (nodes.ts)
// and dispatched to the FuseVolume concurrently (the kernel sends ASYNC_READ and PARALLEL_DIROPS
// work in parallel); each reply is one write. Nothing a request carries can throw out of here:
// a bad request is answered with an errno, a handler's failure with its errno (EIO when it is
// not a POSIX error, logged).
//
// Bounds: requests in flight (`maxInFlight`, also what INIT tells the kernel as max_background)
// pause the transport's reads; the node table and the directory handles have caps (ENFILE /
// EMFILE past them).
import { readFileSync } from 'node:fs';
import { silentLogger, type Logger } from '../../lib/common/index.js';
import { toErrno } from '../errno.js';
import type { FuseCaller, FuseStat, FuseTime, FuseVolume } from '../types.js';
import { NodeTable, NodeTableFullError } from './nodes.js';
import {
  FATTR, FSYNC_FDATASYNC, OPEN_KILL_SUIDGID, WRITE_KILL_SUIDGID, FUSE_KERNEL_MINOR, FUSE_KERNEL_VERSION, GETATTR_FH, INIT_FLAGS, OUT_HEADER_SIZE, RENAME_EXCHANGE, RENAME_NOREPLACE,
  E, attrReply, createReply, decodeRequest, direntsReply, emptyReply, entryReply, errorReply, finishReply, initReply, invalInodeNotify, openReply,
  statfsReply, writeReply, xattrSizeReply, dataReply,
  type Attr, type DirEntry, type InHeader, type Request, type Timespec,
} from './protocol.js';

/** Where requests come from and replies go. */
export interface Transport {
  /**
   * Starts delivering requests, one buffer per request (`n` bytes of `buf`). `release` gives the
   * buffer back (the session calls it once it no longer reads `buf`, e.g. after a WRITE's data
   * reached the volume). `onEnd` is called once: unmounted (no error) or a read failed.
   */
  start(onRequest: (buf: Buffer, n: number, release: () => void) => void, onEnd: (err?: Error) => void): void;
  /**
   * Writes one reply; answers 0 or the errno of a failed write (ENOENT: the request was
   * interrupted). Synchronous: the session reuses the buffer once this returns.
   */
  write(reply: Buffer): number;
  /** Stop reading new requests until resume() (in-flight bound reached). */
  pause(): void;
  resume(): void;
  /** Releases the transport's resources (after the session ended). */
  close(): void;
}

export interface KernelSessionOptions {
  /** Seconds the kernel may cache attributes / names (0: ask every time). */
  attrTimeoutS?: number;
  entryTimeoutS?: number;
  /**
   * Seconds the kernel may cache a directory's attributes, and its name (default attrTimeoutS). With
   * default_permissions the kernel checks every directory on a path: a 0 here asks for each
   * one on every path walk, while a file's size must stay fresh (attrTimeoutS 0) for
   * close-to-open reads.
   */
  dirAttrTimeoutS?: number;
  /** Largest WRITE the kernel sends (rounded to pages; at most 1 MiB = 256 pages by default). */
  maxWriteBytes?: number;
  maxReadaheadBytes?: number;
  /** Requests dispatched at once; the transport pauses past it. */
  maxInFlight?: number;
  /** The kernel caches writes and sends them later (FUSE_WRITEBACK_CACHE); off by default (close-to-open needs flush at close to be the data). */
  writebackCache?: boolean;
  maxNodes?: number;
  maxDirHandles?: number;
  logger?: Logger;
}

/** A reply that gave the kernel something (a handle, a lookup) to undo if it never arrives. */
interface Lossy {
  buf: Buffer;
  lost: () => void;
}

interface DirHandle {
  path: string;
  entries: DirEntry[] | undefined;
}

const UNKNOWN_INO = 0xffffffff;

function timespec(d: Date, fine: number | undefined): Timespec {
  const ms = fine ?? d.getTime();
  if (!Number.isFinite(ms)) return { sec: 0, nsec: 0 };
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.min(999_999_999, Math.max(0, Math.round((ms - sec * 1000) * 1e6))) };
}

function toAttr(s: FuseStat, nodeid: number): Attr {
  return {
    ino: s.ino ?? nodeid, size: s.size, blocks: s.blocks ?? Math.ceil(s.size / 512),
    atime: timespec(s.atime, s.atimeMs), mtime: timespec(s.mtime, s.mtimeMs), ctime: timespec(s.ctime, s.ctimeMs),
    mode: s.mode, nlink: s.nlink, uid: s.uid, gid: s.gid, rdev: s.rdev ?? 0, blksize: s.blksize ?? 4096,
  };
}

function fuseTime(t: Timespec, now: boolean, set: boolean): FuseTime {
  if (now) return 'now';
  if (!set) return undefined;
  // The kernel's u64 seconds are two's complement for times before 1970.
  const sec = t.sec >= 2 ** 52 ? t.sec - 2 ** 64 : t.sec;
  return new Date(sec * 1000 + Math.floor(t.nsec / 1e6));
}

/**
 * Whether the calling process is in group `gid`: its primary group from the request, else its
 * supplementary groups from /proc/PID/status (what libfuse's fuse_req_getgroups reads too).
 */
function callerInGroup(h: InHeader, gid: number): boolean {
  if (h.gid === gid) return true;
  try {
    const status = readFileSync(`/proc/${h.pid}/status`, 'utf8');
    const line = /^Groups:(.*)$/m.exec(status)?.[1] ?? '';
    return line.split(/\s+/).some((g) => g !== '' && Number(g) === gid);
  } catch {
    return false; // the process is gone: nothing it could still claim
  }
}

function posixError(code: string): Error {
  return Object.assign(new Error(`fuse: ${code}`), { code });
}

/**
 * Slack on a reply's attribute validity when deciding whether the kernel may still use it: the
 * kernel counts from when it took the reply, in jiffies (rounded up; up to 10 ms at HZ=100).
 */
const TOLD_SLACK_MS = 20;

/** READ reply buffers kept for reuse (each max_pages pages plus the header: 16 MiB at 1 MiB reads). */
const READ_BUF_POOL = 16;

export class KernelSession {
  private readonly log: Logger;
  private readonly nodes: NodeTable;
  private readonly dirs = new Map<number, DirHandle>(); // invariant: size <= maxDirHandles
  private nextDirFh = 1;
  private inFlight = 0; // invariant: 0 <= inFlight <= maxInFlight (pause() at the bound)
  private paused = false;
  private initDone = false;
  private ended = false;
  private readonly attrS: number;
  private readonly dirAttrS: number;
  private readonly entryS: number;
  private readonly maxInFlight: number;
  private readonly maxDirHandles: number;
  /** What INIT negotiated (for tests and logs). */
  negotiated: { minor: number; flags: number; maxWrite: number; maxPages: number } | undefined;
  private endResolve!: () => void;
  /** Resolves when the session ended (unmounted, DESTROY, or the transport failed: logged). */
  readonly done: Promise<void>;
  private initResolve!: () => void;
  /** Resolves once the INIT reply was written (the kernel then applies what it negotiated). */
  readonly initialized: Promise<void>;
  private readonly opts: KernelSessionOptions;
  /** Nodes whose suid/sgid/capability were found cleared (killPrivs). invariant: size <= 65536 */
  private readonly privsClean = new Set<number>();
  /** Per operation: requests answered and their total time in the session (bounded: one entry per op name). */
  private readonly stats = new Map<string, { count: number; errors: number; totalMs: number }>();
  /** NOTIFY_INVAL_INODE messages written (revalidate). */
  private invalidations = 0;
  /**
   * READ reply buffers, reused once written: a fresh 1 MiB buffer per READ costs a page fault
   * per 4 KiB on every fill (more than the copy itself). Reads beyond the pool's size in flight
   * at once get fresh buffers. invariant: readBufFree.length <= readBufOwner.size <= READ_BUF_POOL
   */
  private readonly readBufFree: Buffer[] = [];
  private readonly readBufOwner = new Map<ArrayBufferLike, Buffer>();

  constructor(
    private readonly vol: FuseVolume,
    private readonly transport: Transport,
    opts: KernelSessionOptions = {},
  ) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger;
    this.nodes = new NodeTable(opts.maxNodes);
    this.attrS = opts.attrTimeoutS ?? 1;
    this.dirAttrS = opts.dirAttrTimeoutS ?? this.attrS;
    this.entryS = opts.entryTimeoutS ?? 1;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 64);
    this.maxDirHandles = opts.maxDirHandles ?? 65_536;
    this.done = new Promise((r) => (this.endResolve = r));
    this.initialized = new Promise((r) => (this.initResolve = r));
  }

  /** Starts serving; `done` resolves when the session ends. */
  start(): void {
    this.transport.start(
      (buf, n, release) => this.onRequest(buf, n, release),
      (err) => this.end(err),
    );
  }

  /** Requests answered per operation, with errors and mean time (ms) in the volume. */
  opStats(): Record<string, { count: number; errors: number; meanMs: number }> {
    const out: Record<string, { count: number; errors: number; meanMs: number }> = {};
    // Not a request, but what the session wrote unasked (see revalidate).
    if (this.invalidations > 0) out.notify_inval_inode = { count: this.invalidations, errors: 0, meanMs: 0 };
    for (const [op, st] of this.stats) out[op] = { count: st.count, errors: st.errors, meanMs: st.count ? st.totalMs / st.count : 0 };
    return out;
  }

  get nodeCount(): number {
    return this.nodes.size;
  }

  private end(err?: Error): void {
    if (this.ended) return;
    this.ended = true;
    if (err) this.log.error({ err: err.message }, 'fuse: /dev/fuse read failed; session ends');
    this.endResolve();
  }

  private send(reply: Buffer | Lossy): void {
    const buf = Buffer.isBuffer(reply) ? reply : reply.buf;
    const e = this.transport.write(buf);
    this.giveReadBuf(buf);
    if (e === 0) return;
    // ENOENT: the request was interrupted and the kernel no longer waits for it (what the reply
    // gave, a handle or a lookup, never reached it: undo it); ENODEV: unmounted.
    if (!Buffer.isBuffer(reply) && (e === E.ENOENT || e === 19)) reply.lost();
    else if (e !== E.ENOENT && e !== 19) this.log.warn({ errno: e }, 'fuse: writing a reply failed');
  }

  private onRequest(buf: Buffer, n: number, release: () => void): void {
    const d = decodeRequest(buf, n);
    if (d.kind === 'drop') {
      release();
      this.log.warn({ reason: d.reason, bytes: n }, 'fuse: unreadable request dropped');
      return;
    }
    const h = d.header;
    if (d.kind === 'bad') {
      release();
      this.log.warn({ reason: d.reason, opcode: h.opcode }, 'fuse: malformed request answered with an error');
      this.send(errorReply(h.unique, d.errno));
      return;
    }
    const req = d.req;
    // No reply at all for these (the kernel expects none); done synchronously.
    if (req.op === 'forget') {
      this.nodes.forget(h.nodeid, req.nlookup);
      return release();
    }
    if (req.op === 'batch_forget') {
      for (const f of req.items) this.nodes.forget(f.nodeid, f.nlookup);
      return release();
    }
    if (req.op === 'interrupt') return release(); // the original request is answered normally
    if (req.op === 'init') {
      release();
      this.send(this.init(h, req));
      // Not after a reply that only asks the kernel for another protocol version.
      if (this.initDone) this.initResolve();
      return;
    }
    if (!this.initDone) {
      release();
      return this.send(errorReply(h.unique, E.EIO));
    }
    this.inFlight++;
    if (this.inFlight >= this.maxInFlight && !this.paused) {
      this.paused = true;
      this.transport.pause();
    }
    const t0 = performance.now();
    let failed = false;
    let p: Promise<Buffer | Lossy>;
    try {
      p = this.handle(h, req);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (reply) => this.send(reply),
      (err: unknown) => {
        failed = true;
        this.send(errorReply(h.unique, -toErrno(err, this.log, req.op)));
      },
    ).finally(() => {
      const st = this.stats.get(req.op) ?? { count: 0, errors: 0, totalMs: 0 };
      st.count++;
      if (failed) st.errors++;
      st.totalMs += performance.now() - t0;
      this.stats.set(req.op, st);
      release();
      this.inFlight--;
      if (this.paused && this.inFlight < this.maxInFlight) {
        this.paused = false;
        this.transport.resume();
      }
      if (req.op === 'destroy') this.end();
    });
  }

  private init(h: InHeader, req: Extract<Request, { op: 'init' }>): Buffer {
    if (req.major < FUSE_KERNEL_VERSION) return errorReply(h.unique, E.EPROTO);
    if (req.major > FUSE_KERNEL_VERSION) {
      // The kernel offers a newer major: answer ours only; it sends INIT again with it.
      const b = Buffer.alloc(OUT_HEADER_SIZE + 8);
      b.writeUInt32LE(FUSE_KERNEL_VERSION, OUT_HEADER_SIZE);
      b.writeUInt32LE(FUSE_KERNEL_MINOR, OUT_HEADER_SIZE + 4);
      return finishReply(b, h.unique);
    }
    const F = INIT_FLAGS;
    // HANDLE_KILLPRIV_V2: we clear suid/sgid on write, truncate and chown (killPrivs), so the
    // kernel need not look up security.capability before every write (one request less per write).
    let want = F.ASYNC_READ | F.ATOMIC_O_TRUNC | F.BIG_WRITES | F.PARALLEL_DIROPS | F.MAX_PAGES | F.ASYNC_DIO | F.HANDLE_KILLPRIV_V2;
    if (this.opts.writebackCache) want |= F.WRITEBACK_CACHE;
    const flags = want & req.flags;
    const page = 4096;
    const wantWrite = Math.max(page, this.opts.maxWriteBytes ?? 1024 * 1024);
    const maxPages = flags & F.MAX_PAGES ? Math.min(256, Math.ceil(wantWrite / page)) : 32;
    const maxWrite = Math.min(wantWrite, maxPages * page);
    const minor = Math.min(req.minor, FUSE_KERNEL_MINOR);
    this.negotiated = { minor, flags, maxWrite, maxPages };
    this.initDone = true;
    this.log.info({ kernel: `${req.major}.${req.minor}`, minor, flags: flags.toString(16), maxWrite }, 'fuse: session initialised');
    return initReply(h.unique, {
      minor, flags, maxWrite, maxPages, timeGranNs: 1,
      maxReadahead: Math.min(req.maxReadahead, this.opts.maxReadaheadBytes ?? 1024 * 1024),
      maxBackground: this.maxInFlight, congestionThreshold: Math.max(1, Math.floor((this.maxInFlight * 3) / 4)),
    });
  }

  /** A buffer of at least `bytes` (a pooled one when the size fits; see readBufFree). */
  private takeReadBuf(bytes: number): Buffer {
    const size = OUT_HEADER_SIZE + (this.negotiated?.maxPages ?? 32) * 4096;
    if (bytes > size) return Buffer.allocUnsafe(bytes);
    const free = this.readBufFree.pop();
    if (free) return free;
    const b = Buffer.allocUnsafe(size);
    if (this.readBufOwner.size < READ_BUF_POOL && b.byteOffset === 0 && b.buffer.byteLength === size) this.readBufOwner.set(b.buffer, b);
    return b;
  }

  /** Back to the pool if `b` (or a view of it) is a pooled READ buffer. */
  private giveReadBuf(b: Buffer): void {
    const whole = this.readBufOwner.get(b.buffer);
    if (whole && this.readBufFree.length < READ_BUF_POOL && !this.readBufFree.includes(whole)) this.readBufFree.push(whole);
  }

  private path(nodeid: number): string {
    const p = this.nodes.path(nodeid);
    if (p === undefined) throw posixError('ESTALE');
    return p;
  }

  private child(parent: number, name: string): string {
    const p = this.nodes.childPath(parent, name);
    if (p === undefined) throw posixError('ESTALE');
    return p;
  }

  /** How long the kernel may keep these attributes (directories: dirAttrTimeoutS). */
  private attrOf(st: FuseStat): number {
    return (st.mode & 0o170000) === 0o040000 ? this.dirAttrS : this.attrS;
  }

  /**
   * How long the kernel may keep a name: a directory's as long as its attributes (a path walk
   * then asks nothing for the directories on it; every request still names a path that the
   * volume resolves fresh, so a directory renamed or replaced elsewhere is seen by the next
   * operation inside it), anything else's entryTimeoutS.
   */
  private entryOf(st: FuseStat): number {
    return (st.mode & 0o170000) === 0o040000 ? Math.max(this.entryS, this.dirAttrS) : this.entryS;
  }

  /**
   * The attributes of a reply about `nodeid`. A regular file's are remembered while the kernel
   * may use them without asking (attrTimeoutS > 0), for revalidate.
   */
  private attrFor(st: FuseStat, nodeid: number): Attr {
    if (this.attrS > 0 && (st.mode & 0o170000) === 0o100000) {
      this.nodes.tell(nodeid, st.size, st.mtimeMs ?? st.mtime.getTime(), st.ctimeMs ?? st.ctime.getTime(), performance.now());
    }
    return toAttr(st, nodeid);
  }

  /**
   * Close-to-open with a kernel attribute timeout (attrTimeoutS > 0). The path walk of an
   * open() LOOKUPs the file (entry timeout 0), and that reply's attributes come from the
   * volume's attribute cache, which may predate another client's close; the kernel then uses
   * them for attrTimeoutS: a read stops at the old size, fstat shows it. The volume's open
   * fetched the file fresh (lib/fs revalidates at open). When that differs from what the kernel
   * was told within its validity, the kernel is told to drop its copy (NOTIFY_INVAL_INODE,
   * written before the OPEN reply, so before open() returns): the next fstat or read past the
   * old size asks (GETATTR with the handle, answered from the open file).
   */
  private async revalidate(nodeid: number, path: string, fh: number): Promise<void> {
    if (this.attrS === 0) return;
    const told = this.nodes.told(nodeid);
    // Past attr_valid (plus a jiffy's rounding) the kernel asks again by itself.
    if (!told || performance.now() - told.atMs > this.attrS * 1000 + TOLD_SLACK_MS) return;
    if (this.vol.fgetattr) {
      try {
        const st = await this.vol.fgetattr(path, fh);
        if (st.size === told.size && (st.mtimeMs ?? st.mtime.getTime()) === told.mtimeMs && (st.ctimeMs ?? st.ctime.getTime()) === told.ctimeMs) return;
      } catch {
        // Cannot tell: invalidate, which is always safe.
      }
    }
    told.atMs = -Infinity; // invalidated: nothing left to revalidate until the next reply
    this.invalidations++;
    const e = this.transport.write(invalInodeNotify(nodeid));
    // ENOENT: the kernel holds no inode for it (nothing cached to drop).
    if (e !== 0 && e !== E.ENOENT) this.log.warn({ errno: e, path }, 'fuse: invalidating cached attributes failed');
  }

  /** Looks the new name up in the table (one more kernel reference) and answers its entry. */
  private async entry(h: InHeader, parent: number, name: string, path: string): Promise<Lossy> {
    const st = await this.vol.getattr(path);
    const id = this.lookupNode(parent, name);
    return { buf: entryReply(h.unique, id, this.attrFor(st, id), this.entryOf(st), this.attrOf(st)), lost: () => this.nodes.forget(id, 1) };
  }

  private fullLogged = 0;

  private lookupNode(parent: number, name: string): number {
    try {
      return this.nodes.lookup(parent, name);
    } catch (err) {
      // The kernel forgets inodes under memory pressure; a full table means it does not (or a
      // leak here). Answer ENFILE and say so, at most once a minute.
      if (err instanceof NodeTableFullError && Date.now() - this.fullLogged > 60_000) {
        this.fullLogged = Date.now();
        this.log.error({ nodes: this.nodes.size, max: this.nodes.maxNodes }, 'fuse: node table full; new names answer ENFILE');
      }
      throw err;
    }
  }

  /**
   * What the VFS does on write, truncate and chown, done here (HANDLE_KILLPRIV_V2): drop the
   * setuid bit, and the setgid bit when the group may execute, plus a file capability. Nodes
   * found clean are remembered until their mode or xattrs change through this mount or they
   * are opened again, so a stream of writes checks once.
   */
  private async killPrivs(h: InHeader, nodeid: number, path: string, fh?: number): Promise<void> {
    if (this.privsClean.has(nodeid)) return;
    try {
      await this.killPrivsNow(h, nodeid, path, fh);
    } catch (err) {
      // The write or truncate itself succeeded; a file unlinked meanwhile has no bits to keep.
      this.log.warn({ err: (err as Error).message, path }, 'fuse: clearing suid/sgid failed');
    }
  }

  private async killPrivsNow(h: InHeader, nodeid: number, path: string, fh?: number): Promise<void> {
    const st = fh !== undefined && this.vol.fgetattr ? await this.vol.fgetattr(path, fh) : await this.vol.getattr(path);
    if ((st.mode & 0o170000) === 0o040000) return;
    // setgid goes when the group may execute, or (a marker of mandatory locking otherwise) when
    // the caller is neither root nor in the file's group (the VFS's setattr_should_drop_sgid).
    const dropSgid = (st.mode & 0o2000) !== 0 && ((st.mode & 0o010) !== 0 || (h.uid !== 0 && !callerInGroup(h, st.gid)));
    const kill = 0o4000 | (dropSgid ? 0o2000 : 0);
    if (st.mode & kill) await this.vol.chmod(path, st.mode & 0o7777 & ~kill);
    await this.vol.removexattr(path, 'security.capability').catch(() => undefined);
    // Clean only when no bit is left: a kept setgid may still go for another caller.
    if ((st.mode & ~kill & 0o6000) !== 0) return;
    if (this.privsClean.size >= 65_536) this.privsClean.clear();
    this.privsClean.add(nodeid);
  }

  private caller(h: InHeader, umask: number): FuseCaller {
    return { uid: h.uid, gid: h.gid, pid: h.pid, umask };
  }

  private async handle(h: InHeader, req: Request): Promise<Buffer | Lossy> {
    const vol = this.vol;
    const u = h.unique;
    switch (req.op) {
      case 'lookup': {
        const p = this.child(h.nodeid, req.name);
        return this.entry(h, h.nodeid, req.name, p);
      }
      case 'getattr': {
        const p = this.path(h.nodeid);
        const st = req.flags & GETATTR_FH && vol.fgetattr ? await vol.fgetattr(p, req.fh) : await vol.getattr(p);
        return attrReply(u, this.attrFor(st, h.nodeid), this.attrOf(st));
      }
      case 'setattr': {
        const p = this.path(h.nodeid);
        const v = req.valid;
        if (v & FATTR.MODE) this.privsClean.delete(h.nodeid);
        // libfuse's order: mode, owner, size, times.
        if (v & FATTR.MODE) await vol.chmod(p, req.mode);
        if (v & (FATTR.UID | FATTR.GID)) await vol.chown(p, v & FATTR.UID ? req.uid : 0xffffffff, v & FATTR.GID ? req.gid : 0xffffffff);
        if (v & FATTR.SIZE) {
          if (v & FATTR.FH) await vol.ftruncate(p, req.fh, req.size);
          else await vol.truncate(p, req.size);
        }
        // The kernel asks for this on chown, and on truncate by a caller without CAP_FSETID.
        if (v & FATTR.KILL_SUIDGID) {
          this.privsClean.delete(h.nodeid);
          await this.killPrivs(h, h.nodeid, p, v & FATTR.FH ? req.fh : undefined);
        }
        if (v & (FATTR.ATIME | FATTR.MTIME | FATTR.ATIME_NOW | FATTR.MTIME_NOW)) {
          await vol.utimens(p, fuseTime(req.atime, (v & FATTR.ATIME_NOW) !== 0, (v & FATTR.ATIME) !== 0), fuseTime(req.mtime, (v & FATTR.MTIME_NOW) !== 0, (v & FATTR.MTIME) !== 0));
        }
        const st = v & FATTR.FH && vol.fgetattr ? await vol.fgetattr(p, req.fh) : await vol.getattr(p);
        return attrReply(u, this.attrFor(st, h.nodeid), this.attrOf(st));
      }
      case 'readlink':
        return dataReply(u, Buffer.from(await vol.readlink(this.path(h.nodeid))));
      case 'symlink': {
        const p = this.child(h.nodeid, req.name);
        await vol.symlink(req.target, p, this.caller(h, 0));
        return this.entry(h, h.nodeid, req.name, p);
      }
      case 'mknod': {
        const p = this.child(h.nodeid, req.name);
        await vol.mknod(p, req.mode, req.rdev, this.caller(h, req.umask));
        return this.entry(h, h.nodeid, req.name, p);
      }
      case 'mkdir': {
        const p = this.child(h.nodeid, req.name);
        await vol.mkdir(p, req.mode, this.caller(h, req.umask));
        return this.entry(h, h.nodeid, req.name, p);
      }
      case 'unlink':
      case 'rmdir': {
        const p = this.child(h.nodeid, req.name);
        await (req.op === 'unlink' ? vol.unlink(p) : vol.rmdir(p));
        this.nodes.remove(h.nodeid, req.name);
        return emptyReply(u);
      }
      case 'rename': {
        if (req.flags & ~RENAME_NOREPLACE || req.flags & RENAME_EXCHANGE) throw posixError('EINVAL');
        const from = this.child(h.nodeid, req.from);
        const to = this.child(req.newdir, req.to);
        if (req.flags & RENAME_NOREPLACE) {
          const exists = await vol.getattr(to).then(
            () => true,
            (e: { code?: string }) => {
              if (e.code === 'ENOENT') return false;
              throw e;
            },
          );
          if (exists) throw posixError('EEXIST');
        }
        await vol.rename(from, to);
        this.nodes.rename(h.nodeid, req.from, req.newdir, req.to);
        return emptyReply(u);
      }
      case 'link': {
        const target = this.path(req.oldnodeid);
        const p = this.child(h.nodeid, req.name);
        await vol.link(target, p);
        return this.entry(h, h.nodeid, req.name, p);
      }
      case 'open': {
        const p = this.path(h.nodeid);
        let flags = req.flags;
        // With the writeback cache the kernel reads pages around partial writes through any
        // handle and places appends itself: a write-only or append handle would refuse those.
        if (this.opts.writebackCache) flags = ((flags & ~0o3) | (flags & 0o3 ? 0o2 : 0)) & ~0o2000;
        const fh = await vol.open(p, flags);
        // Close-to-open: another mount may have changed the mode meanwhile.
        this.privsClean.delete(h.nodeid);
        if (req.openFlags & OPEN_KILL_SUIDGID && req.flags & 0o1000) await this.killPrivs(h, h.nodeid, p, fh);
        await this.revalidate(h.nodeid, p, fh);
        return { buf: openReply(u, fh, 0), lost: () => void vol.release(p, fh).catch(() => undefined) };
      }
      case 'create': {
        const p = this.child(h.nodeid, req.name);
        // (A new file has nothing to kill; see killPrivs for later writes.)
        const fh = await vol.create(p, req.mode, this.caller(h, req.umask));
        let st: FuseStat;
        let id: number;
        try {
          st = vol.fgetattr ? await vol.fgetattr(p, fh) : await vol.getattr(p);
          id = this.lookupNode(h.nodeid, req.name);
        } catch (err) {
          // The kernel never learns of this handle: give it back.
          await vol.release(p, fh).catch(() => undefined);
          throw err;
        }
        return {
          buf: createReply(u, id, this.attrFor(st, id), this.entryS, this.attrOf(st), fh, 0),
          lost: () => {
            this.nodes.forget(id, 1);
            void vol.release(p, fh).catch(() => undefined);
          },
        };
      }
      case 'read': {
        const b = this.takeReadBuf(OUT_HEADER_SIZE + req.size);
        let n: number;
        try {
          n = await vol.read(this.path(h.nodeid), req.fh, b.subarray(OUT_HEADER_SIZE, OUT_HEADER_SIZE + req.size), req.size, req.offset);
        } catch (err) {
          this.giveReadBuf(b);
          throw err;
        }
        return finishReply(b, u, OUT_HEADER_SIZE + Math.max(0, Math.min(n, req.size)));
      }
      case 'write': {
        const p = this.path(h.nodeid);
        const n = await vol.write(p, req.fh, req.data, req.size, req.offset);
        if (req.writeFlags & WRITE_KILL_SUIDGID) await this.killPrivs(h, h.nodeid, p, req.fh);
        return writeReply(u, n);
      }
      case 'flush':
        await vol.flush(this.path(h.nodeid), req.fh);
        return emptyReply(u);
      case 'release':
        await vol.release(this.nodes.path(h.nodeid) ?? '', req.fh);
        return emptyReply(u);
      case 'fsync':
        await vol.fsync(this.path(h.nodeid), req.fh, (req.flags & FSYNC_FDATASYNC) !== 0);
        return emptyReply(u);
      case 'opendir': {
        if (this.dirs.size >= this.maxDirHandles) throw posixError('EMFILE');
        const path = this.path(h.nodeid);
        let fh = this.nextDirFh;
        while (this.dirs.has(fh)) fh = fh >= 0x7fffffff ? 1 : fh + 1;
        this.nextDirFh = fh >= 0x7fffffff ? 1 : fh + 1;
        this.dirs.set(fh, { path, entries: undefined });
        return openReply(u, fh, 0);
      }
      case 'readdir': {
        const d = this.dirs.get(req.fh);
        if (!d) throw posixError('EBADF');
        // The listing is taken at the first READDIR (and again on a rewind to 0); later pages
        // are served from it, so entries do not repeat or go missing while the directory changes.
        if (req.offset === 0 || d.entries === undefined) {
          const names = await vol.readdir(this.nodes.path(h.nodeid) ?? d.path);
          d.entries = [{ ino: UNKNOWN_INO, name: '.', type: 4 }, { ino: UNKNOWN_INO, name: '..', type: 4 }];
          for (const name of names) if (name !== '.' && name !== '..') d.entries.push({ ino: UNKNOWN_INO, name, type: 0 });
        }
        return direntsReply(u, d.entries, req.offset, req.size);
      }
      case 'releasedir':
        this.dirs.delete(req.fh);
        return emptyReply(u);
      case 'fsyncdir':
        return emptyReply(u);
      case 'statfs': {
        const s = await vol.statfs(this.nodes.path(h.nodeid) ?? '/');
        return statfsReply(u, { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: s.namemax, frsize: s.frsize });
      }
      case 'access': {
        const p = this.path(h.nodeid);
        if (vol.access) await vol.access(p, req.mask);
        else await vol.getattr(p);
        return emptyReply(u);
      }
      case 'setxattr':
        this.privsClean.delete(h.nodeid);
        await vol.setxattr(this.path(h.nodeid), req.name, Buffer.from(req.value), req.flags);
        return emptyReply(u);
      case 'getxattr': {
        const v = await vol.getxattr(this.path(h.nodeid), req.name);
        if (v === undefined) throw posixError('ENODATA');
        if (req.size === 0) return xattrSizeReply(u, v.length);
        if (v.length > req.size) throw posixError('ERANGE');
        return dataReply(u, v);
      }
      case 'listxattr': {
        const names = await vol.listxattr(this.path(h.nodeid));
        const list = Buffer.from(names.map((n) => `${n}\0`).join(''));
        if (req.size === 0) return xattrSizeReply(u, list.length);
        if (list.length > req.size) throw posixError('ERANGE');
        return dataReply(u, list);
      }
      case 'removexattr':
        await vol.removexattr(this.path(h.nodeid), req.name);
        return emptyReply(u);
      case 'destroy':
        return emptyReply(u);
      case 'unsupported':
        // GETLK/SETLK (no POSIX_LOCKS: the kernel keeps locks locally), FALLOCATE, LSEEK,
        // COPY_FILE_RANGE, IOCTL, POLL, BMAP, READDIRPLUS (not negotiated), SYNCFS, TMPFILE, ...
        return errorReply(u, E.ENOSYS);
      case 'init':
      case 'forget':
      case 'batch_forget':
      case 'interrupt':
        // Handled before dispatch (onRequest); unreachable.
        return errorReply(u, E.EIO);
    }
  }
}

