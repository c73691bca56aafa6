// CRC-32 (IEEE, the zlib polynomial) for per-record checksums. Node >= 20.15 has zlib.crc32
// in C; older Node 20 releases do not, so a table-driven fallback gives the same values.
import * as zlib from 'node:zlib';

let table: Uint32Array | undefined;

function crc32Js(data: Uint8Array): number {
  if (table === undefined) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = (table[(crc ^ (data[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const native = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;

export function crc32(data: Uint8Array): number {
  return native !== undefined ? native(data) >>> 0 : crc32Js(data);
}

/** Exposed so tests can check the fallback against the native one. */
export const crc32Fallback = crc32Js;
