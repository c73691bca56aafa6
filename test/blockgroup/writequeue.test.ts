// ExtentFile's write queue: concurrent contiguous writes are joined into fewer pwritev calls
// and out-of-order ones still land right; an abandoned extent fails the writes queued behind it;
// a full queue fails the extent (a hole nothing may wait behind) with a typed limit error.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BlockGroupSealedError, ExtentFile } from '../../lib/blockgroup/index.js';

const made: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'bg-wq-'));
  made.push(d);
  return d;
}
t.teardown(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
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
