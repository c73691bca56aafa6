// Loading the FUSE binding. fuse-native's prebuilt addon links libfuse.so.2. On a machine
// without a system libfuse, the copy of libfuse that fuse-native ships (from the
// fuse-shared-library package) is used instead: the loader is pointed at it with
// LD_LIBRARY_PATH, which the dynamic linker reads only at process start, so the caller
// re-executes itself with the returned environment. If FUSE cannot work at all, the error says
// exactly why and what to install.
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, symlinkSync, readlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { defineError } from '../lib/common/index.js';
import { buildFuseBinding, CALLER_GID, CALLER_PID, CALLER_SLOTS, CALLER_UID, CALLER_UMASK, CALLER_VALID } from './binding.js';
import type { FuseCaller } from './types.js';

export class FuseUnavailableError extends defineError('fuse', 'FUSE_UNAVAILABLE') {}

const require = createRequire(import.meta.url);

/** The fuse-native module (typed loosely: it ships no types). */
export type FuseNative = {
  new (mnt: string, ops: Record<string, unknown>, opts: Record<string, unknown>): FuseInstance;
  unmount(mnt: string, cb: (err?: Error | null) => void): void;
  isConfigured(cb: (err: Error | null, yes: boolean) => void): void;
} & Record<string, number>;

export interface FuseInstance {
  mount(cb: (err?: Error | null) => void): void;
  unmount(cb: (err?: Error | null) => void): void;
}

export type LoadResult =
  /**
   * `binding`: 'corrected' is fuse-native's C binding built here with the utimens fix and the
   * caller context (binding.ts); 'prebuilt' is the one fuse-native ships (mtime of utimens
   * lost, no caller), used when the corrected one cannot be built (`bindingError` says why) or
   * CONTAINERFS_FUSE_BINDING=prebuilt.
   * `callerContext`: whether operations learn the calling process (the corrected binding: new
   * files belong to the caller; the prebuilt one: to the user running the mount).
   */
  | { kind: 'ok'; Fuse: FuseNative; libfuse: 'system' | 'bundled'; binding: 'corrected' | 'prebuilt'; callerContext: boolean; bindingError?: string }
  /** Re-run this process with `env` (LD_LIBRARY_PATH set to the bundled libfuse). */
  | { kind: 'reexec'; env: Record<string, string> };

function bundledLibDir(): string {
  const pkg = dirname(require.resolve('fuse-native/package.json'));
  const lib = join(pkg, 'prebuilds', `${process.platform}-${process.arch}`, 'libfuse.so');
  if (!existsSync(lib)) throw new FuseUnavailableError(`no system libfuse.so.2 and no bundled copy at ${lib}; install libfuse2 (Debian: apt-get install fuse libfuse2)`);
  // The addon asks for the soname libfuse.so.2; give it one that points at the bundled file.
  const dir = join(tmpdir(), `containerfs-libfuse-${process.getuid?.() ?? 0}`);
  mkdirSync(dir, { recursive: true });
  const link = join(dir, 'libfuse.so.2');
  let current: string | undefined;
  try {
    current = readlinkSync(link);
  } catch {
    current = undefined;
  }
  if (current !== lib) {
    try {
      symlinkSync(lib, `${link}.${process.pid}`);
      // rename over any stale link atomically
      require('node:fs').renameSync(`${link}.${process.pid}`, link);
    } catch (e) {
      throw new FuseUnavailableError(`cannot prepare the bundled libfuse in ${dir}: ${(e as Error).message}`);
    }
  }
  return dir;
}

export function loadFuse(env: NodeJS.ProcessEnv = process.env): LoadResult {
  if (process.platform !== 'linux') throw new FuseUnavailableError(`FUSE mounts are supported on Linux only (this is ${process.platform})`);
  if (!existsSync('/dev/fuse')) {
    throw new FuseUnavailableError('/dev/fuse does not exist: load the fuse kernel module (modprobe fuse) or, in a container, run with --device /dev/fuse --cap-add SYS_ADMIN');
  }
  const forceBundled = env.CONTAINERFS_LIBFUSE === 'bundled';
  const usingBundled = Boolean(env.LD_LIBRARY_PATH?.includes('containerfs-libfuse-'));
  if (forceBundled && !usingBundled) {
    return { kind: 'reexec', env: { ...cleanEnv(env), LD_LIBRARY_PATH: [bundledLibDir(), env.LD_LIBRARY_PATH].filter(Boolean).join(':') } };
  }
  const corrected = env.CONTAINERFS_FUSE_BINDING === 'prebuilt' ? { ok: false as const, error: 'CONTAINERFS_FUSE_BINDING=prebuilt' } : buildFuseBinding();
  try {
    const Fuse = requireFuseNative(corrected.ok ? corrected.path : undefined);
    const callerContext = corrected.ok && registerCaller(Fuse, corrected.path);
    return { kind: 'ok', Fuse, libfuse: usingBundled ? 'bundled' : 'system', binding: corrected.ok ? 'corrected' : 'prebuilt', callerContext, ...(corrected.ok ? {} : { bindingError: corrected.error }) };
  } catch (err) {
    const msg = (err as Error).message;
    if ((err as { code?: string }).code === 'MODULE_NOT_FOUND' && /fuse-native/.test(msg)) {
      throw new FuseUnavailableError('the optional dependency fuse-native is not installed (npm install fuse-native; it needs a Linux x64/arm prebuild or a C toolchain)');
    }
    if (/libfuse\.so\.2/.test(msg) && !usingBundled) {
      return { kind: 'reexec', env: { ...cleanEnv(env), LD_LIBRARY_PATH: [bundledLibDir(), env.LD_LIBRARY_PATH].filter(Boolean).join(':') } };
    }
    throw new FuseUnavailableError(`cannot load the FUSE binding: ${msg}`, { cause: err });
  }
}

/** Answers the caller of the request being dispatched, or undefined outside a dispatch. */
export type CallerReader = () => FuseCaller | undefined;

const callerReaders = new WeakMap<object, CallerReader>();

/**
 * The caller reader of a loaded fuse-native (undefined for the prebuilt binding). It must be
 * called synchronously in an operation handler, before any await (binding.ts says why).
 */
export function fuseCallerReader(Fuse: FuseNative): CallerReader | undefined {
  return callerReaders.get(Fuse);
}

function registerCaller(Fuse: FuseNative, binding: string): boolean {
  const addon = require(binding) as { fuse_native_caller_buffer?: () => Buffer };
  if (typeof addon.fuse_native_caller_buffer !== 'function') return false;
  const buf = addon.fuse_native_caller_buffer();
  if (buf.length < CALLER_SLOTS * 4) return false;
  const slots = new Uint32Array(buf.buffer, buf.byteOffset, CALLER_SLOTS);
  callerReaders.set(Fuse, () =>
    slots[CALLER_VALID] === 1 ? { uid: slots[CALLER_UID] as number, gid: slots[CALLER_GID] as number, pid: slots[CALLER_PID] as number, umask: slots[CALLER_UMASK] as number } : undefined,
  );
  return true;
}

/**
 * fuse-native with its binding replaced: its index.js asks node-gyp-build for the addon of its
 * own directory once, at load; that one answer is the corrected build.
 */
function requireFuseNative(binding: string | undefined): FuseNative {
  if (!binding) return require('fuse-native') as FuseNative;
  const pkg = dirname(require.resolve('fuse-native/package.json'));
  const ngbPath = createRequire(join(pkg, 'index.js')).resolve('node-gyp-build');
  require(ngbPath);
  const entry = require.cache[ngbPath];
  if (!entry) return require('fuse-native') as FuseNative;
  const original = entry.exports as (dir: string) => unknown;
  entry.exports = Object.assign((dir: string) => (dir === pkg ? require(binding) : original(dir)), original);
  try {
    return require('fuse-native') as FuseNative;
  } finally {
    entry.exports = original;
  }
}

function cleanEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}
