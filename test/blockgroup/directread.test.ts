// O_DIRECT reads: an extent on a filesystem that takes O_DIRECT reads large ranges through an
// O_DIRECT descriptor (seen in /proc/self/fdinfo), byte for byte for every offset and length shape,
// still catches bytes flipped on disk, and reads through the page cache when turned off.
// Pooled read buffers are page-aligned, as O_DIRECT needs.
import t, { type Test } from 'tap';
import { openSync, writeSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { BlockGroupChecksumError, ExtentFile, setDirectReads, setDirectWrites } from '../../lib/blockgroup/index.js';
import { BufferPool } from '../../lib/blockgroup/bufferpool.js';
import { isAligned } from '../../lib/common/index.js';
import { tempDirFor } from '../lib/tmp.js';
import { directFlags, tempTakesDirect } from './direct.js';

/** Whether this process holds `path` open with O_DIRECT. */
const openDirect = (path: string): boolean => directFlags(path).length > 0;

async function exercise(t: Test, dir: string): Promise<{ ext: ExtentFile; data: Buffer }> {
  const ext = await ExtentFile.open(dir, 0, 64 * 1024, true);
  // Pieces of odd sizes, so blocks and the tail are partial.
  const data = randomBytes(3 * 1024 * 1024 + 12_345);
  let at = 0;
  for (const n of [1, 100_000, 65_536, 1_048_576, 7, data.length]) {
    const end = Math.min(data.length, at + n);
    if (end > at) await ext.write(at, data.subarray(at, end));
    at = end;
  }
  const pool = new BufferPool();
  const shapes: [number, number][] = [[0, 1], [0, data.length], [65_536, 65_536], [65_535, 2], [4096, 4096], [1_000_003, 777_777], [data.length - 1, 1], [data.length - 70_000, 70_000], [2_000_000, 1_048_576], [data.length - 600_000, 600_000], [524_288, 524_288]];
  let bad = 0;
  for (const [off, len] of shapes) {
    for (const pooled of [false, true]) {
      let held: Buffer | undefined;
      const got = await ext.read(off, len, pooled ? (n) => (held = pool.take(n)).subarray(0, n) : undefined);
      if (!got.equals(data.subarray(off, off + len))) bad++;
      if (held) pool.release(held);
    }
  }
  t.equal(bad, 0, `${shapes.length * 2} reads of every shape, byte for byte`);
  return { ext, data };
}

const dataPath = (dir: string): string => ExtentFile.paths(dir, 0).data;

t.test('pooled read buffers are page-aligned', async (t) => {
  const pool = new BufferPool();
  const bufs = [1, 4096, 65_536, 1_000_000, 4 << 20, 5 << 20].map((n) => pool.take(n));
  t.ok(bufs.every((b) => isAligned(b)), 'every class, and a buffer past the largest class');
});

const directHere = tempTakesDirect();

t.test('reads go through O_DIRECT where the filesystem takes it', { skip: directHere ? false : 'the temp filesystem does not take O_DIRECT' }, async (t) => {
  const dir = tempDirFor(t, 'bg-direct-');
  const { ext, data } = await exercise(t, dir);
  t.ok(openDirect(dataPath(dir)), 'an O_DIRECT descriptor of the data file is open');
  // A byte flipped on disk (through the page cache: O_DIRECT reads write dirty pages back first).
  const fd = openSync(dataPath(dir), 'r+');
  writeSync(fd, Buffer.from([data[200_000]! ^ 0xff]), 0, 1, 200_000);
  closeSync(fd);
  // Reads of 512 KiB and more go O_DIRECT; smaller ones through the page cache. Both see it.
  await t.rejects(ext.read(0, 1_048_576), BlockGroupChecksumError, 'a large read: the flipped byte fails its block checksum');
  await t.rejects(ext.read(196_608, 65_536), BlockGroupChecksumError, 'a small read: the same');
  t.ok((await ext.read(1_048_576, 1_048_576)).equals(data.subarray(1_048_576, 2_097_152)), 'other blocks still read');
  await ext.close();
  t.notOk(openDirect(dataPath(dir)), 'closed with the extent');
});

t.test('turned off, reads go through the page cache', async (t) => {
  // Large writes open the O_DIRECT twin too (directwrite.test.ts): off as well, to see reads alone.
  setDirectReads(false);
  setDirectWrites(false);
  t.teardown(() => {
    setDirectReads(true);
    setDirectWrites(true);
  });
  const dir = tempDirFor(t, 'bg-direct-off-');
  const { ext } = await exercise(t, dir);
  t.notOk(openDirect(dataPath(dir)), 'no O_DIRECT descriptor');
  await ext.close();
});
