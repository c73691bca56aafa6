// fuse-native's C binding, corrected and built here. The prebuilt binding loses the mtime of
// utimens (it passes the atime twice: `FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)`), and turns
// UTIME_NOW/UTIME_OMIT into meaningless millisecond counts, so `touch -m` and `touch -a` cannot
// work through it. Its JS side never sees the right values, so the fix has to be in C: the
// installed fuse-native.c is patched in memory (the mtime argument; UTIME_NOW/UTIME_OMIT passed
// as the sentinels below) and compiled with the system compiler against fuse-native's bundled
// libfuse headers (lib/common/native.ts), into dist/. Without a compiler, or when the source no
// longer matches the patch, the prebuilt binding is used and the reason is reported.
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
const PATCH_VERSION = 1;

const PATCHES: [string, string][] = [
  ['  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', '  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'],
  [
    'static uint64_t timespec_to_uint64 (const struct timespec* ts) {\n',
    `static uint64_t timespec_to_uint64 (const struct timespec* ts) {\n  if (ts->tv_nsec == UTIME_NOW) return ${FUSE_UTIME_NOW_MS}ULL;\n  if (ts->tv_nsec == UTIME_OMIT) return ${FUSE_UTIME_OMIT_MS}ULL;\n`,
  ],
];

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
  let text = readFileSync(src, 'utf8');
  for (const [from, to] of PATCHES) {
    const at = text.indexOf(from);
    if (at < 0 || text.indexOf(from, at + 1) >= 0) return { ok: false, error: 'fuse-native.c does not match the expected source (another fuse-native version?)' };
    text = text.replace(from, to);
  }
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
