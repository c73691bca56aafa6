// The FUSE adapter: fuse-native operations mapped onto a FuseVolume. Errors become negative
// errnos; anything that is not a Node-style error becomes EIO and is logged (a filesystem
// must answer every request, or the kernel blocks the caller).
//
// Limits of fuse-native, worked around or stated here:
// - It exposes no caller context (uid/gid of the process making the request). The corrected
//   binding (binding.ts) does: create, mkdir, symlink and mknod pass the caller on, so what a
//   process makes is its own. With the prebuilt binding the caller is undefined and new files
//   are owned by the mounting user. Either way `default_permissions` makes the kernel enforce
//   modes (and who may chown) on every access.
// - It has no option for big_writes/max_write; they are appended through the fsname option
//   (libfuse splits the -o string on commas), else libfuse 2 caps writes at 4 KiB.
// - Timestamps cross it in milliseconds. Its prebuilt binding drops utimens' mtime (binding.ts
//   builds a corrected one; load.ts says which is in use).
import { silentLogger } from '../lib/common/index.js';
import { fuseCallerReader, FuseUnavailableError, type FuseNative, type FuseInstance } from './load.js';
import { mountKernel } from './kernel/index.js';
import { kernelMountSupport } from './kernel/mount.js';
import type { FuseCaller, FuseEngine, FuseStat, FuseTime, FuseVolume, MountHandle, MountOptions } from './types.js';

export type { MountHandle, MountOptions };
import { FUSE_UTIME_NOW_MS, FUSE_UTIME_OMIT_MS } from './binding.js';
import { toErrno } from './errno.js';

export { toErrno };

/** A utimens time as fuse-native passes it (ms; the corrected binding's sentinels for UTIME_NOW/UTIME_OMIT). */
export function fuseTime(ms: number): FuseTime {
  if (ms === FUSE_UTIME_NOW_MS) return 'now';
  if (ms === FUSE_UTIME_OMIT_MS) return undefined;
  return new Date(ms);
}

/**
 * The engine `engine` resolves to on this machine: 'auto' is the kernel engine when this
 * process can mount /dev/fuse itself (root, Linux, mount(8)); `reason` says why not.
 */
export function resolveEngine(engine: FuseEngine = 'auto'): { engine: 'kernel' | 'libfuse'; reason?: string } {
  if (engine === 'libfuse') return { engine };
  const s = kernelMountSupport();
  if (s.ok) return { engine: 'kernel' };
  if (engine === 'kernel') throw new FuseUnavailableError(`the kernel engine cannot mount here: ${s.reason}`);
  return { engine: 'libfuse', reason: s.reason };
}

/**
 * Mounts `vol` at `mountpoint` with the engine `opts.engine` picks (default 'auto'). `Fuse`
 * (loadFuse()'s fuse-native) is needed only when that is fuse-native.
 */
export function mountVolume(Fuse: FuseNative | undefined, vol: FuseVolume, mountpoint: string, opts: MountOptions = {}): Promise<MountHandle> {
  const engine = resolveEngine(opts.engine).engine;
  if (engine === 'kernel') return mountKernel(vol, mountpoint, opts);
  if (!Fuse) return Promise.reject(new FuseUnavailableError('the libfuse engine needs fuse-native (loadFuse())'));
  return mountLibfuse(Fuse, vol, mountpoint, opts);
}

function mountLibfuse(Fuse: FuseNative, vol: FuseVolume, mountpoint: string, opts: MountOptions): Promise<MountHandle> {
  const log = opts.logger ?? silentLogger;
  const fail = (op: string, cb: (code: number) => void) => (err: unknown): void => cb(toErrno(err, log, op));
  const ok0 = (cb: (code: number) => void) => (): void => cb(0);
  const stat = (s: FuseStat): FuseStat => s;
  // Read synchronously, as each handler starts: the binding publishes the caller only while its
  // dispatch into JS runs.
  const readCaller = fuseCallerReader(Fuse);
  const caller = (): FuseCaller | undefined => readCaller?.();
  const ops: Record<string, unknown> = {
    init: (cb: (code: number) => void) => cb(0),
    getattr: (p: string, cb: (code: number, st?: FuseStat) => void) => vol.getattr(p).then((s) => cb(0, stat(s)), fail('getattr', cb)),
    fgetattr: (p: string, fh: number, cb: (code: number, st?: FuseStat) => void) =>
      (vol.fgetattr ? vol.fgetattr(p, fh) : vol.getattr(p)).then((s) => cb(0, stat(s)), fail('fgetattr', cb)),
    access: (p: string, mode: number, cb: (code: number) => void) => (vol.access ? vol.access(p, mode) : vol.getattr(p).then(() => undefined)).then(ok0(cb), fail('access', cb)),
    statfs: (p: string, cb: (code: number, s?: unknown) => void) => vol.statfs(p).then((s) => cb(0, s), fail('statfs', cb)),
    readdir: (p: string, cb: (code: number, names?: string[]) => void) => vol.readdir(p).then((names) => cb(0, names), fail('readdir', cb)),
    open: (p: string, flags: number, cb: (code: number, fh?: number) => void) => vol.open(p, flags).then((fh) => cb(0, fh), fail('open', cb)),
    create: (p: string, mode: number, cb: (code: number, fh?: number) => void) => vol.create(p, mode, caller()).then((fh) => cb(0, fh), fail('create', cb)),
    read: (p: string, fh: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) => vol.read(p, fh, buf, len, pos).then((n) => cb(n), fail('read', cb)),
    write: (p: string, fh: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) => vol.write(p, fh, buf, len, pos).then((n) => cb(n), fail('write', cb)),
    flush: (p: string, fh: number, cb: (code: number) => void) => vol.flush(p, fh).then(ok0(cb), fail('flush', cb)),
    fsync: (p: string, datasync: number, fh: number, cb: (code: number) => void) => vol.fsync(p, fh, Boolean(datasync)).then(ok0(cb), fail('fsync', cb)),
    release: (p: string, fh: number, cb: (code: number) => void) => vol.release(p, fh).then(ok0(cb), fail('release', cb)),
    truncate: (p: string, size: number, cb: (code: number) => void) => vol.truncate(p, size).then(ok0(cb), fail('truncate', cb)),
    ftruncate: (p: string, fh: number, size: number, cb: (code: number) => void) => vol.ftruncate(p, fh, size).then(ok0(cb), fail('ftruncate', cb)),
    unlink: (p: string, cb: (code: number) => void) => vol.unlink(p).then(ok0(cb), fail('unlink', cb)),
    rename: (from: string, to: string, cb: (code: number) => void) => vol.rename(from, to).then(ok0(cb), fail('rename', cb)),
    mkdir: (p: string, mode: number, cb: (code: number) => void) => vol.mkdir(p, mode, caller()).then(ok0(cb), fail('mkdir', cb)),
    rmdir: (p: string, cb: (code: number) => void) => vol.rmdir(p).then(ok0(cb), fail('rmdir', cb)),
    // fuse-native passes (existing target, new path) for both link and symlink.
    link: (target: string, p: string, cb: (code: number) => void) => vol.link(target, p).then(ok0(cb), fail('link', cb)),
    symlink: (target: string, p: string, cb: (code: number) => void) => vol.symlink(target, p, caller()).then(ok0(cb), fail('symlink', cb)),
    readlink: (p: string, cb: (code: number, target?: string) => void) => vol.readlink(p).then((t) => cb(0, t), fail('readlink', cb)),
    chmod: (p: string, mode: number, cb: (code: number) => void) => vol.chmod(p, mode).then(ok0(cb), fail('chmod', cb)),
    chown: (p: string, uid: number, gid: number, cb: (code: number) => void) => vol.chown(p, uid, gid).then(ok0(cb), fail('chown', cb)),
    utimens: (p: string, atime: number, mtime: number, cb: (code: number) => void) => vol.utimens(p, fuseTime(atime), fuseTime(mtime)).then(ok0(cb), fail('utimens', cb)),
    mknod: (p: string, mode: number, dev: number, cb: (code: number) => void) => vol.mknod(p, mode, dev, caller()).then(ok0(cb), fail('mknod', cb)),
    setxattr: (p: string, name: string, value: Buffer, _pos: number, flags: number, cb: (code: number) => void) =>
      vol.setxattr(p, name, Buffer.from(value), flags).then(ok0(cb), fail('setxattr', cb)),
    getxattr: (p: string, name: string, _pos: number, cb: (code: number, v?: Buffer | null) => void) =>
      vol.getxattr(p, name).then((v) => cb(0, v ?? null), fail('getxattr', cb)),
    listxattr: (p: string, cb: (code: number, list?: string[]) => void) => vol.listxattr(p).then((l) => cb(0, l), fail('listxattr', cb)),
    removexattr: (p: string, name: string, cb: (code: number) => void) => vol.removexattr(p, name).then(ok0(cb), fail('removexattr', cb)),
  };
  // fuse-native drops a timeout of 0 (it tests the option for truthiness), and 0 is what
  // close-to-open consistency between mounts needs: pass the timeouts through the -o string.
  const attrS = opts.attrTimeoutS ?? 1;
  const entryS = opts.entryTimeoutS ?? 1;
  const extra = [`max_write=${opts.maxWriteBytes ?? 128 * 1024}`, 'big_writes', `attr_timeout=${attrS}`, `entry_timeout=${entryS}`, ...(entryS === 0 ? ['negative_timeout=0'] : [])];
  const fuse: FuseInstance = new Fuse(mountpoint, ops, {
    force: true,
    mkdir: true,
    debug: opts.debug ?? false,
    allowOther: opts.allowOther ?? false,
    defaultPermissions: opts.defaultPermissions ?? true,
    fsname: [(opts.fsname ?? 'containerfs').split(',')[0], ...extra].join(','),
    timeout: opts.opTimeoutMs ?? 30_000,
  });
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err) {
        reject(err);
        return;
      }
      let unmounted = false;
      resolve({
        mountpoint,
        engine: 'libfuse',
        unmount: () =>
          new Promise<void>((res, rej) => {
            if (unmounted) return res();
            fuse.unmount((e) => {
              if (e) return rej(e);
              unmounted = true;
              Promise.resolve(vol.destroy?.()).then(() => res(), rej);
            });
          }),
      });
    });
  });
}
