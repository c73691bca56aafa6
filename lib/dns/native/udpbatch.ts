// Loader and builder of the optional batched-UDP addon (udpbatch.c). The addon is compiled from
// source with the system C compiler against Node's own headers (lib/common/native.ts) the first
// time it is asked for, into dist/. When anything is missing (no compiler, no headers,
// not Linux) callers get the reason and keep using the dgram path.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNative } from '../../common/native.js';

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

/** Compiles the addon if the binary is missing or older than its source. */
export function buildUdpBatch(): { ok: true; path: string } | { ok: false; error: string } {
  if (process.platform !== 'linux') return { ok: false, error: 'batched UDP needs Linux (recvmmsg/sendmmsg)' };
  return buildNative({ sources: [SOURCE], output: OUTPUT, ...(process.env.CC ? { cc: process.env.CC } : {}) });
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
