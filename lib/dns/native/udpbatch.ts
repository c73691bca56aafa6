// Loader and builder of the optional batched-UDP addon (udpbatch.c). The addon is compiled from
// source with the system C compiler against Node's own headers (N-API, no node-gyp, no network)
// the first time it is asked for, into dist/. When anything is missing (no compiler, no headers,
// not Linux) callers get the reason and keep using the dgram path.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface UdpBatchOpened {
  handle: unknown;
  in: ArrayBuffer;
  out: ArrayBuffer;
  inLens: ArrayBuffer;
  outLens: ArrayBuffer;
  addrs: ArrayBuffer;
  stats: ArrayBuffer;
  port: number;
  batch: number;
  slot: number;
}

export interface UdpBatchAddon {
  open(host: string, port: number, onBatch: (n: number) => void): UdpBatchOpened;
  send(handle: unknown, buf: Buffer, addr: Buffer): number;
  close(handle: unknown): void;
}

const here = dirname(fileURLToPath(import.meta.url));
/** dist/lib/dns/native -> repository root. */
const root = join(here, '..', '..', '..', '..');
const SOURCE = join(root, 'lib', 'dns', 'native', 'udpbatch.c');
const OUTPUT = join(here, 'udpbatch.node');

let cached: { addon: UdpBatchAddon } | { error: string } | null = null;

function includeDir(): string | null {
  const prefix = (process.config.variables as { node_prefix?: string }).node_prefix ?? '/usr';
  for (const d of [join(prefix, 'include', 'node'), join(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node']) {
    if (existsSync(join(d, 'node_api.h')) && existsSync(join(d, 'uv.h'))) return d;
  }
  return null;
}

/** Compiles the addon if the binary is missing or older than its source. */
export function buildUdpBatch(): { ok: true; path: string } | { ok: false; error: string } {
  if (process.platform !== 'linux') return { ok: false, error: 'batched UDP needs Linux (recvmmsg/sendmmsg)' };
  if (!existsSync(SOURCE)) return { ok: false, error: `source not found: ${SOURCE}` };
  if (existsSync(OUTPUT) && statSync(OUTPUT).mtimeMs >= statSync(SOURCE).mtimeMs) return { ok: true, path: OUTPUT };
  const inc = includeDir();
  if (inc === null) return { ok: false, error: 'Node headers (node_api.h, uv.h) not found' };
  mkdirSync(dirname(OUTPUT), { recursive: true });
  const tmp = `${OUTPUT}.${process.pid}.tmp`;
  const r = spawnSync(process.env.CC ?? 'cc', ['-O2', '-shared', '-fPIC', '-Wall', '-I', inc, '-o', tmp, SOURCE], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return { ok: false, error: `compile failed: ${(r.stderr || r.error?.message || '').trim().slice(0, 2000)}` };
  // Rename is atomic: concurrent builders (cluster workers) never load a half-written file.
  spawnSync('mv', ['-f', tmp, OUTPUT]);
  return { ok: true, path: OUTPUT };
}

/** The addon, building it on first use; `error` says why it is unavailable. */
export function loadUdpBatch(): { addon: UdpBatchAddon } | { error: string } {
  if (cached) return cached;
  const built = buildUdpBatch();
  if (!built.ok) {
    cached = { error: built.error };
    return cached;
  }
  try {
    const req = createRequire(import.meta.url);
    cached = { addon: req(built.path) as UdpBatchAddon };
  } catch (e) {
    cached = { error: `cannot load ${built.path}: ${(e as Error).message}` };
  }
  return cached;
}
