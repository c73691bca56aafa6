// What the FUSE adapter needs from a filesystem: path-based operations that return promises and
// fail with Node-style errors (`err.code === 'ENOENT'`). lib/fs's Volume provides them for a
// ContainerFS volume; PassthroughVolume provides them over a local directory (to measure the
// adapter on its own, beside bindfs).
import type { Logger } from '../lib/common/index.js';

export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino?: number;
  rdev?: number;
  blksize?: number;
  blocks?: number;
  atime: Date;
  mtime: Date;
  ctime: Date;
  /**
   * The same times as float ms since the epoch with their sub-ms fraction (as node:fs Stats
   * has them: ~µs precise), when the volume knows them that precisely. The kernel engine sends
   * them (the protocol carries ns); fuse-native takes whole ms.
   */
  atimeMs?: number;
  mtimeMs?: number;
  ctimeMs?: number;
}

/** A time utimens sets: a Date, the filesystem's clock ('now'), or none (unchanged). */
export type FuseTime = Date | 'now' | undefined;

export interface FuseStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

/**
 * The process that made a request (fuse_get_context()), when the binding can tell it: the
 * corrected binding does (binding.ts), fuse-native's prebuilt one does not (then: undefined).
 */
export interface FuseCaller {
  uid: number;
  gid: number;
  pid: number;
  /** The caller's umask (already applied by the kernel to the modes it sends). */
  umask: number;
}

export interface FuseVolume {
  getattr(path: string): Promise<FuseStat>;
  fgetattr?(path: string, fh: number): Promise<FuseStat>;
  readdir(path: string): Promise<string[]>;
  access?(path: string, mode: number): Promise<void>;
  statfs(path: string): Promise<FuseStatfs>;
  /** Returns a file handle number; flags as open(2). */
  open(path: string, flags: number): Promise<number>;
  /** `caller`, when known, owns what create, mkdir, symlink and mknod make. */
  create(path: string, mode: number, caller?: FuseCaller): Promise<number>;
  read(path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number>;
  write(path: string, fh: number, buf: Buffer, length: number, position: number): Promise<number>;
  flush(path: string, fh: number): Promise<void>;
  fsync(path: string, fh: number, dataOnly: boolean): Promise<void>;
  release(path: string, fh: number): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  ftruncate(path: string, fh: number, size: number): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  mkdir(path: string, mode: number, caller?: FuseCaller): Promise<void>;
  rmdir(path: string): Promise<void>;
  link(target: string, path: string): Promise<void>;
  symlink(target: string, path: string, caller?: FuseCaller): Promise<void>;
  readlink(path: string): Promise<string>;
  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** Each time: a Date, 'now' (UTIME_NOW: the filesystem's clock), or undefined (UTIME_OMIT: unchanged). */
  utimens(path: string, atime: FuseTime, mtime: FuseTime): Promise<void>;
  mknod(path: string, mode: number, dev: number, caller?: FuseCaller): Promise<void>;
  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  /** Undefined when the attribute does not exist. */
  getxattr(path: string, name: string): Promise<Buffer | undefined>;
  listxattr(path: string): Promise<string[]>;
  removexattr(path: string, name: string): Promise<void>;
  /** Called once after unmount. */
  destroy?(): Promise<void>;
}

export interface MountOptions {
  /** Let other users see the mount (needs user_allow_other in /etc/fuse.conf for non-root). */
  allowOther?: boolean;
  /** Kernel permission checks against the modes getattr reports (recommended: true). */
  defaultPermissions?: boolean;
  /** Seconds the kernel may cache attributes and names (0: ask every time; close-to-open needs low values). */
  attrTimeoutS?: number;
  entryTimeoutS?: number;
  /** Seconds the kernel may cache directories' attributes (kernel engine; default attrTimeoutS). */
  dirAttrTimeoutS?: number;
  /** Largest write the kernel sends in one request. */
  maxWriteBytes?: number;
  fsname?: string;
  /** ms before an unanswered operation fails with EIO in fuse-native. */
  opTimeoutMs?: number;
  logger?: Logger;
  debug?: boolean;
  /**
   * Which FUSE engine serves the mount: 'kernel' speaks the /dev/fuse protocol from Node
   * (fuse/kernel: needs root), 'libfuse' goes through fuse-native, 'auto' (default) is kernel
   * when it can mount and fuse-native otherwise.
   */
  engine?: FuseEngine;
  /** Kernel engine: how /dev/fuse is read (fuse/kernel/transport.ts; 'auto': poll when the addon builds, else threadpool). */
  reader?: 'poll' | 'threads' | 'threadpool' | 'auto';
  /** Kernel engine: let the kernel cache writes (FUSE_WRITEBACK_CACHE). Off: close-to-open needs each close to carry the data. */
  writebackCache?: boolean;
  /** Kernel engine: requests served at once (also max_background). */
  maxInFlight?: number;
  /**
   * Kernel engine: the kernel's read-ahead for the mount in KiB (sysfs read_ahead_kb; needs
   * root). Default 1024: sequential READs of up to 1 MiB instead of the kernel's 128 KiB.
   * 0 leaves the kernel default.
   */
  readAheadKb?: number;
}

export type FuseEngine = 'kernel' | 'libfuse' | 'auto';

export interface MountHandle {
  readonly mountpoint: string;
  /** The engine that serves it. */
  readonly engine: 'kernel' | 'libfuse';
  unmount(): Promise<void>;
  /** Kernel engine: resolves when the session ended (unmounted, also from outside). */
  readonly ended?: Promise<void>;
  /** Kernel engine: requests answered per operation since the mount, errors, mean ms. */
  opStats?(): Record<string, { count: number; errors: number; meanMs: number }>;
}

