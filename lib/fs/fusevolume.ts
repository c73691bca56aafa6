// VolumeFuse: the FUSE bridge. fuse/ calls path-based operations with kernel file handles; this
// maps them onto a Volume: handles become VolumeFileHandles in a bounded table, and the modes
// the kernel sends already carry the caller's umask (so the Volume's umask is not applied).
// What a caller creates (file, directory, symlink, node) belongs to the caller's uid/gid when
// the binding tells them (fuse/binding.ts), else to the Volume's uid/gid (the mounting user).
import { constants as fsc } from 'node:fs';
import type { FuseCaller, FuseStat, FuseStatfs, FuseTime, FuseVolume } from '../../fuse/types.js';
import { posix, toFsError } from './errors.js';
import type { Owner, Volume, VolumeFileHandle, VolumeStats } from './volume.js';

function toFuse(s: VolumeStats): FuseStat {
  return {
    mode: s.mode, uid: s.uid, gid: s.gid, size: s.size, nlink: s.nlink, ino: s.ino, rdev: s.rdev,
    blksize: s.blksize, blocks: s.blocks, atime: s.atime, mtime: s.mtime, ctime: s.ctime,
    // Sub-ms times for the kernel engine (a double holds ms with ~µs precision at today's dates).
    atimeMs: Number(s.atimeNs) / 1e6, mtimeMs: Number(s.mtimeNs) / 1e6, ctimeMs: Number(s.ctimeNs) / 1e6,
  };
}

function ownerOf(caller: FuseCaller | undefined): Owner | undefined {
  return caller ? { uid: caller.uid, gid: caller.gid } : undefined;
}

export interface VolumeFuseOptions {
  /** Open handles at once; past it open() answers EMFILE. */
  maxHandles?: number;
}

export class VolumeFuse implements FuseVolume {
  private readonly handles = new Map<number, VolumeFileHandle>(); // invariant: size <= maxHandles
  /** Open handles by the path they were opened at (see getattr). invariant: size <= maxHandles */
  private readonly byPath = new Map<string, VolumeFileHandle[]>();
  private nextFh = 1;
  private readonly maxHandles: number;

  constructor(
    readonly vol: Volume,
    opts: VolumeFuseOptions = {},
  ) {
    this.maxHandles = opts.maxHandles ?? 65_536;
  }

  private keep(h: VolumeFileHandle): number {
    if (this.handles.size >= this.maxHandles) {
      void h.close();
      throw posix('EMFILE', 'open');
    }
    // fuse-native passes handles as 32-bit numbers: wrap and skip any still in use.
    for (let i = 0; i < this.maxHandles + 1; i++) {
      const fh = this.nextFh;
      this.nextFh = this.nextFh >= 0x7fffffff ? 1 : this.nextFh + 1;
      if (!this.handles.has(fh)) {
        this.handles.set(fh, h);
        const l = this.byPath.get(h.path);
        if (l) l.push(h);
        else this.byPath.set(h.path, [h]);
        return fh;
      }
    }
    throw posix('EMFILE', 'open');
  }

  private fh(fh: number): VolumeFileHandle {
    const h = this.handles.get(fh);
    if (!h) throw posix('EBADF', 'fh');
    return h;
  }

  async getattr(path: string): Promise<FuseStat> {
    try {
      return toFuse(await this.vol.lstat(path));
    } catch (err) {
      // fstat(2) reaches a path-based FUSE filesystem as getattr of the path the file was opened
      // at (the kernel sends no handle). Another client may have unlinked that name meanwhile:
      // while this mount holds the file open, the path answers the open file (as an NFS client
      // keeps a silly-renamed name), so fstat works until the last close. New opens still fail.
      const h = (err as { code?: string }).code === 'ENOENT' ? this.byPath.get(path)?.[0] : undefined;
      if (h) return toFuse(await h.stat());
      throw err;
    }
  }
  async fgetattr(path: string, fh: number): Promise<FuseStat> {
    const h = this.handles.get(fh);
    return toFuse(h ? await h.stat() : await this.vol.lstat(path));
  }
  async readdir(path: string): Promise<string[]> {
    return this.vol.readdir(path);
  }
  async access(path: string): Promise<void> {
    // default_permissions: the kernel checked the mode bits; existence is all that is left.
    await this.vol.lstat(path);
  }
  async statfs(): Promise<FuseStatfs> {
    const s = await this.vol.statfs();
    return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255 };
  }
  async open(path: string, flags: number): Promise<number> {
    // The kernel handles O_CREAT/O_EXCL through create(); O_TRUNC arrives here (atomic_o_trunc off: as truncate()).
    return this.keep(await this.vol.openInternal(path, flags & ~(fsc.O_CREAT | fsc.O_EXCL), 0));
  }
  async create(path: string, mode: number, caller?: FuseCaller): Promise<number> {
    return this.keep(await this.vol.openInternal(path, fsc.O_CREAT | fsc.O_EXCL | fsc.O_RDWR, mode & 0o7777, ownerOf(caller)));
  }
  async read(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return (await this.fh(fh).read(buf, 0, length, position)).bytesRead;
  }
  async write(_path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.fh(fh);
    // The kernel sends the file offset (already the end for O_APPEND): write exactly there.
    return h.file.write(buf.subarray(0, length), position).catch((err: unknown) => {
      throw toFsError(err, 'write', h.path);
    });
  }
  async flush(_path: string, fh: number): Promise<void> {
    // close(2) of one descriptor: commit, so another client that opens next sees the data.
    const h = this.handles.get(fh);
    if (h) await h.sync();
  }
  async fsync(_path: string, fh: number): Promise<void> {
    await this.fh(fh).sync();
  }
  async release(_path: string, fh: number): Promise<void> {
    const h = this.handles.get(fh);
    this.handles.delete(fh);
    if (h) this.unindex(h);
    await h?.close();
  }

  private unindex(h: VolumeFileHandle): void {
    const l = this.byPath.get(h.path);
    if (!l) return;
    const i = l.indexOf(h);
    if (i >= 0) l.splice(i, 1);
    if (l.length === 0) this.byPath.delete(h.path);
  }
  async truncate(path: string, size: number): Promise<void> {
    await this.vol.truncate(path, size);
  }
  async ftruncate(path: string, fh: number, size: number): Promise<void> {
    const h = this.handles.get(fh);
    if (h) await this.vol.truncateOpen(h.file, size, path);
    else await this.vol.truncate(path, size);
  }
  async unlink(path: string): Promise<void> {
    await this.vol.unlink(path);
  }
  async rename(from: string, to: string): Promise<void> {
    await this.vol.rename(from, to);
  }
  async mkdir(path: string, mode: number, caller?: FuseCaller): Promise<void> {
    await this.vol.mkdirInternal(path, mode & 0o7777, false, ownerOf(caller));
  }
  async rmdir(path: string): Promise<void> {
    await this.vol.rmdir(path);
  }
  // A hard link makes no inode: the owner stays the file's (the kernel checked the caller may link it).
  async link(target: string, path: string): Promise<void> {
    await this.vol.link(target, path);
  }
  async symlink(target: string, path: string, caller?: FuseCaller): Promise<void> {
    await this.vol.symlinkInternal(target, path, ownerOf(caller));
  }
  async readlink(path: string): Promise<string> {
    return this.vol.readlink(path);
  }
  async chmod(path: string, mode: number): Promise<void> {
    await this.vol.lchmod(path, mode);
  }
  async chown(path: string, uid: number, gid: number): Promise<void> {
    // Who may chown is the kernel's check (default_permissions: CAP_CHOWN for another uid; the
    // owner for a group of its own). -1 (as unsigned) means "leave unchanged".
    await this.vol.lchown(path, uid === 0xffffffff ? -1 : uid, gid === 0xffffffff ? -1 : gid);
  }
  async utimens(path: string, atime: FuseTime, mtime: FuseTime): Promise<void> {
    await this.vol.setTimes(path, atime, mtime, false);
  }
  async mknod(path: string, mode: number, dev: number, caller?: FuseCaller): Promise<void> {
    await this.vol.mknod(path, mode, dev, ownerOf(caller));
  }
  async setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    await this.vol.setxattr(path, name, value, flags);
  }
  async getxattr(path: string, name: string): Promise<Buffer | undefined> {
    return this.vol.getxattr(path, name);
  }
  async listxattr(path: string): Promise<string[]> {
    return this.vol.listxattr(path);
  }
  async removexattr(path: string, name: string): Promise<void> {
    await this.vol.removexattr(path, name);
  }
  async destroy(): Promise<void> {
    for (const h of this.handles.values()) await h.close().catch(() => undefined);
    this.handles.clear();
    this.byPath.clear();
  }
}
