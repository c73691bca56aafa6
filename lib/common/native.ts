// Building small N-API addons from C source with the system compiler, against Node's own headers
// (no node-gyp, no network), the first time they are asked for. Shared by the batched-UDP addon
// (lib/dns) and the corrected fuse-native binding (fuse/). When anything is missing (no
// compiler, no headers) the caller gets the reason and uses its fallback.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface NativeBuild {
  /** C sources (absolute paths); the output is rebuilt when any is newer. */
  sources: string[];
  /** The .node file to produce. */
  output: string;
  includeDirs?: string[];
  /** Further compiler/linker arguments (defines, libraries), after the sources. */
  args?: string[];
  /** The C compiler (default `cc`). */
  cc?: string;
}

/** Node's include directory (node_api.h, uv.h), or null. */
export function nodeIncludeDir(): string | null {
  const prefix = (process.config.variables as { node_prefix?: string }).node_prefix ?? '/usr';
  for (const d of [join(prefix, 'include', 'node'), join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node']) {
    if (existsSync(join(d, 'node_api.h')) && existsSync(join(d, 'uv.h'))) return d;
  }
  return null;
}

/** Compiles the addon if the binary is missing or older than a source. */
export function buildNative(b: NativeBuild): { ok: true; path: string } | { ok: false; error: string } {
  for (const s of b.sources) if (!existsSync(s)) return { ok: false, error: `source not found: ${s}` };
  if (existsSync(b.output)) {
    const built = statSync(b.output).mtimeMs;
    if (b.sources.every((s) => statSync(s).mtimeMs <= built)) return { ok: true, path: b.output };
  }
  const inc = nodeIncludeDir();
  if (inc === null) return { ok: false, error: 'Node headers (node_api.h, uv.h) not found' };
  mkdirSync(dirname(b.output), { recursive: true });
  const tmp = `${b.output}.${process.pid}.tmp`;
  const incs = [inc, ...(b.includeDirs ?? [])].flatMap((d) => ['-I', d]);
  const r = spawnSync(b.cc ?? 'cc', ['-O2', '-shared', '-fPIC', '-Wall', ...incs, '-o', tmp, ...b.sources, ...(b.args ?? [])], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return { ok: false, error: `compile failed: ${(r.stderr || r.error?.message || '').trim().slice(0, 2000)}` };
  // Rename is atomic: concurrent builders (cluster workers, parallel tests) never load a half-written file.
  renameSync(tmp, b.output);
  return { ok: true, path: b.output };
}
