// PassthroughVolume: a FuseVolume over a local directory (what bindfs does, in TypeScript).
// It isolates the cost and correctness of the adapter from ContainerFS itself: the bench
// compares it with bindfs, and the differential test runs the same operations through it.
import { promises as fsp, constants as fsc, type Stats } from 'node:fs';
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

export class PassthroughVolume implements FuseVolume {
  private readonly handles = new Map<number, fsp.FileHandle>();
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

  private fh(fh: number): fsp.FileHandle {
    const h = this.handles.get(fh);
    if (!h) throw errnoError('EBADF');
    return h;
  }

  private keep(h: fsp.FileHandle): number {
    if (this.handles.size >= this.maxOpen) {
      void h.close();
      throw errnoError('EMFILE');
    }
    const id = this.nextFh++;
    this.handles.set(id, h);
    return id;
  }

  async getattr(path: string): Promise<FuseStat> {
    return toStat(await fsp.lstat(this.p(path)));
  }
  async fgetattr(_path: string, fh: number): Promise<FuseStat> {
    return toStat(await this.fh(fh).stat());
  }
  async readdir(path: string): Promise<string[]> {
    return fsp.readdir(this.p(path));
  }
  async access(path: string, mode: number): Promise<void> {
    await fsp.access(this.p(path), mode);
  }
  async statfs(path: string): Promise<FuseStatfs> {
    const s = await fsp.statfs(this.p(path));
    return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255 };
  }
  async open(path: string, flags: number): Promise<number> {
    return this.keep(await fsp.open(this.p(path), flags & ~fsc.O_CREAT));
  }
  async create(path: string, mode: number): Promise<number> {
    return this.keep(await fsp.open(this.p(path), fsc.O_CREAT | fsc.O_RDWR | fsc.O_EXCL, mode));
  }
  async read(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return (await this.fh(fh).read(buf, 0, length, position)).bytesRead;
  }
  async write(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return (await this.fh(fh).write(buf, 0, length, position)).bytesWritten;
  }
  async flush(): Promise<void> {}
  async fsync(_path: string, fh: number, dataOnly: boolean): Promise<void> {
    const h = this.fh(fh);
    await (dataOnly ? h.datasync() : h.sync());
  }
  async release(_path: string, fh: number): Promise<void> {
    const h = this.handles.get(fh);
    this.handles.delete(fh);
    await h?.close();
  }
  async truncate(path: string, size: number): Promise<void> {
    await fsp.truncate(this.p(path), size);
  }
  async ftruncate(_path: string, fh: number, size: number): Promise<void> {
    await this.fh(fh).truncate(size);
  }
  async unlink(path: string): Promise<void> {
    await fsp.unlink(this.p(path));
  }
  async rename(from: string, to: string): Promise<void> {
    await fsp.rename(this.p(from), this.p(to));
  }
  async mkdir(path: string, mode: number): Promise<void> {
    await fsp.mkdir(this.p(path), { mode });
  }
  async rmdir(path: string): Promise<void> {
    await fsp.rmdir(this.p(path));
  }
  async link(target: string, path: string): Promise<void> {
    await fsp.link(this.p(target), this.p(path));
  }
  async symlink(target: string, path: string): Promise<void> {
    await fsp.symlink(target, this.p(path));
  }
  async readlink(path: string): Promise<string> {
    return fsp.readlink(this.p(path));
  }
  async chmod(path: string, mode: number): Promise<void> {
    await fsp.chmod(this.p(path), mode);
  }
  async chown(path: string, uid: number, gid: number): Promise<void> {
    await fsp.lchown(this.p(path), uid, gid);
  }
  async utimens(path: string, atime: FuseTime, mtime: FuseTime): Promise<void> {
    // node:fs has no UTIME_OMIT: an omitted time is set to its current value.
    const cur = atime === undefined || mtime === undefined ? await fsp.lstat(this.p(path)) : undefined;
    const pick = (t: FuseTime, old: Date | undefined): Date => (t === 'now' ? new Date() : t ?? (old as Date));
    await fsp.lutimes(this.p(path), pick(atime, cur?.atime), pick(mtime, cur?.mtime));
  }
  async mknod(path: string, mode: number): Promise<void> {
    // Node has no mknod(2): regular files only (FIFOs and devices answer EPERM).
    if ((mode & fsc.S_IFMT) !== fsc.S_IFREG && (mode & fsc.S_IFMT) !== 0) throw errnoError('EPERM');
    const h = await fsp.open(this.p(path), fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, mode & 0o7777);
    await h.close();
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
    for (const h of this.handles.values()) await h.close().catch(() => undefined);
    this.handles.clear();
  }
}
