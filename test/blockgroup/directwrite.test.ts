// Direct writes: the page-aligned middle of a large write goes to the data file with O_DIRECT
// and only the partial pages at either end through the page cache. Checked: which path every
// shape of write takes (aligned buffers as they are, unaligned ones copied, short ones and the
// ends buffered), that a seeded mix of both paths lands every byte where it belongs (through
// the extent, through a plain read of the file, and after reopening), that the file is held
// open O_DIRECT for writing, and that streamed appends through three real datanodes reach the
// disk O_DIRECT without a copy (lib/rpc assembles large frames with a page-aligned body).
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ExtentFile, BlockGroupClient, writePathBytes, setDirectWrites } from '../../lib/blockgroup/index.js';
import { alignedBuffer, Prng, randomSeed } from '../../lib/common/index.js';
import { tempDirFor } from '../lib/tmp.js';
import { directFlags, tempTakesDirect } from './direct.js';
import { makeNode, start, killAll, groupId, type Node } from './helpers.js';

t.teardown(killAll);

const O_ACCMODE = 3;
const O_RDWR = 2;

const skip = tempTakesDirect() ? false : 'the temp filesystem does not take O_DIRECT';

/** A copy of `data` in a page-aligned buffer. */
function aligned(data: Buffer): Buffer {
  const b = alignedBuffer(data.length);
  data.copy(b);
  return b;
}

function delta(before: ReturnType<typeof writePathBytes>): ReturnType<typeof writePathBytes> {
  const now = writePathBytes();
  return { direct: now.direct - before.direct, directCopied: now.directCopied - before.directCopied, buffered: now.buffered - before.buffered };
}

async function checkBytes(t: Test, dir: string, ext: ExtentFile, want: Buffer, what: string): Promise<void> {
  t.equal(ext.length, want.length, `${what}: length`);
  t.ok((await ext.read(0, want.length)).equals(want), `${what}: read back through the extent (checksums agree)`);
  t.ok(readFileSync(ExtentFile.paths(dir, ext.extentId).data).equals(want), `${what}: a plain read of the file sees the same bytes`);
}

t.test('each shape of write takes its path, byte for byte', { skip }, async (t) => {
  const dir = tempDirFor(t, 'bg-dw-');
  const ext = await ExtentFile.open(dir, 0, 64 * 1024, true);
  const parts: Buffer[] = [];
  let at = 0;
  const write = async (data: Buffer | Buffer[]): Promise<ReturnType<typeof writePathBytes>> => {
    const before = writePathBytes();
    await ext.write(at, data);
    for (const p of Array.isArray(data) ? data : [data]) {
      parts.push(p);
      at += p.length;
    }
    return delta(before);
  };
  const MiB = 1024 * 1024;
  t.same(await write(aligned(randomBytes(MiB))), { direct: MiB, directCopied: 0, buffered: 0 }, 'an aligned 1 MiB buffer at an aligned offset: O_DIRECT as it is');
  t.same(await write([aligned(randomBytes(512 * 1024)), aligned(randomBytes(256 * 1024))]), { direct: 768 * 1024, directCopied: 0, buffered: 0 }, 'aligned pieces: one O_DIRECT write, no copy');
  const odd = Buffer.concat([Buffer.alloc(1), randomBytes(300_001)]).subarray(1); // not aligned in memory
  t.same(await write(odd), { direct: 0, directCopied: 299_008, buffered: 993 }, 'an unaligned buffer: its whole pages copied and O_DIRECT, the partial page through the page cache');
  t.same(await write(randomBytes(100)), { direct: 0, directCopied: 0, buffered: 100 }, 'a short write: page cache');
  const mid = await write(randomBytes(200_000));
  const head = 4096 - (at - 200_000) % 4096;
  const body = Math.floor((200_000 - head) / 4096) * 4096;
  t.same(mid, { direct: 0, directCopied: body, buffered: 200_000 - body }, 'at an unaligned offset: the ends buffered, the pages between O_DIRECT');
  t.same(await write(randomBytes(60 * 1024)), { direct: 0, directCopied: 0, buffered: 60 * 1024 }, 'less than 64 KiB of whole pages: page cache');
  // An aligned piece then an unaligned one: the first as it is, the rest copied.
  const lead = 4096 - (at % 4096);
  await write(randomBytes(lead));
  t.equal(at % 4096, 0, 'back at a page boundary');
  t.same(await write([aligned(randomBytes(128 * 1024)), Buffer.concat([Buffer.alloc(3), randomBytes(70_000)]).subarray(3)]), { direct: 128 * 1024, directCopied: 69_632, buffered: 368 }, 'aligned then unaligned pieces: the first as it is, then copies');
  t.ok(directFlags(ExtentFile.paths(dir, 0).data).some((f) => (f & O_ACCMODE) === O_RDWR), 'the data file is held open O_DIRECT for writing');
  const want = Buffer.concat(parts);
  await checkBytes(t, dir, ext, want, 'after the shapes');
  await ext.close();
  const again = await ExtentFile.open(dir, 0, 64 * 1024, false);
  await checkBytes(t, dir, again, want, 'after reopening');
  await again.close();
});

t.test('a seeded mix of large and small writes, concurrent and in order, lands every byte', { skip }, async (t) => {
  const seed = randomSeed();
  t.comment(`seed ${seed} (replay: set it below)`);
  const rng = new Prng(seed);
  const dir = tempDirFor(t, 'bg-dw-mix-');
  const ext = await ExtentFile.open(dir, 0, 64 * 1024, true);
  const parts: Buffer[] = [];
  let at = 0;
  const before = writePathBytes();
  for (let round = 0; round < 12; round++) {
    // A burst of writes in flight at once (as concurrent appends are), of every size class.
    // Issued in a shuffled order, as appends placed in order may reach the disk out of it.
    const burst: [number, Buffer][] = [];
    for (let k = rng.range(1, 5); k > 0; k--) {
      const n = rng.chance(0.3) ? rng.range(1, 5000) : rng.range(60_000, 1_500_000);
      const raw = randomBytes(n);
      const data = rng.chance(0.5) ? aligned(raw) : raw;
      burst.push([at, data]);
      parts.push(data);
      at += n;
    }
    const order = burst.map((w) => ({ w, key: rng.float() })).sort((x, y) => x.key - y.key);
    await Promise.all(order.map(({ w }) => ext.write(w[0], w[1])));
  }
  const d = delta(before);
  t.equal(d.direct + d.directCopied + d.buffered, at, `seed ${seed}: every byte written once, by one path`);
  t.ok(d.direct + d.directCopied > 0 && d.buffered > 0, `seed ${seed}: both paths used (${JSON.stringify(d)})`);
  const want = Buffer.concat(parts);
  await checkBytes(t, dir, ext, want, `seed ${seed}`);
  await ext.close();
  const again = await ExtentFile.open(dir, 0, 64 * 1024, false);
  await checkBytes(t, dir, again, want, `seed ${seed}, reopened`);
  await again.close();
});

t.test('turned off, every byte goes through the page cache', async (t) => {
  setDirectWrites(false);
  t.teardown(() => setDirectWrites(true));
  const dir = tempDirFor(t, 'bg-dw-off-');
  const ext = await ExtentFile.open(dir, 0, 64 * 1024, true);
  const data = aligned(randomBytes(2 * 1024 * 1024));
  const before = writePathBytes();
  await ext.write(0, data);
  t.same(delta(before), { direct: 0, directCopied: 0, buffered: data.length });
  t.same(directFlags(ExtentFile.paths(dir, 0).data), [], 'no O_DIRECT descriptor');
  await checkBytes(t, dir, ext, data, 'off');
  await ext.close();
});

async function writtenBytes(n: Node): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${n.adminPort}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^blockgroup_written_bytes\{path="([a-z_]+)"[^}]*\} (\d+)$/gm)) out[m[1] as string] = Number(m[2]);
  return out;
}

t.test('streamed appends through three datanodes reach every disk O_DIRECT, uncopied', { skip }, async (t) => {
  for (const on of [true, false]) {
    const nodes = await Promise.all([0, 1, 2].map(() => makeNode(['--direct-writes', String(on)])));
    await Promise.all(nodes.map(start));
    const bg = new BlockGroupClient({ deadlineMs: 20_000 });
    const g = await bg.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) });
    bg.addGroup(g);
    const chunk = randomBytes(1024 * 1024);
    const keys = [];
    for (let i = 0; i < 8; i++) keys.push(await bg.append(chunk));
    let bad = 0;
    for (const n of nodes) for (const k of keys) if (!(await bg.readFrom(n.address, k)).equals(chunk)) bad++;
    t.equal(bad, 0, `direct writes ${on}: every replica reads back every append`);
    const total = 8 * chunk.length;
    for (const [i, n] of nodes.entries()) {
      const w = await writtenBytes(n);
      if (on) t.same(w, { direct: total, direct_copied: 0, buffered: 0 }, `replica ${i}: all O_DIRECT, none copied`);
      else t.same(w, { direct: 0, direct_copied: 0, buffered: total }, `replica ${i}: all through the page cache`);
    }
    await bg.close();
  }
});
