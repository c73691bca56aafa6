// LevelRaftStorage: durability across reopen, group commit over many groups in one db,
// compaction, and detection + truncation of corrupt or torn records.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng } from '../../lib/common/index.js';
import { crc32, encodeEntry, entryKey, LevelRaftDb, RawNode, type Entry } from '../../lib/raft/index.js';
import { crc32Fallback } from '../../lib/raft/crc32.js';

type T = Pick<typeof t, 'equal' | 'ok' | 'same' | 'fail' | 'teardown'>;

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'raft-level-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const ent = (index: number, term = 1, fill = index): Entry => ({ term, index, type: 'normal', data: new Uint8Array(16).fill(fill & 0xff) });
const range = (lo: number, hi: number, term = 1) => Array.from({ length: hi - lo + 1 }, (_, i) => ent(lo + i, term));

t.test('crc32: native and fallback agree', async (t) => {
  const prng = new Prng(1);
  for (let i = 0; i < 20; i++) {
    const b = new Uint8Array(prng.int(300));
    for (let j = 0; j < b.length; j++) b[j] = prng.int(256);
    t.equal(crc32Fallback(b), crc32(b));
  }
  t.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926, 'the standard check value');
});

t.test('reopen: entries, hard state and snapshot survive', async (t) => {
  const dir = tmp(t);
  let db = await LevelRaftDb.open(dir);
  let s = await db.openGroup(5, [1, 2, 3]);
  t.equal(s.firstIndex(), 2);
  t.same(s.initialState().confState.voters, [1, 2, 3]);
  await s.persistReady({ entries: range(2, 10), hardState: { term: 3, vote: 2, commit: 7 } });
  // An overwrite of a suffix with a shorter one deletes the stale tail.
  await s.persistReady({ entries: range(6, 8, 4), hardState: { term: 4, vote: 0, commit: 7 } });
  t.equal(s.lastIndex(), 8);
  await db.close();
  db = await LevelRaftDb.open(dir);
  s = await db.openGroup(5);
  t.equal(s.lastIndex(), 8);
  t.equal(s.term(5), 1);
  t.equal(s.term(6), 4);
  t.same(s.hardState(), { term: 4, vote: 0, commit: 7 });
  t.same(s.recovery.problems, [], 'clean open');
  t.equal(s.recovery.truncatedFromIndex, undefined);
  await db.close();
});

t.test('group commit: many groups share one db and one synced batch', async (t) => {
  const dir = tmp(t);
  let db = await LevelRaftDb.open(dir);
  const groups = await Promise.all([1, 2, 3, 1000].map((g) => db.openGroup(g, [1])));
  let batches = 0;
  const orig = db.db.batch.bind(db.db);
  (db.db as unknown as { batch: unknown }).batch = (ops: unknown, opts: { sync?: boolean }) => {
    batches++;
    t.equal(opts.sync, true, 'synced');
    return orig(ops as never, opts as never);
  };
  await db.persist(groups.map((g, i) => ({ storage: g, entries: range(2, 2 + i), hardState: { term: 1, vote: 0, commit: 1 } })));
  t.equal(batches, 1, 'one batch for four groups');
  await db.close();
  db = await LevelRaftDb.open(dir);
  for (const [i, g] of [1, 2, 3, 1000].entries()) {
    const s = await db.openGroup(g);
    t.equal(s.lastIndex(), 2 + i, `group ${g} has its own log`);
  }
  await db.close();
});

t.test('compaction deletes compacted entries and keeps the snapshot', async (t) => {
  const dir = tmp(t);
  let db = await LevelRaftDb.open(dir);
  let s = await db.openGroup(1, [1]);
  await s.persistReady({ entries: range(2, 30), hardState: { term: 1, vote: 0, commit: 30 } });
  await s.createSnapshotAndCompact(25, { voters: [1], learners: [] }, new TextEncoder().encode('img'), 20);
  t.equal(s.firstIndex(), 21);
  let keys = 0;
  for await (const k of db.db.keys({ gte: entryKey(1, 0), lte: entryKey(1, 1e9) })) {
    keys++;
    t.ok(k.readBigUInt64BE(10) >= 21n, 'no compacted key left');
  }
  t.equal(keys, 10, 'entries 21..30 remain');
  await db.close();
  db = await LevelRaftDb.open(dir);
  s = await db.openGroup(1);
  t.equal(s.snapshot().metadata.index, 25);
  t.equal(new TextDecoder().decode(s.snapshot().data), 'img');
  t.equal(s.firstIndex(), 26, 'entries up to the snapshot are not needed after reopen');
  t.equal(s.lastIndex(), 30);
  await db.close();
});

async function corruptCase(t: T, mutate: (db: LevelRaftDb) => Promise<void>, expectTruncatedFrom: number, expectLast = expectTruncatedFrom - 1) {
  const dir = tmp(t);
  let db = await LevelRaftDb.open(dir);
  const s = await db.openGroup(9, [1]);
  await s.persistReady({ entries: range(2, 20), hardState: { term: 1, vote: 1, commit: 20 } });
  // A second group in the same db must be untouched by group 9's repair.
  const other = await db.openGroup(10, [1]);
  await other.persistReady({ entries: range(2, 20), hardState: { term: 1, vote: 1, commit: 20 } });
  await mutate(db);
  await db.close();
  db = await LevelRaftDb.open(dir);
  const r = await db.openGroup(9);
  t.equal(r.recovery.truncatedFromIndex, expectTruncatedFrom, 'truncation point');
  t.equal(r.lastIndex(), expectLast, 'log ends before the bad record');
  t.ok(r.recovery.problems.length > 0, `reported: ${r.recovery.problems.join('; ')}`);
  t.equal(r.hardState().commit, expectLast, 'commit lowered to what survives');
  for (let i = 2; i <= expectLast; i++) if (r.term(i) !== 1) t.fail(`entry ${i} lost`);
  const o = await db.openGroup(10);
  t.equal(o.lastIndex(), 20, 'other group intact');
  await db.close();
  // The repair is durable: a second open is clean.
  db = await LevelRaftDb.open(dir);
  const again = await db.openGroup(9);
  t.same(again.recovery.problems, [], 'second open finds nothing to repair');
  t.equal(again.lastIndex(), expectLast);
  await db.close();
}

t.test('corruption: a flipped byte in a middle entry truncates from there', async (t) => {
  await corruptCase(t, async (db) => {
    const k = entryKey(9, 12);
    const v = (await db.db.get(k)) as Buffer;
    v[v.length - 1] = (v[v.length - 1] as number) ^ 0xff;
    await db.db.put(k, v);
  }, 12);
});

t.test('corruption: a torn (short) last record is truncated', async (t) => {
  await corruptCase(t, async (db) => {
    const k = entryKey(9, 20);
    const v = (await db.db.get(k)) as Buffer;
    await db.db.put(k, v.subarray(0, 7));
  }, 20);
});

t.test('corruption: a record under the wrong key, and a gap, are both caught', async (t) => {
  await corruptCase(t, async (db) => {
    await db.db.put(entryKey(9, 15), encodeEntry(ent(16)));
  }, 15);
  await corruptCase(t, async (db) => {
    await db.db.del(entryKey(9, 8));
  }, 9, 7);
});

t.test('corruption: an unreadable hard state is rebuilt and reported, not refused', async (t) => {
  const dir = tmp(t);
  let db = await LevelRaftDb.open(dir);
  const s = await db.openGroup(3, [1]);
  await s.persistReady({ entries: range(2, 5, 7), hardState: { term: 8, vote: 1, commit: 5 } });
  await db.db.put(Buffer.concat([entryKey(3, 0).subarray(0, 9), Buffer.from('h')]), Buffer.from('garbage'));
  await db.close();
  db = await LevelRaftDb.open(dir);
  const r = await db.openGroup(3);
  t.equal(r.recovery.hardStateRebuilt, true);
  t.equal(r.hardState().term, 7, 'term at least the last log term');
  t.equal(r.lastIndex(), 5, 'log kept');
  await db.close();
});

t.test('a RawNode runs on LevelRaftStorage and restarts from it', async (t) => {
  const dir = tmp(t);
  let db = await LevelRaftDb.open(dir);
  let st = await db.openGroup(1, [1]);
  let node = new RawNode({ id: 1, groupId: 1, storage: st, electionTicks: 10, heartbeatTicks: 1, prng: new Prng(1), applied: 1 });
  const applied: string[] = [];
  const drain = async () => {
    while (node.hasReady()) {
      const rd = node.ready();
      await st.persistReady(rd);
      for (const e of rd.committedEntries) if (e.data.byteLength > 0) applied.push(new TextDecoder().decode(e.data));
      node.advance(rd);
    }
  };
  node.campaign();
  await drain();
  t.equal(node.raft.role, 'leader');
  for (const x of ['a', 'b', 'c']) node.propose(new TextEncoder().encode(x));
  await drain();
  t.same(applied, ['a', 'b', 'c']);
  const term = node.raft.term;
  await db.close();
  db = await LevelRaftDb.open(dir);
  st = await db.openGroup(1);
  node = new RawNode({ id: 1, groupId: 1, storage: st, electionTicks: 10, heartbeatTicks: 1, prng: new Prng(2), applied: 1 });
  t.equal(node.raft.term, term, 'term restored');
  applied.length = 0;
  node.campaign();
  await drain();
  t.same(applied, ['a', 'b', 'c'], 'committed entries re-applied from the snapshot point after restart');
  await db.close();
});

t.test('kill -9 while writing: reopen succeeds with a valid prefix that covers every acknowledged write', async (t) => {
  const dir = tmp(t);
  const writer = new URL('./level-writer.js', import.meta.url).pathname;
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, [writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acked = 0;
    let buf = '';
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const l of lines) acked = Math.max(acked, Number(l));
        // Kill at a moment that depends on progress, not on time.
        if (acked >= 200 * (round + 1) + round * 37) {
          child.kill('SIGKILL');
        }
      });
      child.on('exit', () => resolve());
    });
    t.ok(acked > 0, `round ${round}: writer acknowledged up to ${acked}`);
    const db = await LevelRaftDb.open(dir);
    for (const g of [1, 2]) {
      const s = await db.openGroup(g);
      t.ok(s.lastIndex() >= acked, `group ${g}: every acknowledged entry survived (${s.lastIndex()} >= ${acked})`);
      const ents = s.entries(s.firstIndex(), s.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
      let ok = true;
      ents.forEach((e, i) => {
        if (e.index !== s.firstIndex() + i || e.data[0] !== (e.index & 0xff)) ok = false;
      });
      t.ok(ok, `group ${g}: the log is a contiguous, uncorrupted prefix`);
    }
    await db.close();
  }
});
