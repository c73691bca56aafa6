// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every block and extent.
// Every byte written or read is checksummed at least once per replica, so this is on the data
// path's CPU budget: the native addon (native/crc32c.c, SSE4.2, ~20x the TypeScript speed) is
// used when it builds and the CPU has the instruction; otherwise, or when told to
// (useCrc32c('ts'): tests, or a daemon setting), the pure-TypeScript slice-by-8 below, which is
// also the reference the addon is tested against. `crc32cCombine` joins the checksums of two
// adjacent ranges without reading either again (multiplication by x^(8n) in GF(2)[x] mod P).
import { loadNativeAddon } from '../common/native.js';

const POLY = 0x82f63b78;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n] as number;
  for (let k = 1; k < 8; k++) {
    c = (T[c & 0xff] as number) ^ (c >>> 8);
    T[k * 256 + n] = c;
  }
}

/**
 * Continues a CRC-32C over `buf[start, end)`. Pass the previous result as `crc` to extend it
 * (0 starts a new checksum). Returns an unsigned 32-bit value.
 */
export function crc32c(buf: Uint8Array, crc = 0, start = 0, end = buf.length): number {
  // Below this the N-API crossing costs more than the table loop.
  if (end - start >= NATIVE_MIN_BYTES) {
    const f = nativeFn === undefined ? resolveNative() : nativeFn;
    if (f !== null) {
      if (!(start >= 0 && start <= end && end <= buf.length)) throw new RangeError('crc32c: range outside the buffer');
      return f(buf, crc >>> 0, start, end);
    }
  }
  return crc32cTs(buf, crc, start, end);
}

const NATIVE_MIN_BYTES = 128;
type NativeCrc = (buf: Uint8Array, crc: number, start: number, end: number) => number;
/** undefined: not looked up yet; null: the TypeScript path. */
let nativeFn: NativeCrc | null | undefined;
let mode: 'auto' | 'ts' = 'auto';
let why = 'not loaded yet';

function resolveNative(): NativeCrc | null {
  if (mode === 'ts') {
    nativeFn = null;
    why = 'TypeScript path chosen by configuration';
    return null;
  }
  const l = loadNativeAddon<{ crc32c: NativeCrc; supported: boolean }>({ from: import.meta.url, source: 'native/crc32c.c' });
  if ('error' in l) {
    nativeFn = null;
    why = l.error;
  } else if (!l.addon.supported) {
    nativeFn = null;
    why = 'the CPU has no SSE4.2 crc32 instruction';
  } else {
    nativeFn = l.addon.crc32c;
    why = 'SSE4.2 addon';
  }
  return nativeFn;
}

/**
 * Chooses the implementation: 'auto' (the addon when it builds and the CPU supports it) or
 * 'ts' (always the TypeScript path). Process-wide; takes effect on the next call.
 */
export function useCrc32c(kind: 'auto' | 'ts'): void {
  mode = kind;
  nativeFn = undefined;
}

/** Which implementation crc32c() uses, and why (loads the addon if not done yet). */
export function crc32cImplementation(): { kind: 'native' | 'ts'; reason: string } {
  if (nativeFn === undefined) resolveNative();
  return { kind: nativeFn ? 'native' : 'ts', reason: why };
}

/** The addon's crc32c when available (tests compare it with crc32cTs), else undefined. */
export function crc32cNative(): NativeCrc | undefined {
  if (mode === 'ts') return undefined;
  if (nativeFn === undefined) resolveNative();
  return nativeFn ?? undefined;
}

/** The pure-TypeScript CRC-32C (slice-by-8); same contract as crc32c. */
export function crc32cTs(buf: Uint8Array, crc = 0, start = 0, end = buf.length): number {
  let c = ~crc;
  let i = start;
  const t = T;
  if (LITTLE_ENDIAN) {
    // Bytes up to 4-byte alignment, then 8 bytes per step through an Int32Array view: two word
    // loads instead of eight byte loads is what makes slice-by-8 pay in JS (~3x faster here).
    while (i < end && ((buf.byteOffset + i) & 3) !== 0) {
      c = (t[(c ^ (buf[i] as number)) & 0xff] as number) ^ (c >>> 8);
      i++;
    }
    const pairs = (end - i) >>> 3;
    if (pairs > 0) {
      const w = new Int32Array(buf.buffer, buf.byteOffset + i, pairs * 2);
      const n = w.length;
      for (let j = 0; j < n; j += 2) {
        const lo = c ^ (w[j] as number);
        const hi = w[j + 1] as number;
        c =
          (t[1792 + (lo & 0xff)] as number) ^
          (t[1536 + ((lo >>> 8) & 0xff)] as number) ^
          (t[1280 + ((lo >>> 16) & 0xff)] as number) ^
          (t[1024 + (lo >>> 24)] as number) ^
          (t[768 + (hi & 0xff)] as number) ^
          (t[512 + ((hi >>> 8) & 0xff)] as number) ^
          (t[256 + ((hi >>> 16) & 0xff)] as number) ^
          (t[hi >>> 24] as number);
      }
      i += pairs * 8;
    }
  }
  while (i < end) {
    c = (t[(c ^ (buf[i] as number)) & 0xff] as number) ^ (c >>> 8);
    i++;
  }
  return ~c >>> 0;
}

// Joining checksums works in GF(2)[x] mod P, with bit 31 of a register as the coefficient of
// x^0 (the reflected order the table uses). Appending n zero bytes to a message multiplies its
// raw register by x^(8n); for CRC-32C's pre- and post-inversion the extra terms cancel, so
// crc(A || B) = crc(A) * x^(8 |B|) + crc(B). x^(8n) is built from the powers x^(2^k), one
// multiplication per set bit of 8n: a handful of 32-step products, cheap enough to run per
// block on the write path (extentfile.ts joins block checksums computed while bytes are hot).

/** a * b mod P, both in the reflected representation. */
function mulModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2K[k] = x^(2^k) mod P. */
const X2K = new Uint32Array(32);
X2K[0] = 0x40000000; // x^1
for (let k = 1; k < 32; k++) X2K[k] = mulModP(X2K[k - 1] as number, X2K[k - 1] as number);

/** x^(8n) mod P: the operator that appends n zero bytes (powers repeat with period 2^32 - 1, so k wraps). */
function zeroBytesOp(n: number): number {
  let p = 0x80000000; // x^0
  let k = 3; // 8n = n << 3
  while (n > 0) {
    if (n % 2 === 1) p = mulModP(X2K[k & 31] as number, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** The last length asked for and its operator: block checksums are joined at one length over and over. */
let opLength = -1;
let opValue = 0;

/** crc32c(A ‖ B) from crc32c(A), crc32c(B) and B's length. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB <= 0) return crcA >>> 0;
  if (lengthB !== opLength) {
    opValue = zeroBytesOp(lengthB);
    opLength = lengthB;
  }
  return (mulModP(opValue, crcA >>> 0) ^ crcB) >>> 0;
}
