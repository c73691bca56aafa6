// crc32c (both the SSE4.2 addon and the TypeScript path) against published test vectors (RFC 3720
// B.4, the "123456789" check value), the addon against the TypeScript path on random ranges, against
// a bit-at-a-time reference on random inputs at every alignment, and crc32cCombine against
// checksumming the concatenation.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { crc32c, crc32cCombine, crc32cImplementation, crc32cNative, crc32cTs, useCrc32c } from '../../lib/blockgroup/index.js';

function reference(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

t.test('published vectors', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283, 'check value');
  t.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa, 'RFC 3720: 32 bytes of zeros');
  t.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43, 'RFC 3720: 32 bytes of ones');
  t.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => i))), 0x46dd794e, 'RFC 3720: incrementing');
  t.equal(crc32c(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i))), 0x113fdb5c, 'RFC 3720: decrementing');
  t.equal(crc32c(Buffer.alloc(0)), 0, 'empty');
});

t.test('matches the bitwise reference at every length and alignment', async (t) => {
  const big = randomBytes(4096 + 16);
  let bad = 0;
  for (let off = 0; off < 8; off++) {
    for (const len of [0, 1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4096]) {
      const view = big.subarray(off, off + len);
      if (crc32c(view) !== reference(view)) bad++;
    }
  }
  t.equal(bad, 0);
});

t.test('extend and combine', async (t) => {
  for (let i = 0; i < 50; i++) {
    const a = randomBytes(Math.floor(Math.random() * 3000));
    const b = randomBytes(Math.floor(Math.random() * 3000));
    const whole = crc32c(Buffer.concat([a, b]));
    t.equal(crc32c(b, crc32c(a)), whole);
    t.equal(crc32cCombine(crc32c(a), crc32c(b), b.length), whole);
  }
  // Long second parts (the block and append sizes the write path joins), alternating lengths so
  // the cached operator is rebuilt, plus an empty one.
  let bad = 0;
  for (const n of [65_536, 1 << 20, 65_536, 3_000_001, 1, 0, 4096, 65_535]) {
    const a = randomBytes(1 + Math.floor(Math.random() * 5000));
    const b = randomBytes(n);
    if (crc32cCombine(crc32c(a), crc32c(b), b.length) !== crc32c(Buffer.concat([a, b]))) bad++;
  }
  t.equal(bad, 0, 'long and empty second parts');
});

// The SSE4.2 addon against the TypeScript path it replaces (and which stays the fallback).
t.test('native and TypeScript paths agree', async (t) => {
  const impl = crc32cImplementation();
  t.comment(`crc32c implementation in use: ${impl.kind} (${impl.reason})`);
  const native = crc32cNative();
  if (!native) {
    t.pass(`skipped: addon unavailable here (${impl.reason})`);
    return;
  }
  t.equal(impl.kind, 'native', 'crc32c() uses the addon when it loads');
  t.equal(native(Buffer.from('123456789'), 0, 0, 9), 0xe3069283, 'check value');
  t.equal(native(Buffer.alloc(32, 0), 0, 0, 32), 0x8a9136aa, 'RFC 3720: zeros');
  t.equal(native(Buffer.alloc(32, 0xff), 0, 0, 32), 0x62a8ab43, 'RFC 3720: ones');
  t.equal(native(Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0, 0, 32), 0x46dd794e, 'RFC 3720: incrementing');
  t.equal(native(Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0, 0, 32), 0x113fdb5c, 'RFC 3720: decrementing');
  t.equal(native(Buffer.alloc(0), 0, 0, 0), 0, 'empty');
  // Random buffers, offsets, lengths and seeds; lengths around the three-way stream size
  // (3 x 1024) and its multiples hit the join of the interleaved streams.
  const big = randomBytes(64 * 1024 + 64);
  let bad = 0;
  let n = 0;
  const lengths = [1, 7, 8, 9, 127, 128, 129, 1023, 1024, 3071, 3072, 3073, 3080, 6144, 6151, 9216, 65536];
  for (let i = 0; i < 400; i++) lengths.push(Math.floor(Math.random() * 64 * 1024));
  for (const len of lengths) {
    for (const off of [0, 1, 3, 5, 8, Math.floor(Math.random() * 64)]) {
      const seed = Math.random() < 0.5 ? 0 : (Math.random() * 2 ** 32) >>> 0;
      if (native(big, seed, off, off + len) !== crc32cTs(big, seed, off, off + len)) bad++;
      if (crc32c(big, seed, off, off + len) !== crc32cTs(big, seed, off, off + len)) bad++;
      n++;
    }
  }
  t.equal(bad, 0, `${n} random ranges agree`);
  // Extending across calls gives the one-pass result on both paths.
  const a = randomBytes(5000);
  t.equal(native(a, native(a, 0, 0, 1234), 1234, 5000), crc32cTs(a), 'continued checksum');
  t.throws(() => native(a, 0, 10, 5001), 'a range past the end is refused, not read');
  t.throws(() => native(a, 0, 20, 10), 'a reversed range is refused');
  t.throws(() => crc32c(a, 0, 0, 6000), 'crc32c() checks the range too');
});

t.test('useCrc32c(ts) forces the TypeScript path; auto brings the addon back', async (t) => {
  const hadNative = crc32cNative() !== undefined;
  useCrc32c('ts');
  t.teardown(() => useCrc32c('auto'));
  t.equal(crc32cImplementation().kind, 'ts');
  t.equal(crc32cNative(), undefined);
  const b = randomBytes(100_000);
  const viaTs = crc32c(b);
  t.equal(viaTs, crc32cTs(b));
  useCrc32c('auto');
  t.equal(crc32cImplementation().kind, hadNative ? 'native' : 'ts');
  t.equal(crc32c(b), viaTs, 'same value either way');
});
