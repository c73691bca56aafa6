// ExtentCache on its own: bytes by extent address, exact coverage (a partly cached range is a
// miss, never a guess), unions of touching ranges, the byte bound, and shared fetches.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { ExtentCache } from '../../lib/fs/index.js';
import { Prng } from '../../lib/common/index.js';

const KB = 1024;

t.test('what was put is copied out; what was not is a miss', async (t) => {
  const c = new ExtentCache(1024 * KB, 64 * KB);
  const data = randomBytes(200 * KB);
  c.put(1, 2, 10 * KB, data); // spans four blocks, unaligned at both ends
  const out = Buffer.alloc(200 * KB);
  t.ok(c.copyOut(1, 2, 10 * KB, 200 * KB, out, 0), 'the whole range');
  t.ok(out.equals(data));
  const part = Buffer.alloc(70 * KB);
  t.ok(c.copyOut(1, 2, 50 * KB, 70 * KB, part, 0), 'a range across a block boundary');
  t.ok(part.equals(data.subarray(40 * KB, 110 * KB)));
  t.notOk(c.copyOut(1, 2, 9 * KB, 4 * KB, part, 0), 'one byte before the range: miss');
  t.notOk(c.copyOut(1, 2, 200 * KB, 11 * KB, part, 0), 'one byte past the range: miss');
  t.notOk(c.copyOut(1, 3, 10 * KB, 4 * KB, part, 0), 'another extent: miss');
  t.notOk(c.copyOut(2, 2, 10 * KB, 4 * KB, part, 0), 'another group: miss');
  t.ok(c.copyOut(1, 2, 0, 0, part, 0), 'an empty range is trivially there');
});

t.test('touching ranges in one block join; a range after a gap replaces', async (t) => {
  const c = new ExtentCache(1024 * KB, 64 * KB);
  const a = randomBytes(8 * KB);
  const b = randomBytes(8 * KB);
  c.put(5, 1, 0, a);
  c.put(5, 1, 8 * KB, b); // appended right after: one block holds [0, 16K)
  const out = Buffer.alloc(16 * KB);
  t.ok(c.copyOut(5, 1, 0, 16 * KB, out, 0));
  t.ok(out.equals(Buffer.concat([a, b])));
  const d = randomBytes(4 * KB);
  c.put(5, 1, 32 * KB, d); // a gap: the block now holds [32K, 36K) only
  t.notOk(c.copyOut(5, 1, 0, 4 * KB, out, 0), 'the older range was replaced');
  t.ok(c.copyOut(5, 1, 32 * KB, 4 * KB, out, 0));
  t.ok(out.subarray(0, 4 * KB).equals(d));
});

t.test('memory stays under the bound, least recently used go first', async (t) => {
  const c = new ExtentCache(256 * KB, 64 * KB); // 4 blocks
  const rng = new Prng(3);
  for (let i = 0; i < 200; i++) c.put(1, rng.int(50), rng.int(8) * 64 * KB + rng.int(1000), randomBytes(1 + rng.int(100 * KB)));
  t.ok(c.stats.bytes <= 256 * KB, `held ${c.stats.bytes} bytes`);
  t.ok(c.stats.blocks <= 4);
  const keep = randomBytes(64 * KB);
  c.put(9, 9, 0, keep);
  const out = Buffer.alloc(64 * KB);
  for (let i = 0; i < 3; i++) {
    c.put(8, i, 0, randomBytes(64 * KB));
    t.ok(c.copyOut(9, 9, 0, 64 * KB, out, 0), 'recently used: kept'); // refreshes it
  }
  c.put(8, 10, 0, randomBytes(64 * KB));
  c.put(8, 11, 0, randomBytes(64 * KB));
  c.put(8, 12, 0, randomBytes(64 * KB));
  c.put(8, 13, 0, randomBytes(64 * KB));
  t.notOk(c.copyOut(9, 9, 0, 64 * KB, out, 0), 'four newer blocks evicted it');
});

t.test('concurrent fetches of one block read it once; a failed fetch is not kept', async (t) => {
  const c = new ExtentCache(1024 * KB, 64 * KB);
  const data = randomBytes(64 * KB);
  let reads = 0;
  const read = async (): Promise<Buffer> => {
    reads++;
    await new Promise((r) => setTimeout(r, 10));
    return data;
  };
  const got = await Promise.all(Array.from({ length: 5 }, () => c.fetch(3, 4, 0, 64 * KB, read)));
  t.equal(reads, 1);
  for (const g of got) t.ok(g.equals(data));
  const out = Buffer.alloc(64 * KB);
  t.ok(c.copyOut(3, 4, 0, 64 * KB, out, 0), 'cached after the fetch');
  await t.rejects(c.fetch(3, 5, 0, 64 * KB, async () => Promise.reject(new Error('boom'))), /boom/);
  t.notOk(c.copyOut(3, 5, 0, 64 * KB, out, 0), 'nothing cached for a failed fetch');
  let again = 0;
  await c.fetch(3, 5, 0, 64 * KB, async () => (again++, data));
  t.equal(again, 1, 'the next fetch reads again');
});

t.test('putIfRoom never evicts', async (t) => {
  const c = new ExtentCache(256 * KB, 64 * KB);
  const kept = randomBytes(192 * KB);
  c.put(1, 1, 0, kept);
  c.putIfRoom(1, 2, 0, randomBytes(128 * KB)); // would need an eviction: skipped
  const out = Buffer.alloc(192 * KB);
  t.ok(c.copyOut(1, 1, 0, 192 * KB, out, 0), 'what was there stays');
  t.notOk(c.copyOut(1, 2, 0, 64 * KB, out, 0), 'the scan was not cached');
  c.putIfRoom(1, 3, 0, randomBytes(64 * KB)); // fits
  t.ok(c.copyOut(1, 3, 0, 64 * KB, out, 0), 'cached while there is room');
});
