// Loader of the optional batched-UDP addon (udpbatch.c), through lib/common/native.ts: compiled
// with the system C compiler the first time it is asked for; when that cannot happen (no
// compiler, no headers, not Linux) callers get the reason and keep using the dgram path.
import { buildNativeAddon, loadNativeAddon, type NativeAddonSpec, type NativeBuild, type NativeLoad } from '../../common/native.js';

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

const spec: NativeAddonSpec = { from: import.meta.url, source: 'udpbatch.c', headers: ['uv.h'], platforms: ['linux'] };

/** Compiles the addon if the binary is missing or older than its source. */
export function buildUdpBatch(): NativeBuild {
  return buildNativeAddon(spec);
}

/** The addon, building it on first use; `error` says why it is unavailable. */
export function loadUdpBatch(): NativeLoad<UdpBatchAddon> {
  return loadNativeAddon<UdpBatchAddon>(spec);
}
