// Drop behind: bytes an extent made durable leave the page cache when the switch is on, and
// stay when it is off (the default). Residency is read with util-linux fincore (mincore(2)).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ExtentFile, dropFromPageCache, pageCacheDropSupport, setDirectWrites, setDropBehindWrites } from '../../lib/blockgroup/index.js';
import { tempDirFor } from '../lib/tmp.js';

const resident = (path: string): number => {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim()) : NaN;
};
const haveFincore = spawnSync('fincore', ['--version']).status === 0;
const support = pageCacheDropSupport();

t.test('dropFromPageCache drops a synced file range', { skip: !haveFincore ? 'no fincore (util-linux)' : !support.ok ? support.reason : false }, async (t) => {
  const dir = tempDirFor(t, 'bg-pc-');
  const f = join(dir, 'f');
  const fh = await fsp.open(f, 'w+');
  await fh.write(randomBytes(8 << 20), 0, 8 << 20, 0);
  await fh.datasync();
  t.ok(resident(f) >= 7 << 20, `written and synced: resident (${resident(f)} bytes)`);
  t.ok(dropFromPageCache(fh.fd, 0, 4 << 20), 'the call succeeds');
  const half = resident(f);
  t.ok(half <= (4 << 20) + 65536 && half >= 3 << 20, `the first half dropped, the second kept (${half} bytes resident)`);
  t.notOk(dropFromPageCache(fh.fd, 0, 0), 'an empty range is no call');
  t.notOk(dropFromPageCache(-1, 0, 4096), 'a bad fd fails without throwing');
  await fh.close();
});

t.test('ExtentFile: with drop-behind on, durable bytes leave the cache; off, they stay', { skip: !haveFincore ? 'no fincore (util-linux)' : !support.ok ? support.reason : false }, async (t) => {
  // The page-cache path: with direct writes large writes would not be cached to begin with.
  setDirectWrites(false);
  t.teardown(() => {
    setDropBehindWrites(false);
    setDirectWrites(true);
  });
  for (const on of [false, true]) {
    setDropBehindWrites(on);
    const dir = tempDirFor(t, 'bg-pc-');
    const ext = await ExtentFile.open(dir, 0, 4096, true);
    const data = randomBytes(6 << 20);
    await ext.write(0, data);
    const res = resident(ExtentFile.paths(dir, 0).data);
    if (on) t.ok(res <= 65536, `on: ${res} bytes of 6 MiB still cached`);
    else t.ok(res >= 5 << 20, `off: ${res} bytes of 6 MiB cached`);
    t.ok((await ext.read(0, data.length)).equals(data), 'and the bytes read back verified either way');
    await ext.close();
  }
});

t.test('ExtentFile: direct writes leave the page cache alone; their partial pages are dropped behind', { skip: !haveFincore ? 'no fincore (util-linux)' : !support.ok ? support.reason : false }, async (t) => {
  t.teardown(() => setDropBehindWrites(false));
  for (const on of [false, true]) {
    setDropBehindWrites(on);
    const dir = tempDirFor(t, 'bg-pc-direct-');
    const ext = await ExtentFile.open(dir, 0, 4096, true);
    // 6 MiB from an odd offset: whole pages go O_DIRECT (never cached), the partial pages at
    // either end through the page cache.
    const lead = randomBytes(1000);
    const data = randomBytes(6 << 20);
    await ext.write(0, lead);
    await ext.write(lead.length, data);
    const res = resident(ExtentFile.paths(dir, 0).data);
    if (on) t.ok(res <= 2 * 4096, `drop-behind on: ${res} bytes cached (a partial page may stay)`);
    else t.ok(res > 0 && res <= 3 * 4096, `drop-behind off: only the partial pages cached (${res} bytes)`);
    t.ok((await ext.read(0, lead.length + data.length)).equals(Buffer.concat([lead, data])), 'bytes read back verified');
    await ext.close();
  }
});
