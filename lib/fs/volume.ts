// Volume: a ContainerFS volume as an fs.promises-shaped API (what npm importers use, and what the
// FUSE bridge maps onto). Paths resolve component by component through a bounded dentry cache
// and a bounded attribute cache, both with a TTL; symlinks are followed (ELOOP after 40).
// Metadata goes to the volume's partitions through MetaClient; file data goes to block groups
// through BlockGroupClient (see file.ts for buffering and read-ahead).
//
// Consistency between clients is close-to-open, as NFS: open() revalidates the inode (and the
// last path component) with the partition, close() and sync() flush and commit. Within one
// client every handle on an inode shares one buffer, so this client always reads its own writes.
// A file another client unlinks while it is open here stays usable until the last close: opens
// run in MetaClient open scopes and held inodes are listed in lease renewals, not registered
// one by one (README.md, "Files unlinked elsewhere while open here").
//
// Permissions: the library acts with the rights of whoever holds the Volume (like root on a
// local disk); a FUSE mount has the kernel check modes (default_permissions). New inodes belong
// to the options' uid/gid; the FUSE bridge passes the calling process's instead (an `Owner`),
// and then a setgid directory's gid and setgid bit are inherited as Linux does.
import { Readable, Writable } from 'node:stream';
import { constants as fsc } from 'node:fs';
import { LruMap, silentLogger, sleep, type Logger } from '../common/index.js';
import {
  MetaClient, ROOT_INO, NAME_MAX, S_IFMT, S_IFDIR, S_IFLNK, S_IFREG,
  SETATTR_MODE, SETATTR_UID, SETATTR_GID, SETATTR_ATIME, SETATTR_MTIME, SETATTR_ATIME_NOW, SETATTR_MTIME_NOW, SETATTR_ATIME_ONLY,
  type Inode, type Timespec, type OpenScope,
} from '../meta/index.js';
import { BlockGroupClient } from '../blockgroup/index.js';
import { MasterClient } from '../master/index.js';
import { RpcPool } from '../rpc/index.js';
import { FsClosedError, FsLimitError, FsVolumeNotFoundError, posix, toFsError } from './errors.js';
import { OpenInode, SlabPool, freeExtents, type FileDataOptions } from './file.js';
import { ExtentCache, type ExtentCacheStats } from './cache.js';

export const PATH_MAX = 4096;
/** The access-mode bits of open(2) flags (node:fs does not export O_ACCMODE). */
const O_ACCMODE = 3;
/** Linux's limit on symlinks followed in one resolution. */
export const SYMLOOP_MAX = 40;

export interface VolumeOptions {
  /** How long a cached attribute or name may be used without asking the partition. */
  attrTtlMs?: number;
  dentryTtlMs?: number;
  maxCachedAttrs?: number;
  maxCachedDentries?: number;
  maxOpenFiles?: number;
  /** Applied to the mode of files and directories created through this API (not through FUSE: the kernel applies the caller's). */
  umask?: number;
  flushBytes?: number;
  maxDirtyBytes?: number;
  readAheadBytes?: number;
  maxAppendBytes?: number;
  /** Bytes of file data cached: what this client wrote or read (0: none). Never stale: extents are immutable (cache.ts). */
  readCacheBytes?: number;
  /** Whether acknowledged writes go into the data cache (default true; reads always fill it). */
  cacheWrites?: boolean;
  /** Owner of new files made through this API (default: this process's). FUSE passes the caller's. */
  uid?: number;
  gid?: number;
  logger?: Logger;
  now?: () => number;
}

export interface VolumeOpenOptions extends VolumeOptions {
  /** Master addresses (host:port), or one comma-separated string. */
  master: string | string[];
  volume: string;
  token?: string;
  deadlineMs?: number;
  /** How long a new block group may take to place (a datanode just died: until the master notices). */
  groupWaitMs?: number;
  /**
   * This client's lease on the partitions (renewed every third of it): after a crash, files it
   * held open that other clients unlinked are deleted this long after its last renewal.
   */
  leaseMs?: number;
}

type Flags = string | number;

/** fs.Stats-shaped attributes of a file. */
export class VolumeStats {
  readonly dev = 0;
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly blksize = 4096;
  readonly blocks: number;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly birthtimeMs: number;
  readonly atime: Date;
  readonly mtime: Date;
  readonly ctime: Date;
  readonly birthtime: Date;
  /** Nanosecond times as the partition keeps them. */
  readonly atimeNs: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  constructor(i: Inode, size: number) {
    this.ino = i.ino;
    this.mode = i.mode;
    this.nlink = i.nlink;
    this.uid = i.uid;
    this.gid = i.gid;
    this.rdev = i.rdev ?? 0;
    this.size = size;
    this.blocks = Math.ceil(size / 512);
    this.atimeMs = ms(i.atime);
    this.mtimeMs = ms(i.mtime);
    this.ctimeMs = ms(i.ctime);
    this.birthtimeMs = ms(i.btime ?? i.ctime);
    this.atime = new Date(this.atimeMs);
    this.mtime = new Date(this.mtimeMs);
    this.ctime = new Date(this.ctimeMs);
    this.birthtime = new Date(this.birthtimeMs);
    this.atimeNs = ns(i.atime);
    this.mtimeNs = ns(i.mtime);
    this.ctimeNs = ns(i.ctime);
  }
  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
  isFIFO(): boolean {
    return (this.mode & S_IFMT) === fsc.S_IFIFO;
  }
  isSocket(): boolean {
    return (this.mode & S_IFMT) === fsc.S_IFSOCK;
  }
  isCharacterDevice(): boolean {
    return (this.mode & S_IFMT) === fsc.S_IFCHR;
  }
  isBlockDevice(): boolean {
    return (this.mode & S_IFMT) === fsc.S_IFBLK;
  }
}

/** fs.Dirent-shaped directory entry. */
export class VolumeDirent {
  constructor(
    readonly name: string,
    readonly type: number,
    readonly ino: number,
  ) {}
  isFile(): boolean {
    return this.type === S_IFREG;
  }
  isDirectory(): boolean {
    return this.type === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return this.type === S_IFLNK;
  }
}

function ms(t: Timespec | null | undefined): number {
  return (t?.sec ?? 0) * 1000 + Math.floor((t?.nsec ?? 0) / 1e6);
}
function ns(t: Timespec | null | undefined): bigint {
  return BigInt(t?.sec ?? 0) * 1_000_000_000n + BigInt(t?.nsec ?? 0);
}
function timespec(d: Date | number | string): Timespec {
  const m = d instanceof Date ? d.getTime() : typeof d === 'number' ? d * 1000 : Date.parse(d);
  const sec = Math.floor(m / 1000);
  return { sec, nsec: Math.round((m - sec * 1000) * 1e6) };
}

/** A day: relatime updates an access time at least this old even when the file did not change. */
const RELATIME_MS = 24 * 3600 * 1000;

function cmpTime(a: Timespec | null | undefined, b: Timespec | null | undefined): number {
  const x = a ?? { sec: 0, nsec: 0 };
  const y = b ?? { sec: 0, nsec: 0 };
  return (x.sec ?? 0) - (y.sec ?? 0) || (x.nsec ?? 0) - (y.nsec ?? 0);
}

function timeKey(t: Timespec | null | undefined): string {
  return `${t?.sec ?? 0}.${t?.nsec ?? 0}`;
}

/** open(2) flags from a Node flag string or number. */
export function parseFlags(f: Flags | undefined): number {
  if (f === undefined) return fsc.O_RDONLY;
  if (typeof f === 'number') return f;
  const map: Record<string, number> = {
    r: fsc.O_RDONLY, rs: fsc.O_RDONLY, sr: fsc.O_RDONLY, 'r+': fsc.O_RDWR, 'rs+': fsc.O_RDWR, 'sr+': fsc.O_RDWR,
    w: fsc.O_TRUNC | fsc.O_CREAT | fsc.O_WRONLY, wx: fsc.O_TRUNC | fsc.O_CREAT | fsc.O_WRONLY | fsc.O_EXCL, xw: fsc.O_TRUNC | fsc.O_CREAT | fsc.O_WRONLY | fsc.O_EXCL,
    'w+': fsc.O_TRUNC | fsc.O_CREAT | fsc.O_RDWR, 'wx+': fsc.O_TRUNC | fsc.O_CREAT | fsc.O_RDWR | fsc.O_EXCL, 'xw+': fsc.O_TRUNC | fsc.O_CREAT | fsc.O_RDWR | fsc.O_EXCL,
    a: fsc.O_APPEND | fsc.O_CREAT | fsc.O_WRONLY, ax: fsc.O_APPEND | fsc.O_CREAT | fsc.O_WRONLY | fsc.O_EXCL, xa: fsc.O_APPEND | fsc.O_CREAT | fsc.O_WRONLY | fsc.O_EXCL,
    as: fsc.O_APPEND | fsc.O_CREAT | fsc.O_WRONLY, sa: fsc.O_APPEND | fsc.O_CREAT | fsc.O_WRONLY,
    'a+': fsc.O_APPEND | fsc.O_CREAT | fsc.O_RDWR, 'ax+': fsc.O_APPEND | fsc.O_CREAT | fsc.O_RDWR | fsc.O_EXCL, 'xa+': fsc.O_APPEND | fsc.O_CREAT | fsc.O_RDWR | fsc.O_EXCL,
    'as+': fsc.O_APPEND | fsc.O_CREAT | fsc.O_RDWR, 'sa+': fsc.O_APPEND | fsc.O_CREAT | fsc.O_RDWR,
  };
  const v = map[f];
  if (v === undefined) throw posix('EINVAL', 'open', undefined, `unknown file open flag ${JSON.stringify(f)}`);
  return v;
}

function splitPath(p: string): string[] {
  return p.split('/').filter((c) => c !== '' && c !== '.');
}

interface Cached<T> {
  v: T;
  expires: number;
}

/** Where a path ends: the inode, and the directory and name that lead to it. */
/** Who a new inode belongs to, when the creator is not the Volume's own uid/gid (a FUSE caller). */
export interface Owner {
  uid: number;
  gid: number;
}

const S_ISGID = 0o2000;

interface Resolved {
  ino: number;
  inode: Inode;
  parent: number;
  name: string;
}

/** An open file: fs.promises FileHandle-shaped. */
export class VolumeFileHandle {
  private closed = false;
  /** File position for reads and writes without an explicit position. */
  private pos = 0;
  constructor(
    private readonly vol: Volume,
    readonly file: OpenInode,
    readonly flags: number,
    readonly path: string,
  ) {}

  get fd(): number {
    return this.file.ino;
  }

  private check(syscall: string, write: boolean): void {
    if (this.closed) throw posix('EBADF', syscall, this.path, 'file handle closed');
    const acc = this.flags & O_ACCMODE;
    if (write && acc === fsc.O_RDONLY) throw posix('EBADF', syscall, this.path, 'not open for writing');
    if (!write && acc === fsc.O_WRONLY) throw posix('EBADF', syscall, this.path, 'not open for reading');
  }

  async read(buffer: Buffer, offset = 0, length = buffer.length - offset, position: number | null = null): Promise<{ bytesRead: number; buffer: Buffer }> {
    this.check('read', false);
    const at = position ?? this.pos;
    let n: number;
    try {
      n = await this.file.read(buffer.subarray(offset, offset + length), length, at);
    } catch (err) {
      throw toFsError(err, 'read', this.path);
    }
    if (position === null) this.pos = at + n;
    if (!(this.flags & (fsc.O_NOATIME ?? 0))) this.vol.accessed(this.file);
    return { bytesRead: n, buffer };
  }

  async write(data: Buffer | Uint8Array | string, offset = 0, length?: number, position: number | null = null): Promise<{ bytesWritten: number; buffer: Buffer }> {
    this.check('write', true);
    const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const part = buf.subarray(offset, length === undefined ? undefined : offset + length);
    // O_APPEND: every write goes to the end, whatever the position (POSIX).
    const at = this.flags & fsc.O_APPEND ? this.file.size : position ?? this.pos;
    let n: number;
    try {
      n = await this.file.write(part, at);
    } catch (err) {
      throw toFsError(err, 'write', this.path);
    }
    if (position === null || this.flags & fsc.O_APPEND) this.pos = at + n;
    return { bytesWritten: n, buffer: buf };
  }

  async readFile(): Promise<Buffer> {
    this.check('read', false);
    const size = this.file.size;
    const out = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = await this.file.read(out.subarray(off), size - off, off).catch((err: unknown) => {
        throw toFsError(err, 'read', this.path);
      });
      if (n === 0) break;
      off += n;
    }
    if (!(this.flags & (fsc.O_NOATIME ?? 0))) this.vol.accessed(this.file);
    return out.subarray(0, off);
  }

  async truncate(len = 0): Promise<void> {
    this.check('ftruncate', true);
    await this.vol.truncateOpen(this.file, len, this.path);
  }

  async stat(): Promise<VolumeStats> {
    if (this.closed) throw posix('EBADF', 'fstat', this.path);
    return new VolumeStats(this.file.inode, this.file.size);
  }

  async sync(): Promise<void> {
    if (this.closed) throw posix('EBADF', 'fsync', this.path);
    await this.file.flush().catch((err: unknown) => {
      throw toFsError(err, 'fsync', this.path);
    });
  }

  datasync(): Promise<void> {
    return this.sync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.vol.release(this.file, this.path);
  }
}

export class Volume {
  private readonly attrs: LruMap<number, Cached<Inode>>;
  private readonly dentries: LruMap<string, Cached<{ ino: number; type: number }>>;
  private readonly files = new Map<number, OpenInode>(); // invariant: size <= maxOpenFiles
  private readonly o: Required<Omit<VolumeOptions, 'logger' | 'now'>>;
  private readonly data: FileDataOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private closed = false;
  /**
   * The volume's capacity as the master said at open. Partitions learn a quota through their
   * leaders' heartbeats, so right after a volume is created they may not know it yet: statfs
   * shows this one until they do (enforcement does not depend on it).
   */
  private capacityAtOpen = 0;

  /** For tests and embedding: a Volume over clients the caller made (and closes, unless `owned`). */
  constructor(
    readonly meta: MetaClient,
    readonly blocks: BlockGroupClient,
    opts: VolumeOptions = {},
    private readonly owned: { close(): Promise<void> }[] = [],
  ) {
    this.o = {
      attrTtlMs: opts.attrTtlMs ?? 1000,
      dentryTtlMs: opts.dentryTtlMs ?? 1000,
      maxCachedAttrs: opts.maxCachedAttrs ?? 100_000,
      maxCachedDentries: opts.maxCachedDentries ?? 100_000,
      maxOpenFiles: opts.maxOpenFiles ?? 65_536,
      umask: opts.umask ?? 0o022,
      flushBytes: opts.flushBytes ?? 4 * 1024 * 1024,
      maxDirtyBytes: opts.maxDirtyBytes ?? 16 * 1024 * 1024,
      readAheadBytes: opts.readAheadBytes ?? 4 * 1024 * 1024,
      maxAppendBytes: opts.maxAppendBytes ?? 4 * 1024 * 1024,
      readCacheBytes: opts.readCacheBytes ?? 64 * 1024 * 1024,
      cacheWrites: opts.cacheWrites ?? true,
      uid: opts.uid ?? (process.getuid?.() ?? 0),
      gid: opts.gid ?? (process.getgid?.() ?? 0),
    };
    this.data = { flushBytes: this.o.flushBytes, maxDirtyBytes: Math.max(this.o.maxDirtyBytes, this.o.flushBytes), maxSegments: 1024, readAheadBytes: this.o.readAheadBytes, maxAppendBytes: this.o.maxAppendBytes, cacheWrites: this.o.cacheWrites, slabs: new SlabPool(this.o.maxAppendBytes), ...(this.o.readCacheBytes > 0 ? { blockCache: new ExtentCache(this.o.readCacheBytes) } : {}) };
    this.attrs = new LruMap(this.o.maxCachedAttrs);
    this.dentries = new LruMap(this.o.maxCachedDentries);
    this.log = opts.logger ?? silentLogger;
    this.now = opts.now ?? Date.now;
    // Extents of deleted files (unlinked, or orphans let go) are marked dead on their datanodes.
    meta.onFreed = (keys) => freeExtents(blocks, keys, this.log);
    // Directories a change answered are cached as answered; dirChanged() forgets the others.
    meta.onParents = (inodes) => {
      for (const i of inodes) {
        this.remember(i);
        if (this.answered.size < 1024) this.answered.add(i.ino);
      }
    };
  }

  /** Connects to a volume through its masters: partition routes and block-group placement come from them. */
  static async open(opts: VolumeOpenOptions): Promise<Volume> {
    const endpoints = (Array.isArray(opts.master) ? opts.master : opts.master.split(',')).map((s) => s.trim()).filter((s) => s !== '');
    const token = opts.token ? { token: opts.token } : {};
    const pool = new RpcPool({ ...token, backoffBaseMs: 20, backoffMaxMs: 500, connectTimeoutMs: 3000 });
    const master = new MasterClient({ endpoints, pool, ...(opts.deadlineMs ? { deadlineMs: opts.deadlineMs } : {}) });
    let capacityAtOpen = 0;
    try {
      capacityAtOpen = (await master.volumeInfo(opts.volume)).volume.quotaBytes ?? 0;
    } catch (err) {
      await master.close();
      await pool.close();
      if ((err as { code?: string }).code === 'MASTER_NOT_FOUND') throw new FsVolumeNotFoundError(`no volume ${JSON.stringify(opts.volume)} (create it: containerfs volume create ${opts.volume})`, { cause: err });
      throw err;
    }
    const meta = new MetaClient({ routes: () => master.routes(opts.volume), pool, deadlineMs: opts.deadlineMs ?? 10_000, ...(opts.leaseMs ? { leaseMs: opts.leaseMs } : {}) });
    const blocks = new BlockGroupClient({
      pool,
      ...(opts.logger ? { logger: opts.logger } : {}),
      newGroup: async () => {
        // Right after a datanode dies the master may still place a group on it (until its
        // heartbeats time out): the placement fails and is retried, for up to groupWaitMs.
        const until = Date.now() + (opts.groupWaitMs ?? 30_000);
        for (let attempt = 1; ; attempt++) {
          try {
            const g = await master.allocateGroup(opts.volume);
            return { groupId: g.groupId, replicas: g.replicas };
          } catch (err) {
            const c = (err as { code?: string }).code;
            if ((c !== 'MASTER_PLACEMENT_FAILED' && c !== 'MASTER_NO_CAPACITY' && c !== 'MASTER_UNAVAILABLE') || Date.now() > until) throw err;
            opts.logger?.warn({ err: (err as Error).message, attempt }, 'fs: block group placement failed; retrying');
            await sleep(Math.min(1000, 50 * attempt));
          }
        }
      },
      locate: async (groupId) => {
        const g = await master.locateGroup(groupId);
        return { groupId: g.groupId, replicas: g.replicas };
      },
    });
    await meta.refresh();
    const v = new Volume(meta, blocks, opts, [meta, blocks, master, pool]);
    v.capacityAtOpen = capacityAtOpen;
    return v;
  }

  // ---------------------------------------------------------------- caches

  private alive(syscall: string): void {
    if (this.closed) throw new FsClosedError(`volume closed (${syscall})`);
  }

  /** Attributes of an ino: this client's open file first, then the cache, then the partition. */
  private async attr(ino: number, fresh = false, scope?: OpenScope): Promise<Inode> {
    const f = this.files.get(ino);
    if (!fresh) {
      if (f) return f.inode;
      const c = this.attrs.get(ino);
      if (c && c.expires > this.now()) return c.v;
    }
    const inode = await this.meta.getattr(ino, undefined, scope);
    this.remember(inode);
    return inode;
  }

  /** Every inode the partition answers refreshes the caches. */
  remember = (inode: Inode | null | undefined): void => {
    if (!inode || !inode.ino) return;
    this.attrs.set(inode.ino, { v: inode, expires: this.now() + this.o.attrTtlMs });
    this.files.get(inode.ino)?.setInode(inode);
  };

  private forget(ino: number): void {
    this.attrs.delete(ino);
  }

  /** Directories whose fresh inode a namespace change just answered (bounded). */
  private readonly answered = new Set<number>();

  /**
   * After a change in directory `ino`: its cached attributes are stale unless the change's
   * answer brought them (then the next path walk needs no getattr of the parent). Concurrent
   * changes can only make this forget more, never keep a stale inode.
   */
  private dirChanged(ino: number): void {
    if (!this.answered.delete(ino)) this.forget(ino);
  }

  private dkey(parent: number, name: string): string {
    return `${parent}/${name}`;
  }

  private async lookup(parent: number, name: string, fresh: boolean, scope?: OpenScope): Promise<{ ino: number; type: number; inode?: Inode }> {
    const k = this.dkey(parent, name);
    if (!fresh) {
      const c = this.dentries.get(k);
      if (c && c.expires > this.now()) return c.v;
    }
    const r = await this.meta.lookup(parent, name, scope);
    const v = { ino: r.ino, type: r.type };
    this.dentries.set(k, { v, expires: this.now() + this.o.dentryTtlMs });
    this.remember(r.inode);
    return { ...v, inode: r.inode };
  }

  private dropName(parent: number, name: string): void {
    this.dentries.delete(this.dkey(parent, name));
  }

  // ---------------------------------------------------------------- path resolution

  private checkPath(path: string, syscall: string): void {
    if (typeof path !== 'string') throw posix('EINVAL', syscall, String(path), 'path must be a string');
    if (path.includes('\u0000')) throw posix('EINVAL', syscall, path, 'path contains a NUL byte');
    if (Buffer.byteLength(path) >= PATH_MAX) throw posix('ENAMETOOLONG', syscall, path);
  }

  /**
   * Walks `path` from the root. Symlinks in the middle are always followed; the last one only
   * when `follow`. `freshLast` asks the partition for the last name and its attributes (open).
   */
  private async resolve(path: string, syscall: string, follow: boolean, freshLast = false, scope?: OpenScope): Promise<Resolved> {
    this.checkPath(path, syscall);
    let comps = splitPath(path);
    const stack: number[] = [ROOT_INO];
    const names: string[] = [''];
    let links = 0;
    let cur = { ino: ROOT_INO, type: S_IFDIR };
    if (comps.length === 0) return { ino: ROOT_INO, inode: await this.attr(ROOT_INO, freshLast, scope), parent: ROOT_INO, name: '' };
    let last: Resolved | undefined;
    while (comps.length > 0) {
      const name = comps.shift() as string;
      if (name === '..') {
        if (stack.length > 1) {
          stack.pop();
          names.pop();
        }
        cur = { ino: stack[stack.length - 1] as number, type: S_IFDIR };
        last = undefined;
        continue;
      }
      if (Buffer.byteLength(name) > NAME_MAX) throw posix('ENAMETOOLONG', syscall, path);
      const dir = stack[stack.length - 1] as number;
      if (cur.type !== S_IFDIR) throw posix('ENOTDIR', syscall, path);
      const isLast = comps.length === 0;
      let child: { ino: number; type: number; inode?: Inode };
      try {
        child = await this.lookup(dir, name, isLast && freshLast, isLast ? scope : undefined);
      } catch (err) {
        throw toFsError(err, syscall, path);
      }
      if (child.type === S_IFLNK && (!isLast || follow)) {
        if (++links > SYMLOOP_MAX) throw posix('ELOOP', syscall, path, 'too many symbolic links encountered');
        const target = (await this.attr(child.ino)).target;
        const t = Buffer.from(target ?? new Uint8Array(0)).toString();
        if (t.startsWith('/')) {
          stack.length = 1;
          names.length = 1;
        }
        comps = [...splitPath(t), ...comps];
        cur = { ino: stack[stack.length - 1] as number, type: S_IFDIR };
        last = undefined;
        continue;
      }
      stack.push(child.ino);
      names.push(name);
      cur = child;
      last = { ino: child.ino, inode: child.inode as Inode, parent: dir, name };
    }
    const ino = stack[stack.length - 1] as number;
    // A fresh lookup answered the inode with the name (same partition): no second round.
    const inode = last && last.ino === ino && freshLast && last.inode ? last.inode : await this.attr(ino, freshLast, scope).catch((err: unknown) => {
      throw toFsError(err, syscall, path);
    });
    if (last && last.ino === ino) return { ...last, inode };
    // The path ended in '..' or a symlink to a directory: its parent is the one below on the stack.
    return { ino, inode, parent: (stack[stack.length - 2] ?? ROOT_INO) as number, name: names[names.length - 1] ?? '' };
  }

  /** The directory that holds the last component, and that component's name. */
  private async parentOf(path: string, syscall: string): Promise<{ parent: number; name: string; dir: Inode }> {
    this.checkPath(path, syscall);
    const comps = splitPath(path);
    const name = comps.pop();
    if (name === undefined || name === '..') throw posix(name === undefined ? 'EBUSY' : 'EINVAL', syscall, path);
    if (Buffer.byteLength(name) > NAME_MAX) throw posix('ENAMETOOLONG', syscall, path);
    const dir = await this.resolve(comps.join('/'), syscall, true);
    if ((dir.inode.mode & S_IFMT) !== S_IFDIR) throw posix('ENOTDIR', syscall, path);
    return { parent: dir.ino, name, dir: dir.inode };
  }

  /**
   * uid/gid (and extra mode bits) of a new inode in `dir`. Without an owner: this Volume's uid/gid,
   * as always. With one (a FUSE caller), as Linux's inode_init_owner: in a setgid directory the
   * gid is the directory's, and a new subdirectory is setgid too. (Dropping S_ISGID from a new
   * file of a group the caller is not in is the kernel's: vfs_prepare_mode, before FUSE sees it.)
   */
  private ownerIn(dir: Inode, owner: Owner | undefined, isDir: boolean): { uid: number; gid: number; mode: number } {
    if (!owner) return { uid: this.o.uid, gid: this.o.gid, mode: 0 };
    const setgid = (dir.mode & S_ISGID) !== 0;
    return { uid: owner.uid, gid: setgid ? dir.gid : owner.gid, mode: setgid && isDir ? S_ISGID : 0 };
  }

  // ---------------------------------------------------------------- attributes

  async stat(path: string): Promise<VolumeStats> {
    this.alive('stat');
    const r = await this.resolve(path, 'stat', true);
    return this.statOf(r.inode);
  }

  async lstat(path: string): Promise<VolumeStats> {
    this.alive('lstat');
    const r = await this.resolve(path, 'lstat', false);
    return this.statOf(r.inode);
  }

  private statOf(inode: Inode): VolumeStats {
    const f = this.files.get(inode.ino);
    return new VolumeStats(f ? f.inode : inode, f ? f.size : inode.size);
  }

  /** Attributes by ino (the FUSE bridge keeps inos of open files). */
  async statIno(ino: number): Promise<VolumeStats> {
    return this.statOf(await this.attr(ino));
  }

  async access(path: string): Promise<void> {
    this.alive('access');
    await this.resolve(path, 'access', true);
  }

  private async setattr(path: string, syscall: string, follow: boolean, attr: Parameters<MetaClient['setattr']>[1]): Promise<void> {
    this.alive(syscall);
    const r = await this.resolve(path, syscall, follow);
    try {
      this.remember(await this.meta.setattr(r.ino, attr));
    } catch (err) {
      throw toFsError(err, syscall, path);
    }
  }

  chmod(path: string, mode: number): Promise<void> {
    return this.setattr(path, 'chmod', true, { valid: SETATTR_MODE, mode: mode & 0o7777 });
  }
  lchmod(path: string, mode: number): Promise<void> {
    return this.setattr(path, 'chmod', false, { valid: SETATTR_MODE, mode: mode & 0o7777 });
  }
  chown(path: string, uid: number, gid: number): Promise<void> {
    return this.setattr(path, 'chown', true, { valid: (uid >= 0 ? SETATTR_UID : 0) | (gid >= 0 ? SETATTR_GID : 0), uid: Math.max(0, uid), gid: Math.max(0, gid) });
  }
  lchown(path: string, uid: number, gid: number): Promise<void> {
    return this.setattr(path, 'chown', false, { valid: (uid >= 0 ? SETATTR_UID : 0) | (gid >= 0 ? SETATTR_GID : 0), uid: Math.max(0, uid), gid: Math.max(0, gid) });
  }
  utimes(path: string, atime: Date | number | string, mtime: Date | number | string): Promise<void> {
    return this.setattr(path, 'utime', true, { valid: SETATTR_ATIME | SETATTR_MTIME, atime: timespec(atime), mtime: timespec(mtime) });
  }
  lutimes(path: string, atime: Date | number | string, mtime: Date | number | string): Promise<void> {
    return this.setattr(path, 'lutime', false, { valid: SETATTR_ATIME | SETATTR_MTIME, atime: timespec(atime), mtime: timespec(mtime) });
  }
  /** utimensat(2): each time a Date, 'now' (UTIME_NOW: the partition's clock) or undefined (UTIME_OMIT). */
  setTimes(path: string, atime: Date | 'now' | undefined, mtime: Date | 'now' | undefined, follow = true): Promise<void> {
    let valid = 0;
    const attr: Parameters<MetaClient['setattr']>[1] = {};
    if (atime === 'now') valid |= SETATTR_ATIME_NOW;
    else if (atime) {
      valid |= SETATTR_ATIME;
      attr.atime = timespec(atime);
    }
    if (mtime === 'now') valid |= SETATTR_MTIME_NOW;
    else if (mtime) {
      valid |= SETATTR_MTIME;
      attr.mtime = timespec(mtime);
    }
    // Nothing to set still changes ctime on Linux; the partition's setattr does that with valid 0.
    return this.setattr(path, 'utime', follow, { ...attr, valid });
  }
  /** Both times to now (utimensat with UTIME_NOW), taken by the partition. */
  touchNow(path: string): Promise<void> {
    return this.setattr(path, 'utime', false, { valid: SETATTR_ATIME_NOW | SETATTR_MTIME_NOW });
  }

  async truncate(path: string, len = 0): Promise<void> {
    this.alive('truncate');
    const r = await this.resolve(path, 'truncate', true);
    if ((r.inode.mode & S_IFMT) === S_IFDIR) throw posix('EISDIR', 'truncate', path);
    const f = this.files.get(r.ino);
    if (f) return this.truncateOpen(f, len, path);
    try {
      this.remember(await this.meta.truncate(r.ino, len));
    } catch (err) {
      throw toFsError(err, 'truncate', path);
    }
  }

  /** @internal */
  async truncateOpen(f: OpenInode, len: number, path: string): Promise<void> {
    if (len < 0) throw posix('EINVAL', 'ftruncate', path);
    try {
      await f.truncate(len);
    } catch (err) {
      throw toFsError(err, 'ftruncate', path);
    }
  }

  // ---------------------------------------------------------------- files

  async open(path: string, flags?: Flags, mode = 0o666): Promise<VolumeFileHandle> {
    return this.openInternal(path, parseFlags(flags), mode & ~this.o.umask);
  }

  /** open(2) without the umask (the FUSE kernel already applied the caller's); a file it creates belongs to `owner` if given. */
  async openInternal(path: string, flags: number, mode: number, owner?: Owner): Promise<VolumeFileHandle> {
    this.alive('open');
    // In an open scope: until the file is held, this client's lease renewals vouch for nothing
    // the open might see (see MetaClient.openScope), so another client's unlink keeps it.
    return this.meta.openScope((scope) => this.openIn(scope, path, flags, mode, owner));
  }

  private async openIn(scope: OpenScope, path: string, flags: number, mode: number, owner: Owner | undefined): Promise<VolumeFileHandle> {
    let r: Resolved | undefined;
    if (flags & fsc.O_CREAT) {
      const { parent, name, dir } = await this.parentOf(path, 'open');
      let existing: { ino: number; type: number } | undefined;
      // O_EXCL: the create itself answers EEXIST, so the lookup round is saved (FUSE creates).
      if (!(flags & fsc.O_EXCL)) {
        try {
          existing = await this.lookup(parent, name, true, scope);
        } catch (err) {
          if ((err as { code?: string }).code !== 'ENOENT') throw toFsError(err, 'open', path);
        }
      }
      if (existing && flags & fsc.O_EXCL) throw posix('EEXIST', 'open', path);
      if (!existing) {
        try {
          const who = this.ownerIn(dir, owner, false);
          const inode = await this.meta.create(parent, name, S_IFREG | (mode & 0o7777), who.uid, who.gid, scope);
          this.remember(inode);
          this.dentries.set(this.dkey(parent, name), { v: { ino: inode.ino, type: S_IFREG }, expires: this.now() + this.o.dentryTtlMs });
          this.dirChanged(parent);
          r = { ino: inode.ino, inode, parent, name };
        } catch (err) {
          if ((err as { code?: string }).code === 'EEXIST' && !(flags & fsc.O_EXCL)) r = undefined;
          else throw toFsError(err, 'open', path);
        }
      }
    }
    // Close-to-open: the last name and the inode come fresh from the partition.
    if (!r) r = await this.resolve(path, 'open', !(flags & fsc.O_NOFOLLOW), true, scope);
    const type = r.inode.mode & S_IFMT;
    // The name was there but the inode lost its last link meanwhile: the open comes after the unlink.
    if (r.inode.nlink === 0 && type !== S_IFDIR && !this.files.has(r.ino)) throw posix('ENOENT', 'open', path);
    const acc = flags & O_ACCMODE;
    if (type === S_IFLNK) throw posix('ELOOP', 'open', path);
    if (type === S_IFDIR && acc !== fsc.O_RDONLY) throw posix('EISDIR', 'open', path);
    if (flags & fsc.O_DIRECTORY && type !== S_IFDIR) throw posix('ENOTDIR', 'open', path);
    const f = this.acquire(r.inode);
    const h = new VolumeFileHandle(this, f, flags, path);
    if (flags & fsc.O_TRUNC && acc !== fsc.O_RDONLY && type === S_IFREG && f.size > 0) {
      try {
        await h.truncate(0);
      } catch (err) {
        await h.close().catch(() => undefined);
        throw err;
      }
    }
    return h;
  }

  private acquire(inode: Inode): OpenInode {
    let f = this.files.get(inode.ino);
    if (!f) {
      if (this.files.size >= this.o.maxOpenFiles) throw new FsLimitError(`more than ${this.o.maxOpenFiles} open files`);
      f = new OpenInode(inode.ino, inode, this.meta, this.blocks, this.data, this.log, this.remember);
      this.meta.hold(inode.ino);
      this.files.set(inode.ino, f);
    } else if (!f.hasDirty) {
      f.setInode(inode);
    }
    f.refs++;
    return f;
  }

  /** @internal: the last handle's close flushes, commits and lets the inode go. */
  async release(f: OpenInode, path: string): Promise<void> {
    let failure: unknown;
    try {
      await f.flush();
    } catch (err) {
      failure = toFsError(err, 'close', path);
    }
    f.refs--;
    if (f.refs <= 0 && !f.hasDirty) {
      this.files.delete(f.ino);
      this.attrs.set(f.ino, { v: f.inode, expires: this.now() + this.o.attrTtlMs });
      this.meta.unhold(f.ino);
    }
    if (failure) throw failure;
  }

  async readFile(path: string, opts?: { encoding?: BufferEncoding | null; flag?: Flags } | BufferEncoding): Promise<Buffer | string> {
    const o = typeof opts === 'string' ? { encoding: opts } : opts ?? {};
    const h = await this.open(path, o.flag ?? 'r');
    try {
      const b = await h.readFile();
      return o.encoding ? b.toString(o.encoding) : b;
    } finally {
      await h.close();
    }
  }

  async writeFile(path: string, data: Buffer | Uint8Array | string, opts?: { mode?: number; flag?: Flags; encoding?: BufferEncoding } | BufferEncoding): Promise<void> {
    const o = typeof opts === 'string' ? { encoding: opts } : opts ?? {};
    const h = await this.open(path, o.flag ?? 'w', o.mode ?? 0o666);
    try {
      const buf = typeof data === 'string' ? Buffer.from(data, o.encoding ?? 'utf8') : data;
      if (buf.length > 0) await h.write(buf, 0, buf.length, null);
    } catch (err) {
      await h.close().catch(() => undefined);
      throw err;
    }
    await h.close();
  }

  appendFile(path: string, data: Buffer | Uint8Array | string, opts?: { mode?: number }): Promise<void> {
    return this.writeFile(path, data, { ...opts, flag: 'a' });
  }

  createReadStream(path: string, opts: { start?: number; end?: number; highWaterMark?: number } = {}): Readable {
    const chunk = opts.highWaterMark ?? 1024 * 1024;
    const start = opts.start ?? 0;
    const end = opts.end === undefined ? Infinity : opts.end + 1; // `end` is inclusive, as in node:fs
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const vol = this;
    async function* gen(): AsyncGenerator<Buffer> {
      const h = await vol.open(path, 'r');
      try {
        let pos = start;
        while (pos < end) {
          const buf = Buffer.allocUnsafe(Math.min(chunk, end - pos));
          const { bytesRead } = await h.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) break;
          pos += bytesRead;
          yield buf.subarray(0, bytesRead);
        }
      } finally {
        await h.close();
      }
    }
    return Readable.from(gen(), { objectMode: false });
  }

  createWriteStream(path: string, opts: { flags?: Flags; mode?: number; start?: number } = {}): Writable {
    let h: VolumeFileHandle | undefined;
    let pos = opts.start ?? 0;
    const ready = this.open(path, opts.flags ?? 'w', opts.mode ?? 0o666).then((x) => {
      h = x;
      if (x.flags & fsc.O_APPEND) pos = x.file.size;
      return x;
    });
    ready.catch(() => undefined); // reported through the stream's first write or final
    return new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        ready
          .then(async (x) => {
            const { bytesWritten } = await x.write(chunk, 0, chunk.length, pos);
            pos += bytesWritten;
          })
          .then(() => cb(), cb);
      },
      final: (cb) => {
        ready.then((x) => x.close()).then(() => cb(), cb);
      },
      destroy: (err, cb) => {
        if (h) void h.close().catch(() => undefined);
        cb(err);
      },
    });
  }

  // ---------------------------------------------------------------- namespace

  async mkdir(path: string, opts?: { mode?: number; recursive?: boolean } | number): Promise<string | undefined> {
    const o = typeof opts === 'number' ? { mode: opts } : opts ?? {};
    return this.mkdirInternal(path, (o.mode ?? 0o777) & ~this.o.umask, o.recursive ?? false);
  }

  /** mkdir(2) without the umask (FUSE); new directories belong to `owner` if given. */
  async mkdirInternal(path: string, mode: number, recursive = false, owner?: Owner): Promise<string | undefined> {
    this.alive('mkdir');
    if (recursive) {
      const comps = splitPath(path);
      let first: string | undefined;
      for (let i = 1; i <= comps.length; i++) {
        const p = '/' + comps.slice(0, i).join('/');
        try {
          const s = await this.stat(p);
          if (!s.isDirectory()) throw posix('ENOTDIR', 'mkdir', path);
          continue;
        } catch (err) {
          if ((err as { code?: string }).code !== 'ENOENT') throw err;
        }
        try {
          await this.mkdirInternal(p, mode, false, owner);
          first ??= p;
        } catch (err) {
          if ((err as { code?: string }).code !== 'EEXIST') throw err;
        }
      }
      return first;
    }
    const { parent, name, dir } = await this.parentOf(path, 'mkdir');
    try {
      const who = this.ownerIn(dir, owner, true);
      const inode = await this.meta.mkdir(parent, name, (mode & 0o7777) | who.mode, who.uid, who.gid);
      this.remember(inode);
      this.dirChanged(parent);
    } catch (err) {
      throw toFsError(err, 'mkdir', path);
    }
    return undefined;
  }

  /** mknod(2); the node belongs to `owner` if given. */
  async mknod(path: string, mode: number, rdev = 0, owner?: Owner): Promise<void> {
    this.alive('mknod');
    const { parent, name, dir } = await this.parentOf(path, 'mknod');
    try {
      const m = (mode & S_IFMT) === 0 ? S_IFREG | (mode & 0o7777) : mode;
      const who = this.ownerIn(dir, owner, (m & S_IFMT) === S_IFDIR);
      this.remember(await this.meta.mknod(parent, name, m | who.mode, rdev, who.uid, who.gid));
      this.dirChanged(parent);
    } catch (err) {
      throw toFsError(err, 'mknod', path);
    }
  }

  async readdir(path: string): Promise<string[]>;
  async readdir(path: string, opts: { withFileTypes: true }): Promise<VolumeDirent[]>;
  async readdir(path: string, opts?: { withFileTypes?: boolean }): Promise<string[] | VolumeDirent[]> {
    this.alive('readdir');
    const r = await this.resolve(path, 'scandir', true);
    if ((r.inode.mode & S_IFMT) !== S_IFDIR) throw posix('ENOTDIR', 'scandir', path);
    let entries;
    try {
      entries = await this.meta.readdirAll(r.ino);
    } catch (err) {
      throw toFsError(err, 'scandir', path);
    }
    const exp = this.now() + this.o.dentryTtlMs;
    const out = entries.map((e) => {
      const name = e.name.toString();
      this.dentries.set(this.dkey(r.ino, name), { v: { ino: e.ino, type: e.type }, expires: exp });
      return new VolumeDirent(name, e.type, e.ino);
    });
    return opts?.withFileTypes ? out : out.map((d) => d.name);
  }

  async unlink(path: string): Promise<void> {
    this.alive('unlink');
    const { parent, name } = await this.parentOf(path, 'unlink');
    try {
      // The child's ino, from the cache when it has it (through FUSE the kernel looked the name
      // up just before): to drop its cached attributes, and to tell the partition this client
      // does not hold it (then it goes at once; a stale guess only makes it wait as an orphan).
      const child = await this.lookup(parent, name, false).catch(() => undefined);
      if (child?.type === S_IFDIR) throw posix('EISDIR', 'unlink', path);
      await this.meta.unlink(parent, name, child?.ino);
      if (child) this.forget(child.ino);
    } catch (err) {
      throw toFsError(err, 'unlink', path);
    } finally {
      this.dropName(parent, name);
      this.dirChanged(parent);
    }
  }

  async rmdir(path: string): Promise<void> {
    this.alive('rmdir');
    const { parent, name } = await this.parentOf(path, 'rmdir');
    try {
      await this.meta.rmdir(parent, name);
    } catch (err) {
      throw toFsError(err, 'rmdir', path);
    } finally {
      this.dropName(parent, name);
      this.dirChanged(parent);
    }
  }

  async rm(path: string, opts: { recursive?: boolean; force?: boolean } = {}): Promise<void> {
    let s: VolumeStats;
    try {
      s = await this.lstat(path);
    } catch (err) {
      if (opts.force && (err as { code?: string }).code === 'ENOENT') return;
      throw err;
    }
    if (!s.isDirectory()) return this.unlink(path);
    if (!opts.recursive) throw posix('ERR_FS_EISDIR', 'rm', path, 'is a directory (use recursive)');
    // Bounded depth-first removal: the stack holds directories still to empty.
    for (const name of await this.readdir(path)) await this.rm(`${path.replace(/\/+$/, '')}/${name}`, opts);
    await this.rmdir(path);
  }

  async rename(from: string, to: string): Promise<void> {
    this.alive('rename');
    const a = await this.parentOf(from, 'rename');
    const b = await this.parentOf(to, 'rename');
    try {
      // As in unlink: the replaced inode's ino, as far as the cache knows.
      const target = await this.lookup(b.parent, b.name, false).catch(() => undefined);
      const src = await this.lookup(a.parent, a.name, false).catch(() => undefined);
      await this.meta.rename(a.parent, a.name, b.parent, b.name, 0, target?.ino);
      if (src) this.forget(src.ino);
      if (target) this.forget(target.ino);
    } catch (err) {
      throw toFsError(err, 'rename', from);
    } finally {
      this.dropName(a.parent, a.name);
      this.dropName(b.parent, b.name);
      this.dirChanged(a.parent);
      this.dirChanged(b.parent);
    }
  }

  async link(existing: string, path: string): Promise<void> {
    this.alive('link');
    const src = await this.resolve(existing, 'link', false);
    const { parent, name } = await this.parentOf(path, 'link');
    try {
      this.remember(await this.meta.link(src.ino, parent, name));
      this.dirChanged(parent);
    } catch (err) {
      throw toFsError(err, 'link', existing);
    }
  }

  async symlink(target: string, path: string): Promise<void> {
    return this.symlinkInternal(target, path);
  }

  /** symlink(2); the link belongs to `owner` if given (FUSE). */
  async symlinkInternal(target: string, path: string, owner?: Owner): Promise<void> {
    this.alive('symlink');
    const { parent, name, dir } = await this.parentOf(path, 'symlink');
    try {
      const who = this.ownerIn(dir, owner, false);
      this.remember(await this.meta.symlink(parent, name, target, who.uid, who.gid));
      this.dirChanged(parent);
    } catch (err) {
      throw toFsError(err, 'symlink', path);
    }
  }

  async readlink(path: string): Promise<string> {
    this.alive('readlink');
    const r = await this.resolve(path, 'readlink', false);
    if ((r.inode.mode & S_IFMT) !== S_IFLNK) throw posix('EINVAL', 'readlink', path);
    return Buffer.from(r.inode.target ?? new Uint8Array(0)).toString();
  }

  // ---------------------------------------------------------------- xattrs

  async setxattr(path: string, name: string, value: Buffer | Uint8Array | string, flags = 0): Promise<void> {
    this.alive('setxattr');
    const r = await this.resolve(path, 'setxattr', false);
    try {
      const inode = await this.meta.setxattr(r.ino, name, typeof value === 'string' ? Buffer.from(value) : value, flags);
      if (inode) this.remember(inode);
      else this.forget(r.ino);
    } catch (err) {
      throw toFsError(err, 'setxattr', path);
    }
  }

  async getxattr(path: string, name: string): Promise<Buffer> {
    this.alive('getxattr');
    const r = await this.resolve(path, 'getxattr', false);
    // The inode counts its xattrs: none, no round trip. (The kernel asks for security.capability
    // before every write through FUSE: this keeps a metadata read off each one.) The count is as
    // fresh as the attributes: the open file's, or the attribute cache's.
    if ((this.files.get(r.ino)?.inode ?? r.inode).xattrs === 0) throw posix('ENODATA', 'getxattr', path);
    try {
      return await this.meta.getxattr(r.ino, name);
    } catch (err) {
      throw toFsError(err, 'getxattr', path);
    }
  }

  async listxattr(path: string): Promise<string[]> {
    this.alive('listxattr');
    const r = await this.resolve(path, 'listxattr', false);
    if ((this.files.get(r.ino)?.inode ?? r.inode).xattrs === 0) return [];
    try {
      return await this.meta.listxattr(r.ino);
    } catch (err) {
      throw toFsError(err, 'listxattr', path);
    }
  }

  async removexattr(path: string, name: string): Promise<void> {
    this.alive('removexattr');
    const r = await this.resolve(path, 'removexattr', false);
    try {
      const inode = await this.meta.removexattr(r.ino, name);
      if (inode) this.remember(inode);
      else this.forget(r.ino);
    } catch (err) {
      throw toFsError(err, 'removexattr', path);
    }
  }

  // ---------------------------------------------------------------- atime

  /** relatime state per open inode: the times at this client's last atime update, or one in flight. */
  private readonly atimes = new WeakMap<OpenInode, { mtime: string; ctime: string; atMs: number } | 'pending'>();

  /**
   * @internal After a read: relatime, Linux's default. The access time is updated when it is
   * not newer than the modification or change time, or is a day old; in the background, at
   * most once per open inode until the file changes or another day passes (not once per
   * read), and without touching ctime (SETATTR_ATIME_ONLY). A failure costs only the atime.
   */
  accessed(f: OpenInode): void {
    const i = f.inode;
    const st = this.atimes.get(f);
    if (st === 'pending' || this.closed) return;
    const now = this.now();
    const a = i.atime ?? { sec: 0, nsec: 0 };
    const atMs = (a.sec ?? 0) * 1000 + (a.nsec ?? 0) / 1e6;
    const due = cmpTime(a, i.mtime) <= 0 || cmpTime(a, i.ctime) <= 0 || now - atMs >= RELATIME_MS;
    if (!due) return;
    const mtime = timeKey(i.mtime);
    const ctime = timeKey(i.ctime);
    if (st && st.mtime === mtime && st.ctime === ctime && now - st.atMs < RELATIME_MS) return;
    this.atimes.set(f, 'pending');
    const sec = Math.floor(now / 1000);
    this.meta
      .setattr(f.ino, { valid: SETATTR_ATIME | SETATTR_ATIME_ONLY, atime: { sec, nsec: Math.round((now - sec * 1000) * 1e6) } }, i.generation)
      .then((r) => {
        // Only the atime is taken from the answer: the open inode may have newer extents by now.
        if (f.inode.ino === r.ino) f.inode.atime = r.atime;
        const c = this.attrs.get(r.ino);
        if (c) c.v.atime = r.atime;
      })
      .catch((err: unknown) => this.log.debug({ err, ino: f.ino }, 'fs: atime update failed'))
      .finally(() => this.atimes.set(f, { mtime, ctime, atMs: now }));
  }

  // ---------------------------------------------------------------- volume

  /** statfs(2)-shaped totals: used bytes and inodes from the partitions; the size is the volume's capacity quota (nominal without one). */
  /** The data cache's counters (undefined when readCacheBytes is 0). */
  get dataCacheStats(): ExtentCacheStats | undefined {
    return this.data.blockCache?.stats;
  }

  async statfs(): Promise<{ type: number; bsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number }> {
    this.alive('statfs');
    let s;
    try {
      s = await this.meta.statfs();
    } catch (err) {
      throw toFsError(err, 'statfs');
    }
    // FUSE bindings pass these as 32-bit numbers: a capacity past 16 TiB takes larger blocks.
    // Without a quota the size is a nominal 16 TiB, and inodes a nominal 2^32-1.
    const capacity = s.capacity > 0 ? s.capacity : this.capacityAtOpen;
    let bsize = 4096;
    while (capacity / bsize > 0xffffffff) bsize *= 2;
    const blocks = capacity > 0 ? Math.floor(capacity / bsize) : 0xffffffff;
    const used = Math.ceil(s.bytes / bsize);
    const files = 0xffffffff;
    return { type: 0x65735546, bsize, blocks, bfree: Math.max(0, blocks - used), bavail: Math.max(0, blocks - used), files, ffree: Math.max(0, files - s.inodes) };
  }

  /** Flushes every open file (SIGTERM of a mount, before unmounting). */
  async flushAll(): Promise<void> {
    const errs: unknown[] = [];
    await Promise.all([...this.files.values()].map((f) => f.flush().catch((e: unknown) => errs.push(e))));
    if (errs.length > 0) throw toFsError(errs[0], 'fsync');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flushAll().catch((err: unknown) => this.log.error({ err }, 'fs: flush at close failed'));
    this.closed = true;
    for (const f of this.files.values()) this.meta.unhold(f.ino);
    this.files.clear();
    for (const c of this.owned) await c.close();
  }
}
