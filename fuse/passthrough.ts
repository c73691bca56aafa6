// PassthroughVolume: a FuseVolume over a local directory (what bindfs does, in TypeScript).
// It isolates the cost and correctness of the FUSE engines from ContainerFS itself: the bench
// compares it with bindfs, and the differential test runs the same operations through it.
// Metadata calls on a local directory take microseconds, less than a hop to libuv's threadpool
// and back (two thread wake-ups), so they run synchronously, as bindfs's own calls do; so do
// reads and writes of at most SYNC_IO_BYTES (a page-cache copy of that size is also cheaper
// than the hop). Larger reads and writes, and fsync, which can take long, stay asynchronous so
// that requests overlap.
import * as fs from 'node:fs';
import { promises as fsp, constants as fsc, type Stats } from 'node:fs';
import { promisify } from 'node:util';
import { join, normalize } from 'node:path';
import type { FuseStat, FuseStatfs, FuseTime, FuseVolume } from './types.js';

function errnoError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

function toStat(s: Stats): FuseStat {
  return {
    mode: s.mode, uid: s.uid, gid: s.gid, size: s.size, nlink: s.nlink, ino: s.ino, rdev: s.rdev,
    blksize: s.blksize, blocks: s.blocks, atime: s.atime, mtime: s.mtime, ctime: s.ctime,
    atimeMs: s.atimeMs, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs,
  };
}

const readAsync = promisify(fs.read);
const writeAsync = promisify(fs.write);
const fsyncAsync = promisify(fs.fsync);
const fdatasyncAsync = promisify(fs.fdatasync);

/** A sync call as a promise (a thrown Node error becomes the rejection). */
function now<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e);
  }
}

const SYNC_IO_BYTES = 128 * 1024;

export class PassthroughVolume implements FuseVolume {
  private readonly handles = new Map<number, number>(); // our fh -> OS fd
  private nextFh = 1;
  /** Open files at once; past it open() fails with EMFILE like a process past its limit. */
  private readonly maxOpen: number;

  constructor(
    private readonly root: string,
    opts: { maxOpen?: number } = {},
  ) {
    this.maxOpen = opts.maxOpen ?? 4096;
  }

  private p(path: string): string {
    const n = normalize(path);
    if (n.split('/').includes('..')) throw errnoError('EACCES');
    return join(this.root, n);
  }

  private fh(fh: number): number {
    const h = this.handles.get(fh);
    if (h === undefined) throw errnoError('EBADF');
    return h;
  }

  private keep(h: number): number {
    if (this.handles.size >= this.maxOpen) {
      fs.closeSync(h);
      throw errnoError('EMFILE');
    }
    const id = this.nextFh++;
    this.handles.set(id, h);
    return id;
  }

  getattr(path: string): Promise<FuseStat> {
    return now(() => toStat(fs.lstatSync(this.p(path))));
  }
  fgetattr(_path: string, fh: number): Promise<FuseStat> {
    return now(() => toStat(fs.fstatSync(this.fh(fh))));
  }
  readdir(path: string): Promise<string[]> {
    return now(() => fs.readdirSync(this.p(path)));
  }
  access(path: string, mode: number): Promise<void> {
    return now(() => fs.accessSync(this.p(path), mode));
  }
  async statfs(path: string): Promise<FuseStatfs> {
    const s = await fsp.statfs(this.p(path));
    return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255 };
  }
  open(path: string, flags: number): Promise<number> {
    return now(() => this.keep(fs.openSync(this.p(path), flags & ~fsc.O_CREAT)));
  }
  create(path: string, mode: number): Promise<number> {
    return now(() => this.keep(fs.openSync(this.p(path), fsc.O_CREAT | fsc.O_RDWR | fsc.O_EXCL, mode)));
  }
  async read(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    if (length <= SYNC_IO_BYTES) return fs.readSync(this.fh(fh), buf, 0, length, position);
    return (await readAsync(this.fh(fh), buf, 0, length, position)).bytesRead;
  }
  async write(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    if (length <= SYNC_IO_BYTES) return fs.writeSync(this.fh(fh), buf, 0, length, position);
    return (await writeAsync(this.fh(fh), buf, 0, length, position)).bytesWritten;
  }
  async flush(): Promise<void> {}
  async fsync(_path: string, fh: number, dataOnly: boolean): Promise<void> {
    const h = this.fh(fh);
    await (dataOnly ? fdatasyncAsync(h) : fsyncAsync(h));
  }
  release(_path: string, fh: number): Promise<void> {
    const h = this.handles.get(fh);
    this.handles.delete(fh);
    return now(() => (h === undefined ? undefined : fs.closeSync(h)));
  }
  truncate(path: string, size: number): Promise<void> {
    return now(() => fs.truncateSync(this.p(path), size));
  }
  ftruncate(_path: string, fh: number, size: number): Promise<void> {
    return now(() => fs.ftruncateSync(this.fh(fh), size));
  }
  unlink(path: string): Promise<void> {
    return now(() => fs.unlinkSync(this.p(path)));
  }
  rename(from: string, to: string): Promise<void> {
    return now(() => fs.renameSync(this.p(from), this.p(to)));
  }
  mkdir(path: string, mode: number): Promise<void> {
    return now(() => void fs.mkdirSync(this.p(path), { mode }));
  }
  rmdir(path: string): Promise<void> {
    return now(() => fs.rmdirSync(this.p(path)));
  }
  link(target: string, path: string): Promise<void> {
    return now(() => fs.linkSync(this.p(target), this.p(path)));
  }
  symlink(target: string, path: string): Promise<void> {
    return now(() => fs.symlinkSync(target, this.p(path)));
  }
  readlink(path: string): Promise<string> {
    return now(() => fs.readlinkSync(this.p(path)));
  }
  chmod(path: string, mode: number): Promise<void> {
    return now(() => fs.chmodSync(this.p(path), mode));
  }
  chown(path: string, uid: number, gid: number): Promise<void> {
    return now(() => fs.lchownSync(this.p(path), uid, gid));
  }
  async utimens(path: string, atime: FuseTime, mtime: FuseTime): Promise<void> {
    // node:fs has no UTIME_OMIT: an omitted time is set to its current value.
    // Old times as float ms (their sub-ms part kept): an omitted time stays as it was.
    const cur = atime === undefined || mtime === undefined ? fs.lstatSync(this.p(path)) : undefined;
    const pick = (t: FuseTime, old: number | undefined): number | Date => (t === 'now' ? new Date() : t ?? (old as number) / 1000);
    fs.lutimesSync(this.p(path), pick(atime, cur?.atimeMs), pick(mtime, cur?.mtimeMs));
  }
  async mknod(path: string, mode: number): Promise<void> {
    // Node has no mknod(2): regular files only (FIFOs and devices answer EPERM).
    if ((mode & fsc.S_IFMT) !== fsc.S_IFREG && (mode & fsc.S_IFMT) !== 0) throw errnoError('EPERM');
    fs.closeSync(fs.openSync(this.p(path), fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, mode & 0o7777));
  }
  // Node has no xattr calls: the passthrough reports them unsupported.
  async setxattr(): Promise<void> {
    throw errnoError('ENOTSUP');
  }
  async getxattr(): Promise<Buffer | undefined> {
    throw errnoError('ENOTSUP');
  }
  async listxattr(): Promise<string[]> {
    return [];
  }
  async removexattr(): Promise<void> {
    throw errnoError('ENOTSUP');
  }
  async destroy(): Promise<void> {
    for (const h of this.handles.values()) {
      try {
        fs.closeSync(h);
      } catch {
        // already closed
      }
    }
    this.handles.clear();
  }
}
