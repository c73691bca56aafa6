// ExtentFile in-process: concurrent out-of-order writes become durable in order, reads verify,
// reopen after a stop that skipped the checksum file's sync recomputes the trailing checksums
// from the data, a corrupt whole-block checksum is caught on read, and truncation and
// catch-up (replaceFrom) keep checksums consistent.
import t from 'tap';
import { mkdtempSync, openSync, writeSync, closeSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ExtentFile, BlockGroupChecksumError, BlockGroupOutOfRangeError, crc32c, setDirectWrites } from '../../lib/blockgroup/index.js';
import { appendCrcs } from '../../lib/blockgroup/extentfile.js';

const made: string[] = [];
function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}
t.teardown(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const B = 4096;

t.test('concurrent writes, verified reads, reopen', async (t) => {
  const dir = tmp('bg-ext-');
  const ext = await ExtentFile.open(dir, 0, B, true);
  const parts = Array.from({ length: 50 }, (_, i) => randomBytes(1 + ((i * 7919) % 9000)));
  let off = 0;
  const offs: number[] = [];
  for (const p of parts) {
    offs.push(off);
    off += p.length;
  }
  // Issue all at once: completions come back in any order, durability is still in order.
  await Promise.all(parts.map((p, i) => ext.write(offs[i] as number, p)));
  t.equal(ext.length, off);
  t.ok(ext.syncs < parts.length, `group commit: ${parts.length} concurrent writes made durable by ${ext.syncs} syncs`);
  for (let i = 0; i < parts.length; i++) t.ok((await ext.read(offs[i] as number, (parts[i] as Buffer).length)).equals(parts[i] as Buffer));
  await t.rejects(ext.read(off - 1, 2), BlockGroupOutOfRangeError);
  await ext.close();

  // Simulate a crash where the checksum file trails: cut it back to one entry.
  const crcPath = ExtentFile.paths(dir, 0).crc;
  const fd = openSync(crcPath, 'r+');
  closeSync(fd);
  const { truncateSync } = await import('node:fs');
  truncateSync(crcPath, 8);
  const again = await ExtentFile.open(dir, 0, B, false);
  t.equal(again.length, off, 'length comes from the data file');
  for (let i = 0; i < parts.length; i++) t.ok((await again.read(offs[i] as number, (parts[i] as Buffer).length)).equals(parts[i] as Buffer), `part ${i} after reopen`);
  await again.close();
  t.ok(statSync(crcPath).size >= Math.floor(off / B) * 8, 'checksum file completed on close');
});

t.test('one large write of odd pieces goes as pwritevs of at most 1 MiB, byte for byte', async (t) => {
  // The page-cache path (direct writes, which copy these unaligned pieces, are directwrite.test.ts's).
  setDirectWrites(false);
  t.teardown(() => setDirectWrites(true));
  const dir = tmp('bg-ext-');
  const ext = await ExtentFile.open(dir, 0, B, true);
  // 3.5 MiB + 3 bytes in pieces that straddle every 1 MiB boundary (as a collected append's
  // socket-sized views do).
  const pieces = Array.from({ length: 57 }, (_, i) => randomBytes(65_536 + (i % 5) * 3 - 6));
  const total = pieces.reduce((n, p) => n + p.length, 0);
  const before = ext.pwrites;
  await ext.write(0, pieces);
  t.equal(ext.length, total);
  t.equal(ext.pwrites - before, Math.ceil(total / (1024 * 1024)), `${total} bytes written by ${ext.pwrites - before} pwritevs`);
  t.ok((await ext.read(0, total)).equals(Buffer.concat(pieces)), 'every byte where it belongs');
  await ext.close();
  const again = await ExtentFile.open(dir, 0, B, false);
  t.ok((await again.read(0, total)).equals(Buffer.concat(pieces)), 'and after reopen, checksums agree');
  await again.close();
});

t.test('corruption is caught; truncate and replaceFrom keep checksums consistent', async (t) => {
  const dir = tmp('bg-ext-');
  const ext = await ExtentFile.open(dir, 0, B, true);
  const data = randomBytes(5 * B + 100);
  await ext.write(0, data);
  const fd = openSync(ExtentFile.paths(dir, 0).data, 'r+');
  writeSync(fd, Buffer.from([(data[B + 10] as number) ^ 1]), 0, 1, B + 10);
  closeSync(fd);
  await t.rejects(ext.read(B, 20), BlockGroupChecksumError, 'flipped byte caught');
  t.same(await ext.scrub(), [1], 'scrub names the bad block');
  await ext.truncateTo(2 * B + 50);
  t.equal(ext.length, 2 * B + 50);
  t.ok((await ext.read(2 * B, 50)).equals(data.subarray(2 * B, 2 * B + 50)), 'partial tail re-checksummed');

  // A peer's copy of blocks 1.. restores the bad block and the rest.
  const peerDir = tmp('bg-ext-');
  const peer = await ExtentFile.open(peerDir, 0, B, true);
  await peer.write(0, data);
  const copy = await peer.readBlocks(1, 10);
  await ext.replaceFrom(1, copy);
  t.equal(ext.length, data.length);
  t.ok((await ext.read(0, data.length)).equals(data), 'whole extent intact after catch-up');
  const bad = { ...copy, crcs: copy.crcs.map((c, i) => (i === 0 ? c ^ 1 : c)) };
  await t.rejects(ext.replaceFrom(1, bad), BlockGroupChecksumError, 'a copy failing its checksums is refused');
  await ext.close();
  await peer.close();
});

t.test('block checksums joined from the pieces\' checksums match the bytes, in any order', async (t) => {
  const dir = tmp('bg-ext-join-');
  const ext = await ExtentFile.open(dir, 0, B, true);
  // Pieces of every size around the block size, some given their checksums (as the primary
  // does), issued out of order so some land before the bytes in front of them.
  const sizes = [1, B - 1, 1, B, B + 1, 3 * B + 7, 5, 2 * B - 3, 100_000, 17];
  const pieces = sizes.map((n) => randomBytes(n));
  const offs: number[] = [];
  let at = 0;
  for (const p of pieces) {
    offs.push(at);
    at += p.length;
  }
  const order = pieces.map((_, i) => i).reverse();
  await Promise.all(order.map((i) => ext.write(offs[i] as number, pieces[i] as Buffer, i % 2 === 0 ? appendCrcs([pieces[i] as Buffer], offs[i] as number, B).perPiece : undefined)));
  t.same(await ext.scrub(), [], 'every block matches its checksum');
  t.equal(appendCrcs(pieces, 0, B).crc, crc32c(Buffer.concat(pieces)), 'the joined checksum of all pieces is the checksum of the bytes');
  t.ok((await ext.read(0, at)).equals(Buffer.concat(pieces)), 'and a verified read returns them');
  await ext.close();
});
