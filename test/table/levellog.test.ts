// LevelDurableLog: what is persisted comes back after reopen; a corrupt or torn tail is cut,
// not served and not fatal; a conflicting suffix never survives; a corrupt hard state refuses.
import t from 'tap';
import { LevelDurableLog } from '../../lib/table/levellog.js';
import type { Entry } from '../../lib/raft/index.js';
import { tempDirFor } from '../lib/tmp.js';

const ent = (index: number, term: number, s = `e${index}`): Entry => ({ index, term, type: 'normal', data: Buffer.from(s) });
const entryKey = (g: number, i: number): Buffer => {
  const b = Buffer.alloc(13);
  b[0] = 0x6c;
  b.writeUInt32BE(g, 1);
  b.writeBigUInt64BE(BigInt(i), 5);
  return b;
};

t.test('persist and reopen; several groups in one db', async (t) => {
  const dir = tempDirFor(t, 'levellog-');
  let log = await LevelDurableLog.open(dir);
  const g1 = await log.open(1, [1, 2, 3]);
  await log.open(2, [1]);
  t.equal(g1.lastIndex(), 1, 'bootstrap snapshot at index 1');
  await log.persist([
    { groupId: 1, entries: [ent(2, 1), ent(3, 1), ent(4, 2)], hardState: { term: 2, vote: 3, commit: 3 } },
    { groupId: 2, entries: [ent(2, 1)], hardState: { term: 1, vote: 1, commit: 2 } },
  ], true);
  await log.close();
  log = await LevelDurableLog.open(dir);
  const r1 = await log.open(1);
  const r2 = await log.open(2);
  t.equal(r1.lastIndex(), 4);
  t.same(r1.initialState().hardState, { term: 2, vote: 3, commit: 3 });
  t.same(r1.initialState().confState.voters, [1, 2, 3]);
  t.equal(Buffer.from(r1.entries(2, 5, 1e9)[2]!.data).toString(), 'e4');
  t.equal(r2.lastIndex(), 2);
  await log.close();
});

t.test('a conflicting suffix is removed in the same batch', async (t) => {
  const dir = tempDirFor(t, 'levellog-');
  let log = await LevelDurableLog.open(dir);
  await log.open(1, [1]);
  await log.persist([{ groupId: 1, entries: [ent(2, 1), ent(3, 1), ent(4, 1), ent(5, 1)] }], true);
  // A new leader overwrites from index 3 with a shorter log.
  await log.persist([{ groupId: 1, entries: [ent(3, 2, 'new3')], hardState: { term: 2, vote: 2, commit: 2 } }], true);
  await log.close();
  log = await LevelDurableLog.open(dir);
  const g = await log.open(1);
  t.equal(g.lastIndex(), 3, 'old entries 4 and 5 did not come back');
  t.equal(Buffer.from(g.entries(3, 4, 1e9)[0]!.data).toString(), 'new3');
  await log.close();
});

t.test('corrupt entry: tail truncated from there, commit clamped, node starts', async (t) => {
  const dir = tempDirFor(t, 'levellog-');
  let log = await LevelDurableLog.open(dir);
  await log.open(1, [1]);
  await log.persist([{ groupId: 1, entries: [2, 3, 4, 5, 6].map((i) => ent(i, 1)), hardState: { term: 1, vote: 1, commit: 6 } }], true);
  // Flip a byte in entry 4's record, as a bad disk would.
  const raw = Buffer.from((await log.db.get(entryKey(1, 4)))!);
  raw[raw.length - 1] = (raw[raw.length - 1] as number) ^ 0xff;
  await log.db.put(entryKey(1, 4), raw);
  await log.close();
  log = await LevelDurableLog.open(dir);
  const g = await log.open(1);
  t.equal(g.lastIndex(), 3, 'entries from the corrupt one on are gone');
  t.equal(g.initialState().hardState.commit, 3, 'commit clamped to the surviving log');
  t.match(log.reports[0], { truncatedFrom: 4, reason: /checksum/ });
  t.equal(await log.db.get(entryKey(1, 5)), undefined, 'truncated entries deleted from disk');
  await log.close();
});

t.test('torn tail: a gap or a truncated record is cut', async (t) => {
  const dir = tempDirFor(t, 'levellog-');
  let log = await LevelDurableLog.open(dir);
  await log.open(1, [1]);
  await log.persist([{ groupId: 1, entries: [2, 3].map((i) => ent(i, 1)), hardState: { term: 1, vote: 1, commit: 3 } }], true);
  await log.db.put(entryKey(1, 4), Buffer.from([1, 2])); // shorter than a header
  await log.db.put(entryKey(1, 6), Buffer.from('junk junk junk')); // after a gap
  await log.close();
  log = await LevelDurableLog.open(dir);
  const g = await log.open(1);
  t.equal(g.lastIndex(), 3);
  t.equal(log.reports[0]!.truncatedFrom, 4);
  await log.close();
});

t.test('corrupt hard state refuses to start (a lost vote could double-vote)', async (t) => {
  const dir = tempDirFor(t, 'levellog-');
  let log = await LevelDurableLog.open(dir);
  await log.open(1, [1]);
  await log.persist([{ groupId: 1, entries: [ent(2, 1)], hardState: { term: 5, vote: 2, commit: 2 } }], true);
  const hk = Buffer.alloc(5);
  hk[0] = 0x68;
  hk.writeUInt32BE(1, 1);
  const raw = Buffer.from((await log.db.get(hk))!);
  raw[6] = (raw[6] as number) ^ 0x01;
  await log.db.put(hk, raw);
  await log.close();
  log = await LevelDurableLog.open(dir);
  await t.rejects(log.open(1), /hard state of group 1 is corrupt/);
  await log.close();
});
