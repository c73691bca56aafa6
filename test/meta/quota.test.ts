// The partition side of the volume quota and of relatime: the `quota` command (what a
// metanode proposes from the master's answer) makes writes that grow a file fail with ENOSPC
// and nothing else; MetaClient then fails growing writes at once until a check says the
// volume has room again; an atime-only setattr leaves ctime alone.
import t from 'tap';
import { LocalPartition, ROOT_INO, SETATTR_ATIME, SETATTR_ATIME_ONLY, SETATTR_MODE, SETATTR_SIZE } from '../../lib/meta/index.js';
import { leaderOf, waitFor } from '../table/cluster.js';
import { startMeta, codeOf } from './harness.js';

const h = await startMeta();
t.teardown(() => h.close());
let clock = 1_700_000_000_000;
const c = h.client({ now: () => clock });
const leader = await waitFor(() => leaderOf(h.groups.get(100)!), 'partition leader');
const quota = (capacity: number, full: boolean) => new LocalPartition(() => leader).exec({ op: 'quota', capacity, full, now: { sec: Math.floor(clock / 1000), nsec: 0 } });
const key = (fileOffset: number, length: number, extentId = 1) => ({ groupId: 1, extentId, offset: fileOffset, length, crc: 0, fileOffset });

t.test('a full partition refuses growth only', async (t) => {
  const f = await c.create(ROOT_INO, 'q', 0o644);
  await c.appendExtents(f.ino, [key(0, 1000)]);
  let st = await c.statfs();
  t.equal(st.capacity, 0, 'no quota yet');
  t.equal(st.full, false);
  const r = await quota(1000, true);
  t.equal(r.partition?.capacityBytes, 1000);
  st = await c.statfs();
  t.equal(st.capacity, 1000, 'statfs carries the capacity');
  t.equal(st.full, true);
  t.equal(st.bytes, 1000);

  t.equal(await codeOf(c.appendExtents(f.ino, [key(1000, 10, 2)])), 'ENOSPC', 'an append past the end fails');
  t.equal((await c.getattr(f.ino)).size, 1000, 'nothing of the refused entry applied');
  t.equal(c.spaceFull, true, 'the client now knows');
  t.equal(await c.checkFull(), true, 'and does not ask again within a second');
  const over = await c.appendExtents(f.ino, [key(0, 500, 3)]);
  t.equal(over.inode.size, 1000, 'an overwrite inside the file still works');
  t.equal(over.freed.length, 1, 'and frees what it replaced');
  t.equal(await codeOf(c.appendExtents(f.ino, [key(0, 10, 4)], { size: 2000 })), 'ENOSPC', 'an explicit size growth fails too');
  t.equal((await c.setattr(f.ino, { valid: SETATTR_SIZE, size: 100 })).size, 100, 'shrinking works');
  t.equal((await c.create(ROOT_INO, 'empty', 0o644)).size, 0, 'creating an empty file works (as on a full local disk with inodes left)');

  // Raised: the partition hears it; the client learns it at its next check (a second later).
  await quota(1 << 20, false);
  t.equal(await c.checkFull(), true, 'within the second the last answer stands');
  clock += 1001;
  t.equal(await c.checkFull(), false, 'the check sees the room');
  t.equal(c.spaceFull, false);
  t.equal((await c.appendExtents(f.ino, [key(100, 5000, 5)])).inode.size, 5100, 'growth works again');
});

t.test('an atime-only update leaves ctime; a plain atime update sets it', async (t) => {
  clock += 5000;
  const f = await c.create(ROOT_INO, 'at', 0o644);
  const ctime = f.ctime;
  clock += 5000;
  const a = await c.setattr(f.ino, { valid: SETATTR_ATIME | SETATTR_ATIME_ONLY, atime: { sec: Math.floor(clock / 1000) + 7, nsec: 5 } });
  t.same([a.atime?.sec, a.atime?.nsec], [Math.floor(clock / 1000) + 7, 5], 'atime set');
  t.same(a.ctime, ctime, 'ctime unchanged');
  t.same(a.mtime, f.mtime, 'mtime unchanged');
  const b = await c.setattr(f.ino, { valid: SETATTR_ATIME, atime: { sec: 1, nsec: 0 } });
  t.equal(b.ctime?.sec, Math.floor(clock / 1000), 'utimes-style update sets ctime');
  const m = await c.setattr(f.ino, { valid: SETATTR_MODE | SETATTR_ATIME_ONLY, mode: 0o600 });
  t.equal(m.ctime?.sec, Math.floor(clock / 1000), 'the bit alone does not spare ctime of other changes');
});

