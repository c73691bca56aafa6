// Builds and loads the optional N-API addons (lib/dns/native/udpbatch.c, lib/blockgroup/native/
// crc32c.c). Each is compiled from its C source with the system compiler against Node's own
// headers (no node-gyp, no network) the first time it is asked for, into dist/ beside the module
// that wants it. When anything is missing (no compiler, no headers, wrong platform) callers get
// the reason and keep using their pure-TypeScript path: an addon is always an optimisation.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeAddonSpec {
  /** The loading module's import.meta.url (its dist/ place decides where the binary goes). */
  from: string;
  /** C source, relative to the loading module's source directory (e.g. 'native/crc32c.c'). */
  source: string;
  /** Extra Node headers the source includes besides node_api.h (e.g. 'uv.h'). */
  headers?: string[];
  /** Extra compiler flags (after -O2 -shared -fPIC -Wall). */
  cflags?: string[];
  /** Platforms the source builds on (default: any). */
  platforms?: NodeJS.Platform[];
  /** Compiler command (default `cc`). */
  compiler?: string;
}

export type NativeBuild = { ok: true; path: string } | { ok: false; error: string };
export type NativeLoad<T> = { addon: T } | { error: string };

const loaded = new Map<string, NativeLoad<unknown>>();
let disabled: string | undefined;

/**
 * Turns every addon off for this process (daemons wire this to a setting, tests use it to run
 * the pure-TypeScript paths); later loads answer `error` with the reason. Loads already made
 * are kept: callers that cached an addon keep it.
 */
export function disableNativeAddons(reason = 'native addons disabled by configuration'): void {
  disabled = reason;
}

/** The package root: the first directory above `file` holding package.json. */
function packageRoot(file: string): string | undefined {
  let d = dirname(file);
  for (let i = 0; i < 16; i++) {
    if (existsSync(join(d, 'package.json'))) return d;
    const up = dirname(d);
    if (up === d) return undefined;
    d = up;
  }
  return undefined;
}

/** Where the source and binary of an addon live: lib/x/<source> and dist/lib/x/<source>.node. */
function paths(spec: NativeAddonSpec): { source: string; output: string } | { error: string } {
  const here = fileURLToPath(spec.from);
  const root = packageRoot(here);
  if (!root) return { error: `no package.json above ${here}` };
  // Compiled modules sit under <root>/dist/<same path as the .ts>; sources under <root>/<path>.
  const rel = relative(root, dirname(here));
  const srcDir = rel.startsWith('dist') ? join(root, relative(join(root, 'dist'), dirname(here))) : dirname(here);
  const source = join(srcDir, spec.source);
  const output = join(dirname(here), spec.source.replace(/\.c$/, '') + '.node');
  return { source, output };
}

function includeDir(headers: string[]): string | null {
  const prefix = (process.config.variables as { node_prefix?: string }).node_prefix ?? '/usr';
  for (const d of [join(prefix, 'include', 'node'), join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node']) {
    if (['node_api.h', ...headers].every((h) => existsSync(join(d, h)))) return d;
  }
  return null;
}

/** Compiles the addon if its binary is missing or older than its source. */
export function buildNativeAddon(spec: NativeAddonSpec): NativeBuild {
  if (disabled) return { ok: false, error: disabled };
  if (spec.platforms && !spec.platforms.includes(process.platform)) return { ok: false, error: `${spec.source} builds only on ${spec.platforms.join(', ')}` };
  const p = paths(spec);
  if ('error' in p) return { ok: false, error: p.error };
  return compileNative({
    sources: [p.source], output: p.output,
    ...(spec.headers ? { headers: spec.headers } : {}), ...(spec.cflags ? { cflags: spec.cflags } : {}), ...(spec.compiler ? { compiler: spec.compiler } : {}),
  });
}

export interface NativeCompileSpec {
  /** C sources (absolute paths); the output is rebuilt when any is newer than it. */
  sources: string[];
  /** The .node file to produce (absolute path). */
  output: string;
  /** Extra Node headers the sources include besides node_api.h (e.g. 'uv.h'). */
  headers?: string[];
  /** Extra compiler flags (include directories, defines), before the sources. */
  cflags?: string[];
  /** Linker inputs after the sources (libraries). */
  libs?: string[];
  compiler?: string;
}

/**
 * The compile step itself, for addons whose source is not a file of this package (fuse/binding.ts
 * builds a patched copy of fuse-native's): rebuilds `output` when it is missing or older than a
 * source, atomically.
 */
export function compileNative(c: NativeCompileSpec): NativeBuild {
  if (disabled) return { ok: false, error: disabled };
  for (const s of c.sources) if (!existsSync(s)) return { ok: false, error: `source not found: ${s}` };
  if (existsSync(c.output)) {
    const built = statSync(c.output).mtimeMs;
    if (c.sources.every((s) => statSync(s).mtimeMs <= built)) return { ok: true, path: c.output };
  }
  const inc = includeDir(c.headers ?? []);
  if (inc === null) return { ok: false, error: `Node headers (${['node_api.h', ...(c.headers ?? [])].join(', ')}) not found` };
  try {
    mkdirSync(dirname(c.output), { recursive: true });
  } catch (e) {
    return { ok: false, error: `cannot create ${dirname(c.output)}: ${(e as Error).message}` };
  }
  const tmp = `${c.output}.${process.pid}.tmp`;
  const r = spawnSync(c.compiler ?? 'cc', ['-O2', '-shared', '-fPIC', '-Wall', ...(c.cflags ?? []), '-I', inc, '-o', tmp, ...c.sources, ...(c.libs ?? [])], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return { ok: false, error: `compile failed: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().slice(0, 2000)}` };
  try {
    // Rename is atomic: concurrent builders (workers, parallel tests) never load a half-written file.
    renameSync(tmp, c.output);
  } catch (e) {
    return { ok: false, error: `cannot install ${c.output}: ${(e as Error).message}` };
  }
  return { ok: true, path: c.output };
}

/** The addon, building it on first use; `error` says why it is unavailable. Cached per binary. */
export function loadNativeAddon<T>(spec: NativeAddonSpec): NativeLoad<T> {
  if (disabled) return { error: disabled };
  const p = paths(spec);
  // Per binary and compiler: a failed build with one compiler says nothing about another.
  const key = `${'error' in p ? spec.from + spec.source : p.output}\0${spec.compiler ?? 'cc'}`;
  const hit = loaded.get(key);
  if (hit) return hit as NativeLoad<T>;
  const built = buildNativeAddon(spec);
  let r: NativeLoad<T>;
  if (!built.ok) r = { error: built.error };
  else {
    try {
      r = { addon: createRequire(spec.from)(built.path) as T };
    } catch (e) {
      r = { error: `cannot load ${built.path}: ${(e as Error).message}` };
    }
  }
  loaded.set(key, r);
  return r;
}

/**
 * loadNativeAddon for one addon, its outcome kept: the call after the first is a field read,
 * for hot paths (a setsockopt per large frame) where even the cached lookup's path work shows.
 */
export function nativeAddonOnce<T>(spec: NativeAddonSpec): () => NativeLoad<T> {
  let r: NativeLoad<T> | undefined;
  return () => (r ??= loadNativeAddon<T>(spec));
}
