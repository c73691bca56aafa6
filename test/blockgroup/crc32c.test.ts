// crc32c against published test vectors (RFC 3720 B.4, the "123456789" check value), against
// a bit-at-a-time reference on random inputs at every alignment, and crc32cCombine against
// checksumming the concatenation.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { crc32c, crc32cCombine } from '../../lib/blockgroup/index.js';

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
});
