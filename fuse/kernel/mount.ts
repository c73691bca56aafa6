// Mounting /dev/fuse without libfuse. Node cannot call mount(2), so as root we open /dev/fuse
// ourselves and let mount(8) make the mount with that fd passed as its fd 3 (`-o fd=3,...`: the
// kernel takes the fd from the process calling mount(2)); `-i` keeps mount(8) from looking for
// a mount.fuse helper. As another user, the setuid fusermount mounts and hands the fd back over
// a unix socket (_FUSE_COMMFD, SCM_RIGHTS), which takes the native addon
// (fuse/native/fusereader.c): without it `auto` falls back to fuse-native. Either way the
// mount belongs to our open fd: when this process dies, the fd closes, the connection aborts,
// and what stays is a dead mount (ENOTCONN) that `fusermount -u` or `umount` (`containerfs
// umount`) clears.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants as fsc, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { defineError } from '../../lib/common/index.js';
import { loadNativeReader } from './transport.js';

export class KernelMountError extends defineError('fuse', 'FUSE_KERNEL_MOUNT') {}

export interface KernelMountOptions {
  /** The mount's source column (df, /proc/mounts). */
  fsname: string;
  /** Filesystem type is `fuse.<subtype>`. */
  subtype: string;
  allowOther: boolean;
  defaultPermissions: boolean;
  /** Create the mountpoint if missing. */
  mkdir?: boolean;
}

/** Whether this process can mount with the kernel engine, or why not. */
export function kernelMountSupport(): { ok: true } | { ok: false; reason: string } {
  if (process.platform !== 'linux') return { ok: false, reason: `not Linux (${process.platform})` };
  if (!existsSync('/dev/fuse')) return { ok: false, reason: '/dev/fuse does not exist (modprobe fuse; in a container: --device /dev/fuse --cap-add SYS_ADMIN)' };
  if (process.getuid?.() === 0) {
    if (spawnSync('mount', ['--version'], { stdio: 'ignore' }).status !== 0) return { ok: false, reason: 'no mount(8) on PATH (util-linux)' };
    return { ok: true };
  }
  try {
    accessSync('/dev/fuse', fsc.R_OK | fsc.W_OK);
  } catch {
    return { ok: false, reason: 'not root and /dev/fuse is not readable and writable by this user' };
  }
  if (spawnSync('fusermount', ['-V'], { stdio: 'ignore' }).status !== 0) return { ok: false, reason: 'not root and no fusermount on PATH (Debian: apt-get install fuse)' };
  const addon = loadNativeReader();
  if ('error' in addon) return { ok: false, reason: `not root, and the fusermount handshake needs the native addon: ${addon.error}` };
  return { ok: true };
}

export function mountedAt(dir: string): boolean {
  try {
    return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === dir);
  } catch {
    return false;
  }
}

/** mountinfo writes space, tab, newline and backslash in paths as octal escapes. */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The device (`major:minor`) of the newest mount at `dir`, from /proc/self/mountinfo: nothing is
 * asked of the filesystem itself (a stat of a FUSE mount from its own server's thread would wait
 * on itself).
 */
export function mountDevice(dir: string): string | undefined {
  const want = resolve(dir);
  let dev: string | undefined;
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescapeMountPath(f[4] as string) === want && /^\d+:\d+$/.test(f[2] as string)) dev = f[2];
  }
  return dev;
}

/**
 * Sets the kernel's read-ahead for the mount at `dir` (its backing device's read_ahead_kb in
 * sysfs). FUSE mounts start at the kernel default, 128 KiB, so a sequential reader gets
 * 128 KiB READs: eight requests per MiB, each a round trip through the server. With 1024 the
 * kernel asks for up to 1 MiB at once (bounded by the session's max_pages). Must be set after
 * INIT: the INIT reply's max_readahead only lowers it. Needs write access to /sys (root, /sys
 * not read-only); otherwise answers why and the mount keeps the default.
 */
export function setMountReadAhead(dir: string, kb: number): { ok: true; device: string } | { ok: false; reason: string } {
  const device = mountDevice(dir);
  if (!device) return { ok: false, reason: `no mount at ${dir} in /proc/self/mountinfo` };
  const path = `/sys/class/bdi/${device}/read_ahead_kb`;
  try {
    writeFileSync(path, `${Math.max(0, Math.floor(kb))}\n`);
    return { ok: true, device };
  } catch (err) {
    return { ok: false, reason: `${path}: ${(err as { code?: string }).code ?? (err as Error).message}` };
  }
}

/** A mount whose server is gone answers ENOTCONN. */
function isDeadMount(dir: string): boolean {
  try {
    statSync(dir);
    return false;
  } catch (e) {
    return (e as { code?: string }).code === 'ENOTCONN';
  }
}

function run(cmd: string, args: string[], stdio: (number | 'ignore' | 'pipe')[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: stdio as ('ignore' | 'pipe')[] });
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    c.on('error', (e) => resolve({ status: null, stderr: e.message }));
    c.on('close', (status) => resolve({ status, stderr: stderr.trim() }));
  });
}

/** Escapes a value for mount's -o list (commas separate options). */
function optValue(v: string): string {
  return v.replace(/[,\\\s]/g, '_');
}

/** Mounts a fresh /dev/fuse connection at `dir`; answers its fd (the session reads it). */
export async function kernelMount(dir: string, o: KernelMountOptions): Promise<number> {
  const s = kernelMountSupport();
  if (!s.ok) throw new KernelMountError(`cannot mount with the kernel engine: ${s.reason}`);
  if (o.mkdir) mkdirSync(dir, { recursive: true });
  // A dead mount left by a killed server: clear it first (as fuse-native's force option does).
  if (mountedAt(dir) && isDeadMount(dir)) await kernelUnmount(dir, true, 0).catch(() => undefined);
  if (process.getuid?.() !== 0) return fusermountMount(dir, o);
  let fd: number;
  try {
    fd = openSync('/dev/fuse', 'r+');
  } catch (e) {
    throw new KernelMountError(`cannot open /dev/fuse: ${(e as Error).message}`, { cause: e });
  }
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const opts = [
    'fd=3', 'rootmode=40000', `user_id=${uid}`, `group_id=${gid}`, 'nosuid', 'nodev',
    ...(o.defaultPermissions ? ['default_permissions'] : []), ...(o.allowOther ? ['allow_other'] : []),
  ];
  // The kernel sends INIT on the fd during mount(2) but does not wait for the answer, so mount(8)
  // returns without us reading; the session starts reading once it has.
  const r = await run('mount', ['-i', '-n', '-t', `fuse.${optValue(o.subtype)}`, '-o', opts.join(','), optValue(o.fsname) || 'fuse', dir], ['ignore', 'ignore', 'pipe', fd]);
  if (r.status !== 0) {
    closeSync(fd);
    throw new KernelMountError(`mount of ${dir} failed (${r.status ?? 'not run'}): ${r.stderr}`);
  }
  return fd;
}

function fusermountMount(dir: string, o: KernelMountOptions): number {
  const l = loadNativeReader();
  if ('error' in l) throw new KernelMountError(`cannot mount as a non-root user without the native addon: ${l.error}`);
  // fusermount adds nosuid,nodev and the fd/rootmode/user_id/group_id options itself.
  const opts = [`fsname=${optValue(o.fsname) || 'fuse'}`, `subtype=${optValue(o.subtype)}`, ...(o.defaultPermissions ? ['default_permissions'] : []), ...(o.allowOther ? ['allow_other'] : [])];
  try {
    return l.addon.fusermount('fusermount', dir, opts.join(','));
  } catch (e) {
    throw new KernelMountError(`mount of ${dir} with fusermount failed: ${(e as Error).message}${o.allowOther ? ' (allow_other as a non-root user needs user_allow_other in /etc/fuse.conf)' : ''}`, { cause: e });
  }
}

/**
 * Unmounts `dir` (lazily: detached now, gone when no longer busy). A busy mount is retried for
 * a moment first: a process that just exited may still hold the mount through its files,
 * whose last reference the kernel drops from a work queue after the exit.
 */
export async function kernelUnmount(dir: string, lazy = false, busyRetries = 10): Promise<void> {
  let last = '';
  for (let i = 0; i <= busyRetries; i++) {
    const r = await run('umount', [...(lazy ? ['-l'] : []), dir], ['ignore', 'ignore', 'pipe']);
    if (r.status === 0 || !mountedAt(dir)) return;
    const f = await run('fusermount', ['-u', ...(lazy ? ['-z'] : []), dir], ['ignore', 'ignore', 'pipe']);
    if (f.status === 0 || !mountedAt(dir)) return;
    last = `${r.stderr}; fusermount: ${f.stderr}`;
    if (!/busy/i.test(last)) break;
    await new Promise((res) => setTimeout(res, 50 * (i + 1)));
  }
  throw Object.assign(new KernelMountError(`unmount of ${dir} failed: ${last}`), { busy: /busy/i.test(last) });
}
