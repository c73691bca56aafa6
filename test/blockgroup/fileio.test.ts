// Page-cache hints (lib/blockgroup/fileio.ts) and what ExtentFile does with them: WILLNEED really
// brings a dropped range back into the page cache (seen with mincore), bad descriptors answer an
// errno instead of throwing, 'off' makes every hint a no-op; a sequential reader of an extent
// gets prefetch hints that stop at its stripe's end, a random reader gets none, and reads answer
// the same bytes with hints on and off. The write queue joins concurrent contiguous writes into
// fewer pwritev calls, keeps out-of-order writes correct, and fails queued writes once the extent
// is abandoned.
import t from 'tap';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync, fsyncSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BlockGroupSealedError, ExtentFile, fileHintsImplementation, useFileHints } from '../../lib/blockgroup/index.js';
import { dontNeed, residentBytes, willNeed } from '../../lib/blockgroup/fileio.js';
import { READ_STRIPE_BYTES } from '../../lib/blockgroup/service.js';

const MiB = 1024 * 1024;
const made: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'bg-fileio-'));
  made.push(d);
  return d;
}
t.teardown(() => {
  useFileHints('auto');
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const impl = fileHintsImplementation();
const native = impl.kind === 'native';

t.test('the addon builds here (Linux with a compiler)', { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  t.equal(impl.kind, 'native', impl.reason);
});

t.test('WILLNEED brings a dropped range back; DONTNEED drops it', { skip: !native && `no addon: ${impl.reason}` }, async (t) => {
  const path = join(tmp(), 'f');
  const fd = openSync(path, 'w+');
  try {
    writeSync(fd, randomBytes(4 * MiB), 0, 4 * MiB, 0);
    fsyncSync(fd); // clean pages can be dropped
    t.equal(await dontNeed(fd, 0, 4 * MiB), 0);
    t.equal(residentBytes(fd, 0, 4 * MiB), 0, 'dropped');
    t.equal(await willNeed(fd, MiB, 2 * MiB), 0);
    // WILLNEED returns once the reads are submitted: wait for them to land (bounded).
    let got = 0;
    for (let i = 0; i < 500 && got < 2 * MiB; i++) {
      got = residentBytes(fd, MiB, 2 * MiB) ?? 0;
      if (got < 2 * MiB) await new Promise((r) => setTimeout(r, 10));
    }
    t.equal(got, 2 * MiB, 'the hinted range is cached');
    t.equal(residentBytes(fd, 3 * MiB, MiB), 0, 'the rest is not');
  } finally {
    closeSync(fd);
  }
});

t.test('bad descriptors answer an errno; bad arguments and "off" are no-ops', { skip: !native && `no addon: ${impl.reason}` }, async (t) => {
  t.equal(await willNeed(1 << 30, 0, 4096), 9, 'EBADF');
  t.equal(await willNeed(-1, 0, 4096), 0, 'negative fd never reaches the kernel');
  t.equal(await willNeed(0, -5, 4096), 0);
  t.equal(await willNeed(0, 0, 0), 0, 'empty range');
  useFileHints('off');
  try {
    t.equal(fileHintsImplementation().kind, 'off');
    t.equal(await willNeed(1 << 30, 0, 4096), 0, 'off: nothing is called');
    t.equal(residentBytes(0, 0, 4096), undefined);
  } finally {
    useFileHints('auto');
  }
});

async function filledExtent(bytes: number): Promise<{ ext: ExtentFile; data: Buffer }> {
  const ext = await ExtentFile.open(tmp(), 0, 64 * 1024, true);
  const data = randomBytes(bytes);
  for (let o = 0; o < bytes; o += 4 * MiB) await ext.write(o, data.subarray(o, Math.min(bytes, o + 4 * MiB)));
  return { ext, data };
}

t.test('a sequential reader gets prefetch hints up to its stripe end; a random one none', async (t) => {
  const { ext, data } = await filledExtent(READ_STRIPE_BYTES + 8 * MiB);
  try {
    for (let o = 0; o < 8 * MiB; o += MiB) t.ok((await ext.read(o, MiB)).equals(data.subarray(o, o + MiB)));
    t.ok(ext.prefetches > 0, `sequential reads hinted (${ext.prefetches} hints)`);
    t.ok(ext.prefetchedTo > 8 * MiB, 'the hints reach ahead of the reader');
    for (let o = 8 * MiB; o < READ_STRIPE_BYTES; o += MiB) await ext.read(o, MiB);
    t.ok(ext.prefetchedTo <= READ_STRIPE_BYTES, `never past the stripe end (${ext.prefetchedTo})`);

    const before = ext.prefetches;
    // Random reads: far apart, not at stripe starts.
    for (const o of [20 * MiB + 4096, 3 * MiB + 8192, 30 * MiB + 12288, 11 * MiB + 4096]) t.ok((await ext.read(o, 4096)).equals(data.subarray(o, o + 4096)));
    t.equal(ext.prefetches, before, 'no hints for random reads');
  } finally {
    await ext.close();
  }
});

t.test('reads answer the same bytes with hints on and off', async (t) => {
  const { ext, data } = await filledExtent(6 * MiB);
  try {
    for (const mode of ['auto', 'off'] as const) {
      useFileHints(mode);
      for (let o = 0; o < 6 * MiB; o += MiB) t.ok((await ext.read(o, MiB)).equals(data.subarray(o, o + MiB)), `${mode} @${o / MiB} MiB`);
      t.ok((await ext.read(100, 3 * MiB)).equals(data.subarray(100, 100 + 3 * MiB)), `${mode}: unaligned`);
    }
  } finally {
    useFileHints('auto');
    await ext.close();
  }
});

t.test('the write queue joins contiguous writes and keeps out-of-order ones right', async (t) => {
  const ext = await ExtentFile.open(tmp(), 0, 4096, true);
  try {
    const parts = Array.from({ length: 200 }, (_, i) => randomBytes(1 + ((i * 7919) % 5000)));
    const offs: number[] = [];
    let off = 0;
    for (const p of parts) {
      offs.push(off);
      off += p.length;
    }
    // Issued in a shuffled order, all at once.
    const order = parts.map((_, i) => i).sort((a, b) => ((a * 37) % 200) - ((b * 37) % 200));
    await Promise.all(order.map((i) => ext.write(offs[i] as number, parts[i] as Buffer)));
    t.equal(ext.length, off);
    t.ok(ext.pwrites < parts.length / 4, `${parts.length} writes became ${ext.pwrites} pwritev calls`);
    t.ok((await ext.read(0, off)).equals(Buffer.concat(parts)), 'bytes in place');
  } finally {
    await ext.close();
  }
});

t.test('an abandoned extent fails the writes queued behind it', async (t) => {
  const ext = await ExtentFile.open(tmp(), 0, 4096, true);
  try {
    const a = ext.write(0, randomBytes(8192));
    const b = ext.write(8192, randomBytes(8192));
    ext.abandon(new BlockGroupSealedError('test: cut off'));
    const r = await Promise.allSettled([a, b]);
    t.ok(r.every((x) => x.status === 'rejected'), 'nothing waits for a sync that cannot come');
    await t.rejects(ext.writeAt(16384, randomBytes(10)), BlockGroupSealedError, 'later writes fail at once');
  } finally {
    await ext.close();
  }
});

t.test('a full write queue fails the extent instead of leaving a hole', async (t) => {
  const ext = await ExtentFile.open(tmp(), 0, 4096, true);
  try {
    // All issued in one tick: the first is in flight, the next 4096 fill the queue, the rest overflow.
    const ws = Array.from({ length: 5000 }, (_, i) => ext.write(i * 16, randomBytes(16)));
    const r = await Promise.allSettled(ws);
    const refused = r.filter((x) => x.status === 'rejected' && (x.reason as { code?: string }).code === 'BLOCKGROUP_LIMIT');
    t.ok(refused.length > 0, `${refused.length} writes refused with a typed limit error`);
    t.ok(r.every((x) => x.status === 'rejected'), 'none is acknowledged as durable past the hole');
    t.ok(ext.error, 'the extent is failed (its group gets sealed)');
  } finally {
    await ext.close();
  }
});
