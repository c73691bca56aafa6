// fuse-native's C binding, corrected and extended, built here. Two things the prebuilt binding
// cannot do, both fixed in C because its JS side never sees the values:
// - utimens: it loses the mtime (it passes the atime twice: `FUSE_UINT64_TO_INTS_ARGV(l->atime,
//   5)`), and turns UTIME_NOW/UTIME_OMIT into meaningless millisecond counts, so `touch -m` and
//   `touch -a` cannot work through it. Patched: the mtime argument; UTIME_NOW/UTIME_OMIT passed
//   as the sentinels below.
// - The caller: it never asks fuse_get_context(), so a filesystem cannot give a new file the
//   uid/gid of the process that created it. Patched: each request copies the context (uid, gid,
//   pid, umask) on its FUSE thread, where fuse_get_context() is valid, into its per-thread
//   struct; the main thread's dispatcher copies it into one static array just before it calls
//   into JS and clears it after. fuse-native's JS handlers call the operation synchronously from
//   there, so an operation that reads the array (as a Uint32Array over it, see
//   `fuse_native_caller_buffer`) before its first await reads its own request's caller.
// The installed fuse-native.c is patched in memory and compiled with the system compiler against
// fuse-native's bundled libfuse headers (lib/common/native.ts), into dist/. Without a compiler,
// or when the source no longer matches the patch exactly (each anchor must occur once: it fails
// closed), the prebuilt binding is used and the reason is reported.
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileNative } from '../lib/common/index.js';

/** What the corrected binding passes for UTIME_NOW and UTIME_OMIT (as ms; far beyond any real time). */
export const FUSE_UTIME_NOW_MS = 2 ** 48 - 1;
export const FUSE_UTIME_OMIT_MS = 2 ** 48 - 2;

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
/** Bumped with every change to the patch, so an old build is never reused. */
const PATCH_VERSION = 2;

/**
 * The corrected binding's caller array, as Uint32 slots: the request's uid, gid, pid, umask, and
 * CALLER_VALID (1 only while a request's JS dispatch runs).
 */
export const CALLER_SLOTS = 5;
export const CALLER_UID = 0;
export const CALLER_GID = 1;
export const CALLER_PID = 2;
export const CALLER_UMASK = 3;
export const CALLER_VALID = 4;

/** [anchor, replacement]: each anchor must occur exactly once in fuse-native.c. */
const PATCHES: [string, string][] = [
  // utimens: the mtime, and UTIME_NOW/UTIME_OMIT as sentinels.
  ['  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', '  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'],
  [
    'static uint64_t timespec_to_uint64 (const struct timespec* ts) {\n',
    `static uint64_t timespec_to_uint64 (const struct timespec* ts) {\n  if (ts->tv_nsec == UTIME_NOW) return ${FUSE_UTIME_NOW_MS}ULL;\n  if (ts->tv_nsec == UTIME_OMIT) return ${FUSE_UTIME_OMIT_MS}ULL;\n`,
  ],
  // The caller: the shared array the main thread's dispatcher fills (read from JS).
  [
    'static int IS_ARRAY_BUFFER_DETACH_SUPPORTED = 0;\n',
    `static int IS_ARRAY_BUFFER_DETACH_SUPPORTED = 0;\n\n// containerfs: the caller of the request being dispatched to JS (main thread only).\nstatic uint32_t fuse_native_caller[${CALLER_SLOTS}];\n`,
  ],
  // ... a copy per FUSE thread, in the struct that thread hands to the main thread ...
  ['  // Internal bookkeeping\n  fuse_thread_t *fuse;\n', `  // containerfs: fuse_get_context() of the request, taken on the FUSE thread\n  uint32_t caller[${CALLER_SLOTS}];\n\n  // Internal bookkeeping\n  fuse_thread_t *fuse;\n`],
  // ... filled on the FUSE thread when a request arrives (before the main thread is woken) ...
  [
    '  l->op_fn = fuse_native_dispatch_##name;\\\n',
    '  l->op_fn = fuse_native_dispatch_##name;\\\n' +
      `  { struct fuse_context *cx = fuse_get_context(); l->caller[${CALLER_UID}] = cx->uid; l->caller[${CALLER_GID}] = cx->gid; l->caller[${CALLER_PID}] = cx->pid; l->caller[${CALLER_UMASK}] = cx->umask; l->caller[${CALLER_VALID}] = 1; }\\\n`,
  ],
  // ... and published for exactly the duration of the JS call (init never sets CALLER_VALID).
  [
    '  void (*fn)(uv_async_t *, fuse_thread_locals_t *, fuse_thread_t *) = l->op_fn;\n\n  fn(handle, l, ft);\n',
    '  void (*fn)(uv_async_t *, fuse_thread_locals_t *, fuse_thread_t *) = l->op_fn;\n\n' +
      '  memcpy(fuse_native_caller, l->caller, sizeof(fuse_native_caller));\n  if (l->op == op_init) fuse_native_caller[' + CALLER_VALID + '] = 0;\n' +
      '  fn(handle, l, ft);\n  memset(fuse_native_caller, 0, sizeof(fuse_native_caller));\n',
  ],
  [
    'NAPI_INIT() {\n',
    'NAPI_METHOD(fuse_native_caller_buffer) {\n  napi_value buf;\n  NAPI_STATUS_THROWS(napi_create_external_buffer(env, sizeof(fuse_native_caller), fuse_native_caller, NULL, NULL, &buf))\n  return buf;\n}\n\nNAPI_INIT() {\n',
  ],
  ['  NAPI_EXPORT_FUNCTION(fuse_native_unmount)\n', '  NAPI_EXPORT_FUNCTION(fuse_native_unmount)\n  NAPI_EXPORT_FUNCTION(fuse_native_caller_buffer)\n'],
];

/**
 * fuse-native.c with the patches applied, or why not: every anchor must occur exactly once, so
 * another fuse-native version is refused rather than half patched.
 */
export function patchFuseNativeSource(source: string): { ok: true; text: string } | { ok: false; error: string } {
  let text = source;
  for (const [from, to] of PATCHES) {
    const at = text.indexOf(from);
    if (at < 0 || text.indexOf(from, at + 1) >= 0) {
      return { ok: false, error: `fuse-native.c does not match the expected source (another fuse-native version?): ${at < 0 ? 'no' : 'more than one'} ${JSON.stringify(from.split('\n')[0])}` };
    }
    text = text.slice(0, at) + to + text.slice(at + from.length);
  }
  return { ok: true, text };
}

export type BindingResult = { ok: true; path: string } | { ok: false; error: string };

let cached: BindingResult | undefined;

/** Builds (once) the corrected binding; answers its path or why the prebuilt one must do. */
export function buildFuseBinding(): BindingResult {
  if (cached) return cached;
  cached = build();
  return cached;
}

function build(): BindingResult {
  let pkg: string;
  try {
    pkg = dirname(require.resolve('fuse-native/package.json'));
  } catch {
    return { ok: false, error: 'fuse-native is not installed' };
  }
  const src = join(pkg, 'fuse-native.c');
  if (!existsSync(src)) return { ok: false, error: `no ${src}` };
  const patched0 = patchFuseNativeSource(readFileSync(src, 'utf8'));
  if (!patched0.ok) return patched0;
  const text = patched0.text;
  let napiMacros: string;
  let fuseInclude: string;
  try {
    const fromPkg = createRequire(join(pkg, 'index.js'));
    napiMacros = dirname(fromPkg.resolve('napi-macros/package.json'));
    const shared = dirname(fromPkg.resolve('fuse-shared-library/package.json'));
    fuseInclude = (createRequire(join(shared, 'index.js'))('fuse-shared-library-linux') as { include: string }).include;
  } catch (e) {
    return { ok: false, error: `fuse-native's build headers not found: ${(e as Error).message}` };
  }
  const lib = join(pkg, 'prebuilds', `${process.platform}-${process.arch}`, 'libfuse.so');
  if (!existsSync(lib)) return { ok: false, error: `no bundled libfuse at ${lib}` };
  const outDir = join(here, 'native');
  mkdirSync(outDir, { recursive: true });
  const patched = join(outDir, `fuse-native-p${PATCH_VERSION}.c`);
  // Written only when it changed: its mtime decides whether the addon is rebuilt. Its local
  // header goes beside it (not on the include path: it includes the system <semaphore.h>).
  if (!existsSync(patched) || readFileSync(patched, 'utf8') !== text) writeFileSync(patched, text);
  const sem = join(outDir, 'semaphore.h');
  if (existsSync(join(pkg, 'semaphore.h')) && !existsSync(sem)) writeFileSync(sem, readFileSync(join(pkg, 'semaphore.h')));
  // Linked against the bundled copy only for its soname (libfuse.so.2): at run time the system
  // libfuse, or the bundled one through LD_LIBRARY_PATH (load.ts), is what gets loaded.
  return compileNative({
    sources: [patched],
    output: join(outDir, `fuse-native-p${PATCH_VERSION}.node`),
    headers: ['uv.h'],
    cflags: ['-I', napiMacros, '-I', fuseInclude, '-D_FILE_OFFSET_BITS=64', '-Wno-unused-result', '-Wno-unused-variable'],
    libs: [lib],
  });
}
