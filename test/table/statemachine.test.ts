// lib/table state machine on a real level database: commands, idempotency, watch, snapshots,
// restart. Entries are fed as Raft would commit them.
import t, { type Test } from 'tap';
import { Level } from 'level';
import { TableStateMachine, type TableEvent } from '../../lib/table/statemachine.js';
import { DomainError, WatchCompactedError } from '../../lib/table/errors.js';
import { containerstack } from '../../proto/gen/table.js';
import { tempDirFor } from '../lib/tmp.js';
import { Prng } from '../../lib/common/index.js';

const pb = containerstack.table;
const b = (s: string): Buffer => Buffer.from(s);
const s = (u: Uint8Array | null | undefined): string | undefined => (u ? Buffer.from(u).toString() : undefined);

/** A database in a temporary directory that goes in t's teardown, after the caller's db.close() (registered later). */
async function openDb(t: Test): Promise<{ db: Level<Uint8Array, Uint8Array>; path: string }> {
  const path = tempDirFor(t, 'table-sm-');
  const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  return { db, path };
}

let nextIndex = 0;
function entry(cmd: containerstack.table.Command.$Properties): { index: number; data: Uint8Array } {
  return { index: ++nextIndex, data: pb.Command.encode(cmd).finish() };
}
const put = (k: string, v: string) => ({ ops: [{ kind: pb.Op.Kind.PUT, key: b(k), value: b(v) }] });
const del = (k: string) => ({ ops: [{ kind: pb.Op.Kind.DELETE, key: b(k) }] });

t.beforeEach(() => {
  nextIndex = 0;
});

t.test('put, get, delete, revisions and versions', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1);
  await sm.open();
  const e1 = entry(put('a', '1'));
  let r = await sm.apply([e1]);
  t.equal(r.get(e1.index)?.revision, 1);
  await sm.apply([entry(put('a', '2')), entry(put('b', 'x'))]);
  const kv = sm.get(b('a'));
  t.equal(s(kv?.value), '2');
  t.equal(kv?.version, 2);
  t.equal(kv?.createRevision, 1);
  t.equal(kv?.modRevision, 2);
  t.equal(sm.currentRevision, 3);
  const e4 = entry(del('zzz'));
  r = await sm.apply([e4]);
  t.equal(r.get(e4.index)?.revision, 3, 'deleting a missing key writes nothing, revision unchanged');
  await sm.apply([entry(del('a'))]);
  t.equal(sm.get(b('a')), undefined);
  t.equal(sm.appliedIndex, 5);
  // Replayed entries (index <= applied) are skipped.
  r = await sm.apply([{ index: 2, data: pb.Command.encode(put('a', 'again')).finish() }]);
  t.equal(r.size, 0);
  t.equal(sm.get(b('a')), undefined);
});

t.test('compare-and-set and atomic batches', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1);
  await sm.open();
  await sm.apply([entry(put('k', 'v1'))]);
  const casOk = entry({ compares: [{ key: b('k'), target: pb.Compare.Target.VALUE, value: b('v1') }], ops: [{ kind: 0, key: b('k'), value: b('v2') }], failure: [{ kind: 0, key: b('lost'), value: b('1') }] });
  const casBad = entry({ compares: [{ key: b('k'), target: pb.Compare.Target.VALUE, value: b('v1') }], ops: [{ kind: 0, key: b('k'), value: b('v3') }], failure: [{ kind: 0, key: b('lost'), value: b('1') }] });
  const r = await sm.apply([casOk, casBad]);
  t.equal(r.get(casOk.index)?.succeeded, true);
  t.equal(r.get(casBad.index)?.succeeded, false, 'second CAS sees the first one\'s write within the same batch');
  t.equal(s(sm.get(b('k'))?.value), 'v2');
  t.equal(s(sm.get(b('lost'))?.value), '1', 'failure branch ran');
  const rev = sm.get(b('k'))!.modRevision;
  const byRev = entry({ compares: [{ key: b('k'), target: pb.Compare.Target.MOD_REVISION, modRevision: rev }], ops: [{ kind: 0, key: b('k'), value: b('v4') }] });
  const create = entry({ compares: [{ key: b('new'), target: pb.Compare.Target.EXISTS, exists: false }], ops: [{ kind: 0, key: b('new'), value: b('n') }] });
  const createAgain = entry({ compares: [{ key: b('new'), target: pb.Compare.Target.EXISTS, exists: false }], ops: [{ kind: 0, key: b('new'), value: b('n2') }] });
  const r2 = await sm.apply([byRev, create, createAgain]);
  t.equal(r2.get(byRev.index)?.succeeded, true);
  t.equal(r2.get(create.index)?.succeeded, true);
  t.equal(r2.get(createAgain.index)?.succeeded, false);
  const batch = entry({ ops: [{ kind: 0, key: b('x/1'), value: b('1') }, { kind: 0, key: b('x/2'), value: b('2') }, { kind: 1, key: b('new') }] });
  const rb = await sm.apply([batch]);
  const rv = rb.get(batch.index)!.revision;
  t.equal(sm.get(b('x/1'))?.modRevision, rv);
  t.equal(sm.get(b('x/2'))?.modRevision, rv, 'one revision for the whole batch');
  t.equal(sm.get(b('new')), undefined);
  await sm.apply([entry({ ops: [{ kind: pb.Op.Kind.DELETE_PREFIX, key: b('x/') }] })]);
  t.equal((await sm.range({ prefix: b('x/'), limit: 10 })).kvs.length, 0, 'prefix delete removed x/*');
});

t.test('domain commands: reads see writes, failures leak nothing, unknown is an error', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1);
  await sm.open();
  // move(src, dst): atomic rename of a key, failing if dst exists.
  sm.register('move', (ctx, args) => {
    const [src, dst] = Buffer.from(args).toString().split('>') as [string, string];
    const v = ctx.get(b(src));
    if (!v) throw new DomainError('ENOENT', `no ${src}`);
    ctx.put(b(`tmp`), b('scratch'));
    if (ctx.get(b(dst))) throw new DomainError('EEXIST', `${dst} exists`);
    ctx.delete(b('tmp'));
    ctx.delete(b(src));
    ctx.put(b(dst), v);
    return b(`moved ${src}`);
  });
  sm.register('count', async (ctx, args) => {
    const rows = await ctx.scan(args, 100);
    return b(String(rows.length));
  });
  await sm.apply([entry(put('a', 'A')), entry(put('c', 'C'))]);
  const m1 = entry({ domain: 'move', args: b('a>b') });
  const m2 = entry({ domain: 'move', args: b('b>c') });
  const m3 = entry({ domain: 'move', args: b('zz>y') });
  const m4 = entry({ domain: 'nope', args: b('') });
  const r = await sm.apply([m1, m2, m3, m4]);
  t.equal(s(r.get(m1.index)?.domainResult), 'moved a');
  t.equal(r.get(m2.index)?.errorCode, 'EEXIST');
  t.equal(sm.get(b('tmp')), undefined, 'writes of the failed command did not leak');
  t.equal(r.get(m3.index)?.errorCode, 'ENOENT');
  t.equal(r.get(m4.index)?.errorCode, 'TABLE_UNKNOWN_COMMAND');
  t.equal(s(sm.get(b('b'))?.value), 'A');
  t.equal(sm.get(b('a')), undefined);
  await sm.apply([entry(put('dir/1', '')), entry(put('dir/2', ''))]);
  const c1 = entry({ ops: [{ kind: 0, key: b('dir/3'), value: b('') }] });
  const c2 = entry({ domain: 'count', args: b('dir/') });
  const rc = await sm.apply([c1, c2]);
  t.equal(s(rc.get(c2.index)?.domainResult), '3', 'scan sees an earlier entry of the same batch');
  const bad = { index: ++nextIndex, data: Buffer.from([0xff, 0xff, 0xff]) };
  const rbad = await sm.apply([bad]);
  t.equal(rbad.get(bad.index)?.errorCode, 'TABLE_BAD_COMMAND', 'undecodable entry recorded as failed, not a crash');
});

t.test('idempotent retries by (client, seq) and the session window', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1, { sessionWindow: 4 });
  await sm.open();
  sm.register('incr', (ctx) => {
    const n = Number(s(ctx.get(b('n'))) ?? '0') + 1;
    ctx.put(b('n'), b(String(n)));
    return b(String(n));
  });
  const first = entry({ clientId: 'c1', seq: 1, domain: 'incr' });
  const retry = entry({ clientId: 'c1', seq: 1, domain: 'incr' });
  const r = await sm.apply([first, retry]);
  t.equal(s(r.get(first.index)?.domainResult), '1');
  t.equal(s(r.get(retry.index)?.domainResult), '1', 'retry returns the first result');
  t.equal(s(sm.get(b('n'))?.value), '1', 'applied once');
  for (let seq = 2; seq <= 7; seq++) await sm.apply([entry({ clientId: 'c1', seq, domain: 'incr' })]);
  t.equal(s(sm.get(b('n'))?.value), '7');
  const old = entry({ clientId: 'c1', seq: 2, domain: 'incr' });
  const ro = await sm.apply([old]);
  t.equal(ro.get(old.index)?.errorCode, 'TABLE_SESSION_EXPIRED');
  t.equal(s(sm.get(b('n'))?.value), '7', 'an expired retry is not applied again');
  // Sessions survive a restart.
  const sm2 = new TableStateMachine(db, 1, { sessionWindow: 4 });
  sm2.register('incr', () => b('should not run'));
  await sm2.open();
  const again = entry({ clientId: 'c1', seq: 7, domain: 'incr' });
  const ra = await sm2.apply([again]);
  t.equal(s(ra.get(again.index)?.domainResult), '7', 'result remembered across restart');
});

t.test('range scans paginate', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1);
  await sm.open();
  const es = [];
  for (let i = 0; i < 25; i++) es.push(entry(put(`p/${String(i).padStart(2, '0')}`, String(i))));
  es.push(entry(put('q', 'other')));
  await sm.apply(es);
  const seen: string[] = [];
  let start: Uint8Array | undefined;
  for (let page = 0; page < 10; page++) {
    const r = await sm.range({ prefix: b('p/'), limit: 10, ...(start ? { start } : {}) });
    seen.push(...r.kvs.map((kv) => Buffer.from(kv.key).toString()));
    if (!r.next) break;
    start = r.next;
  }
  t.equal(seen.length, 25);
  t.equal(seen[0], 'p/00');
  t.equal(seen[24], 'p/24');
  t.equal(new Set(seen).size, 25, 'no duplicates across pages');
});

t.test('watch: history replay then live, prefix filter, compaction', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1, { historyRevisions: 20 });
  await sm.open();
  await sm.apply([entry(put('w/a', '1')), entry(put('other', 'x')), entry(put('w/b', '2'))]);
  const got: TableEvent[] = [];
  const cancel = await sm.watch(b('w/'), 1, (evs) => got.push(...evs), (e) => t.fail(String(e)));
  await sm.apply([entry(put('w/a', '3')), entry(del('w/b'))]);
  t.same(got.map((e) => `${e.type}:${Buffer.from(e.kv.key)}@${e.revision}`), ['put:w/a@1', 'put:w/b@3', 'put:w/a@4', 'delete:w/b@5']);
  cancel();
  await sm.apply([entry(put('w/c', '9'))]);
  t.equal(got.length, 4, 'cancelled watcher gets nothing more');
  for (let i = 0; i < 60; i++) await sm.apply([entry(put('w/n', String(i)))]);
  for (let i = 0; i < 50 && sm.compactedRevision === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.ok(sm.compactedRevision > 0, `history trimmed (compacted through ${sm.compactedRevision})`);
  await t.rejects(sm.watch(b('w/'), 1, () => undefined, () => undefined), WatchCompactedError);
  const late: TableEvent[] = [];
  await sm.watch(b('w/'), sm.compactedRevision + 1, (evs) => late.push(...evs), () => undefined);
  t.ok(late.length > 0 && late[0]!.revision === sm.compactedRevision + 1, 'watch from the oldest retained revision replays it');
});

t.test('historyRevisions 0: no event is written, live watches still work, a past start is compacted', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  // A state that had history (written with the default) then reopened without it: the old
  // events are cleared once, and no new ones are written.
  const withHistory = new TableStateMachine(db, 1);
  await withHistory.open();
  await withHistory.apply([entry(put('k/a', '1')), entry(put('k/b', '2'))]);
  const countEvents = async (): Promise<number> => {
    let n = 0;
    for await (const [k] of db.iterator({ gte: Buffer.from([0]), lt: Buffer.from([255]) })) if (Buffer.from(k).toString('latin1').includes('k/') === false) n++;
    return n;
  };
  const keysBefore = await countEvents();
  const sm = new TableStateMachine(db, 1, { historyRevisions: 0 });
  await sm.open();
  const live: TableEvent[] = [];
  await sm.watch(b('k/'), 0, (evs) => live.push(...evs), (e) => t.fail(String(e)));
  await sm.apply([entry(put('k/c', '3')), entry(del('k/a'))]);
  for (let i = 0; i < 50 && (await countEvents()) >= keysBefore; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(live.map((e) => `${e.type}:${Buffer.from(e.kv.key)}`), ['put:k/c', 'delete:k/a'], 'a live watch gets every event');
  t.ok((await countEvents()) < keysBefore, 'the events written with history are gone');
  for (let i = 0; i < 20; i++) await sm.apply([entry(put('k/n', String(i)))]);
  await sm.settled();
  const after = await countEvents();
  for (let i = 0; i < 20; i++) await sm.apply([entry(put('k/m', String(i)))]);
  await sm.settled();
  t.equal(await countEvents(), after, 'twenty more writes add no key besides the data (no events)');
  await t.rejects(sm.watch(b('k/'), 1, () => undefined, () => undefined), WatchCompactedError, 'a start in the past is compacted');
  t.equal((await sm.get(b('k/c')))?.value.toString(), '3', 'the data is there');
});

t.test('snapshot and restore move the whole state to another replica', async (t) => {
  const a = await openDb(t);
  const bdb = await openDb(t);
  t.teardown(async () => {
    await a.db.close();
    await bdb.db.close();
  });
  const src = new TableStateMachine(a.db, 7);
  await src.open();
  const es = [];
  for (let i = 0; i < 300; i++) es.push(entry({ clientId: 'cli', seq: i + 1, ...put(`k${i}`, 'v'.repeat(i)) }));
  await src.apply(es);
  const chunks: Uint8Array[] = [];
  for await (const c of src.snapshotChunks(4096)) chunks.push(c);
  t.ok(chunks.length > 1, `snapshot streamed in ${chunks.length} chunks`);
  const dst = new TableStateMachine(bdb.db, 7);
  await dst.open();
  await dst.apply([{ index: 1, data: pb.Command.encode(put('stale', 'x')).finish() }]);
  await dst.restore(chunks);
  t.equal(dst.appliedIndex, src.appliedIndex);
  t.equal(dst.currentRevision, src.currentRevision);
  t.equal(dst.get(b('stale')), undefined, 'prior state replaced');
  t.equal(s(dst.get(b('k299'))?.value), 'v'.repeat(299));
  const retry = { index: dst.appliedIndex + 1, data: pb.Command.encode({ clientId: 'cli', seq: 300, ...put('k299', 'changed') }).finish() };
  await dst.apply([retry]);
  t.equal(s(dst.get(b('k299'))?.value), 'v'.repeat(299), 'sessions travelled with the snapshot: retry deduplicated');
  await t.rejects(dst.restore([Buffer.from([0, 0, 0, 9, 0])]), RangeError, 'truncated chunk rejected');
  t.equal(s(dst.get(b('k299'))?.value), 'v'.repeat(299), 'a rejected snapshot leaves the state as it was');
  // A transfer that dies half way (the sender crashed) must not leave a half-restored table.
  const appliedBefore = dst.appliedIndex;
  async function* dies(): AsyncGenerator<Uint8Array> {
    yield chunks[0]!;
    throw new Error('sender died');
  }
  await t.rejects(dst.restore(dies()), /sender died/);
  t.equal(dst.appliedIndex, appliedBefore, 'applied index unchanged');
  t.equal(s(dst.get(b('k299'))?.value), 'v'.repeat(299), 'data unchanged after an interrupted transfer');
  const reopened = new TableStateMachine(bdb.db, 7);
  await reopened.open();
  t.equal(s(reopened.get(b('k0'))?.value), '', 'reopen after restores sees the current generation');
  t.equal(reopened.appliedIndex, appliedBefore);
});

t.test('two groups share one db without seeing each other', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const g1 = new TableStateMachine(db, 1);
  const g2 = new TableStateMachine(db, 2);
  await g1.open();
  await g2.open();
  await g1.apply([{ index: 1, data: pb.Command.encode(put('same', 'one')).finish() }]);
  await g2.apply([{ index: 1, data: pb.Command.encode(put('same', 'two')).finish() }]);
  t.equal(s(g1.get(b('same'))?.value), 'one');
  t.equal(s(g2.get(b('same'))?.value), 'two');
  t.equal((await g1.range({ limit: 100 })).kvs.length, 1);
});

t.test('applyStaged answers before its batch lands; reads after the answer still see it', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1);
  await sm.open();
  await sm.apply([entry(put('gone', 'old')), entry(put('k', 'v0'))]);
  // Hold this database's batches back, so the window between answer and landing is wide
  // enough to observe (level writes in the thread pool; here one real write, just later).
  const realBatch = db.batch.bind(db) as (ops: unknown, o?: unknown) => Promise<void>;
  let release!: () => void;
  let held = new Promise<void>((r) => (release = r));
  let fail: Error | undefined;
  (db as unknown as { batch: (ops: unknown, o?: unknown) => Promise<void> }).batch = async (ops, o) => {
    await held;
    if (fail) throw fail;
    return realBatch(ops, o);
  };
  const e = entry({ ops: [{ kind: pb.Op.Kind.PUT, key: b('k'), value: b('v1') }, { kind: pb.Op.Kind.DELETE, key: b('gone') }] });
  const r = await sm.applyStaged([e]);
  t.equal(r.get(e.index)?.succeeded, true);
  t.equal(sm.appliedIndex, e.index);
  t.ok(db.getSync(sm.keys.data(b('k'))), 'level still holds the old value: the batch has not landed');
  t.equal(s(sm.get(b('k'))?.value), 'v1', 'get sees the write before its batch lands');
  t.equal(sm.get(b('k'))?.version, 2);
  t.equal(sm.get(b('gone')), undefined, 'and the delete');
  let ranged = false;
  const rangeP = sm.range({ prefix: b(''), limit: 10 }).then((x) => ((ranged = true), x));
  // The next apply does not wait for the held batch: it reads the held writes from memory,
  // and its own go in the next batch, after the held one has landed.
  const cas = entry({ compares: [{ key: b('k'), target: pb.Compare.Target.VERSION, version: 2 }], ops: [{ kind: pb.Op.Kind.PUT, key: b('k'), value: b('v2') }] });
  const nextP = sm.applyStaged([cas]);
  await new Promise((res) => setTimeout(res, 30));
  t.equal(ranged, false, 'range waits for the batch');
  release();
  const rg = await rangeP;
  t.same(rg.kvs.map((kv) => s(kv.key)), ['k'], 'range after landing: the delete is there');
  t.equal((await nextP).get(cas.index)?.succeeded, true, 'the next command saw the held write');
  await sm.settled();
  t.equal(s(sm.get(b('k'))?.value), 'v2');
  t.equal(readBack(db.getSync(sm.keys.appliedKey)), cas.index, 'applied index landed');
  // A batch that fails: settled() and every later apply and range reject.
  held = Promise.resolve();
  fail = new Error('disk gone');
  await sm.applyStaged([entry(put('x', '1'))]);
  await t.rejects(sm.settled(), /disk gone/);
  await t.rejects(sm.apply([entry(put('y', '1'))]), /disk gone/);
  await t.rejects(sm.range({ prefix: b(''), limit: 10 }), /disk gone/);
});

/** Counts the level batches a database is given (they still go to level, unchanged). */
function countBatches(db: Level<Uint8Array, Uint8Array>): { n: number } {
  const c = { n: 0 };
  const real = db.batch.bind(db) as (ops: unknown, o?: unknown) => Promise<void>;
  (db as unknown as { batch: (ops: unknown, o?: unknown) => Promise<void> }).batch = (ops, o) => {
    c.n++;
    return real(ops, o);
  };
  return c;
}

/** Every data key and value of a group, as level holds it. */
async function dump(sm: TableStateMachine): Promise<string[]> {
  const r = await sm.range({ prefix: b(''), limit: 10_000 });
  return r.kvs.map((kv) => `${s(kv.key)}=${s(kv.value)}@${kv.modRevision}/${kv.version}`);
}

/** A domain command that scans: `scan:<prefix>:<limit>` answers the keys found, comma separated. */
function registerScan(sm: TableStateMachine): void {
  sm.register('scan', async (ctx, args) => {
    const [prefix, limit] = Buffer.from(args).toString().split(':') as [string, string];
    const rows = await ctx.scan(b(prefix), Number(limit));
    return b(rows.map((r) => s(r.key)).join(','));
  });
}

t.test('applyBatchDelayMs: applies within the delay share one batch; reads and commands see them before it', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1, { applyBatchDelayMs: 60_000 });
  registerScan(sm);
  await sm.open();
  await sm.apply([entry(put('d/1', 'a')), entry(put('d/2', 'b')), entry(put('d/3', 'c')), entry(put('d/4', 'd'))]);
  const batches = countBatches(db);
  // Five applies, none written yet: a delete, a put, a compare-and-set on the pending put,
  // a prefix delete over keys only in memory and in level, and a scan over all of it.
  await sm.applyStaged([entry(del('d/1'))]);
  await sm.applyStaged([entry(put('d/5', 'e'))]);
  const cas = entry({ compares: [{ key: b('d/5'), target: pb.Compare.Target.VERSION, version: 1 }], ops: [{ kind: pb.Op.Kind.PUT, key: b('d/5'), value: b('E') }] });
  t.equal((await sm.applyStaged([cas])).get(cas.index)?.succeeded, true, 'the compare saw the pending put');
  await sm.applyStaged([entry(put('x/1', '1')), entry(put('x/2', '2'))]);
  await sm.applyStaged([entry({ ops: [{ kind: pb.Op.Kind.DELETE_PREFIX, key: b('x/') }] })]);
  const sc = entry({ domain: 'scan', args: b('d/:2') });
  const rs = await sm.applyStaged([sc]);
  t.equal(s(rs.get(sc.index)?.domainResult), 'd/2,d/3', 'a scan skips the pending delete and still finds `limit` keys');
  t.equal(batches.n, 0, 'nothing written within the delay');
  t.equal(db.getSync(sm.keys.data(b('d/5'))), undefined, 'level does not hold the pending put');
  t.equal(s(sm.get(b('d/5'))?.value), 'E', 'get does');
  t.equal(sm.get(b('d/5'))?.version, 2);
  t.equal(sm.get(b('d/1')), undefined, 'and sees the pending delete');
  t.equal(sm.get(b('x/1')), undefined, 'and the prefix delete of keys never written to level');
  await sm.settled();
  t.equal(batches.n, 1, 'settled() wrote everything as one batch');
  t.equal(readBack(db.getSync(sm.keys.appliedKey)), sm.appliedIndex, 'the applied index in level is the last apply');
  t.equal(readBack(db.getSync(sm.keys.revisionKey)), sm.currentRevision);
  t.same(await dump(sm), ['d/2=b@2/1', 'd/3=c@3/1', 'd/4=d@4/1', 'd/5=E@7/2']);
  // A reopened state machine (a restart) reads exactly that back.
  const again = new TableStateMachine(db, 1);
  await again.open();
  t.equal(again.appliedIndex, sm.appliedIndex);
  t.equal(again.currentRevision, sm.currentRevision);
});

t.test('applyBatchMaxOps: gathered ops past the bound are written without waiting for the delay', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1, { historyRevisions: 0, applyBatchDelayMs: 60_000, applyBatchMaxOps: 6 });
  await sm.open();
  const batches = countBatches(db);
  // Each apply adds its put; the applied-index and revision pair is kept once: 3, 4, 5, 6 ops.
  for (let i = 0; i < 3; i++) await sm.applyStaged([entry(put(`k${i}`, 'v'))]);
  t.equal(batches.n, 0, 'below the bound: nothing written');
  await sm.applyStaged([entry(put('k3', 'v'))]);
  t.equal(batches.n, 1, 'at the bound: written at once');
  await sm.settled();
  t.equal(readBack(db.getSync(sm.keys.appliedKey)), 4);
});

t.test('applies that come while a batch lands go as one batch after it, in order', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1, { historyRevisions: 0 });
  await sm.open();
  const real = db.batch.bind(db) as (ops: unknown, o?: unknown) => Promise<void>;
  const sizes: number[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  (db as unknown as { batch: (ops: unknown[], o?: unknown) => Promise<void> }).batch = async (ops, o) => {
    sizes.push(ops.length);
    if (sizes.length === 1) await held;
    return real(ops, o);
  };
  await sm.applyStaged([entry(put('k', '1'))]);
  // Three applies while the first batch is held: the same key twice (the later must win).
  await sm.applyStaged([entry(put('k', '2'))]);
  await sm.applyStaged([entry(put('j', '1'))]);
  await sm.applyStaged([entry(put('k', '3'))]);
  t.equal(sizes.length, 1, 'only the first batch was issued');
  t.equal(s(sm.get(b('k'))?.value), '3');
  release();
  await sm.settled();
  t.equal(sizes.length, 2, 'the three applies went as one batch');
  // Three data puts and one applied-index and revision pair, not three.
  t.equal(sizes[1], 5);
  t.same(await dump(sm), ['j=1@3/1', 'k=3@4/3']);
  t.equal(readBack(db.getSync(sm.keys.appliedKey)), 4);
});

t.test('applies called without waiting for each other run in call order; settled() covers the one in progress', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const sm = new TableStateMachine(db, 1, { historyRevisions: 0, applyBatchDelayMs: 60_000 });
  // A command that yields to the event loop before it writes, so a later call could overtake it.
  sm.register('slowPut', async (ctx, args) => {
    await new Promise((r) => setImmediate(r));
    const [k, v] = Buffer.from(args).toString().split('=') as [string, string];
    ctx.put(b(k), b(v));
    return b('');
  });
  await sm.open();
  const e1 = entry({ domain: 'slowPut', args: b('k=1') });
  const e2 = entry({ compares: [{ key: b('k'), target: pb.Compare.Target.VALUE, value: b('1') }], ops: [{ kind: pb.Op.Kind.PUT, key: b('k'), value: b('2') }] });
  const e3 = entry({ domain: 'slowPut', args: b('j=3') });
  const p1 = sm.applyStaged([e1]);
  const p2 = sm.applyStaged([e2]);
  const p3 = sm.applyStaged([e3]);
  const settled = sm.settled();
  t.equal((await p2).get(e2.index)?.succeeded, true, 'the second saw the first (it did not overtake it)');
  await Promise.all([p1, p3, settled]);
  t.equal(readBack(db.getSync(sm.keys.appliedKey)), e3.index, 'settled() waited for the applies in progress and wrote them');
  t.equal(s(sm.get(b('k'))?.value), '2');
  t.equal(s(sm.get(b('j'))?.value), '3');
});

t.test('a crash with writes still in memory: replaying the log gives the same state', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  // The same entries applied to a state machine that writes each at once (the reference) and
  // to one that gathers them; the second "crashes" (is dropped) with the last ones unwritten.
  const log: { index: number; data: Uint8Array }[] = [];
  for (let i = 0; i < 40; i++) {
    const key = `k${i % 7}`;
    const cmd = i % 5 === 4 ? del(key) : put(key, `v${i}`);
    log.push(entry({ ...cmd, clientId: 'c1', seq: i + 1 }));
  }
  log.push(entry({ ops: [{ kind: pb.Op.Kind.DELETE_PREFIX, key: b('k1') }], clientId: 'c1', seq: 41 }));
  const ref = new TableStateMachine(db, 1);
  await ref.open();
  for (const e of log) await ref.apply([e]);
  const gathering = new TableStateMachine(db, 2, { applyBatchDelayMs: 60_000 });
  await gathering.open();
  for (const e of log.slice(0, 17)) await gathering.applyStaged([e]);
  await gathering.settled();
  for (const e of log.slice(17)) await gathering.applyStaged([e]);
  const landed = readBack(db.getSync(gathering.keys.appliedKey));
  t.equal(landed, 17, 'the first 17 landed, the rest is only in memory');
  t.equal(gathering.appliedIndex, log.length);
  // Restart: a new state machine on what level holds, fed the log again from the start.
  const restarted = new TableStateMachine(db, 2);
  await restarted.open();
  t.equal(restarted.appliedIndex, landed, 'it resumes from what landed');
  for (const e of log) await restarted.apply([e]);
  t.equal(restarted.appliedIndex, ref.appliedIndex);
  t.equal(restarted.currentRevision, ref.currentRevision);
  t.same(await dump(restarted), await dump(ref), 'same keys, values, revisions and versions');
  // The sessions too: a retry of an early write answers its first result again, not a second effect.
  const retry = { index: log.length + 1, data: pb.Command.encode({ ...put('k3', 'again'), clientId: 'c1', seq: 4 }).finish() };
  const r1 = (await ref.apply([retry])).get(retry.index);
  const r2 = (await restarted.apply([retry])).get(retry.index);
  t.same(r2, r1);
  t.equal(r2?.index, 4, 'the first result of seq 4');
});

t.test('a failed batch with later applies gathered behind it: none is written, reads and applies fail', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  const failures: Error[] = [];
  const sm = new TableStateMachine(db, 1, { onWriteError: (e) => failures.push(e) });
  await sm.open();
  await sm.apply([entry(put('a', '0'))]);
  const real = db.batch.bind(db) as (ops: unknown, o?: unknown) => Promise<void>;
  let calls = 0;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  (db as unknown as { batch: (ops: unknown, o?: unknown) => Promise<void> }).batch = async (ops, o) => {
    calls++;
    if (calls === 1) {
      await held;
      throw new Error('disk gone');
    }
    return real(ops, o);
  };
  await sm.applyStaged([entry(put('a', '1'))]);
  await sm.applyStaged([entry(put('b', '1'))]); // gathered behind the held batch
  release();
  await t.rejects(sm.settled(), /disk gone/);
  t.equal(calls, 1, 'nothing was written after the failed batch');
  t.equal(failures.length, 1, 'onWriteError was told once');
  t.throws(() => sm.get(b('a')), /disk gone/, 'get fails');
  await t.rejects(sm.applyStaged([entry(put('c', '1'))]), /disk gone/, 'a later apply fails');
  await t.rejects(sm.range({ prefix: b(''), limit: 10 }), /disk gone/);
  t.equal(readBack(db.getSync(sm.keys.appliedKey)), 1, 'level still holds the state before the failed batch');
});

function readBack(v: Uint8Array | undefined): number {
  return v ? Number(Buffer.from(v).readBigUInt64BE(0)) : 0;
}

t.test('memoryPrefixes: gets and scans under them answer as level does, across restarts, restores and the bound', async (t) => {
  const { db } = await openDb(t);
  t.teardown(() => db.close());
  // The same seeded commands fed to a state machine that reads everything from level and to
  // ones that keep `l` and `m/` in memory: with room, and with a bound the keys cross (and
  // fall below again) so the copy is dropped mid-run. Every result must be identical.
  const opts = { historyRevisions: 0, applyBatchDelayMs: 60_000 };
  const make = async (group: number, extra: object): Promise<TableStateMachine> => {
    const sm = new TableStateMachine(db, group, { ...opts, ...extra });
    registerScan(sm);
    sm.register('read', (ctx, args) => ctx.get(args) ?? b('-'));
    await sm.open();
    return sm;
  };
  const ref = await make(1, {});
  const roomy = await make(2, { memoryPrefixes: [b('l'), b('m/')] });
  let tight = await make(3, { memoryPrefixes: [b('l'), b('m/')], memoryKeysMax: 6 });
  const prng = new Prng(7);
  const keys = ['l1', 'l2', 'l3', 'l10', 'l11', 'lx', 'm/part', 'm/lock', 'mx', 'k1', 'ly/1', 'ly/2'];
  const scans = ['l:2', 'l:100', 'l1:10', 'ly/:1', 'm/:5', 'k:5'];
  let idx = 0;
  let chunk: { index: number; data: Uint8Array }[] = [];
  let restarted = false;
  for (let i = 0; i < 300; i++) {
    const r = prng.int(10);
    let cmd: containerstack.table.Command.$Properties;
    if (r < 4) cmd = put(prng.pick(keys), `v${i}`);
    else if (r < 6) cmd = del(prng.pick(keys));
    else if (r < 8) cmd = { domain: 'scan', args: b(prng.pick(scans)) };
    else if (r < 9) cmd = { domain: 'read', args: b(prng.pick(keys)) };
    else cmd = { ops: [{ kind: pb.Op.Kind.DELETE_PREFIX, key: b(prng.pick(['l1', 'ly/', 'm/'])) }] };
    // Entries go one to three per apply call (a command's reads then see the call's earlier writes).
    chunk.push({ index: ++idx, data: pb.Command.encode(cmd).finish() });
    if (chunk.length < 3 && prng.chance(0.5)) continue;
    const want = [...(await ref.applyStaged(chunk)).entries()];
    t.same([...(await roomy.applyStaged(chunk)).entries()], want, `through ${idx} (roomy)`);
    t.same([...(await tight.applyStaged(chunk)).entries()], want, `through ${idx} (tight)`);
    chunk = [];
    for (const k of keys) {
      const v = ref.get(b(k));
      if (s(roomy.get(b(k))?.value) !== s(v?.value) || s(tight.get(b(k))?.value) !== s(v?.value)) t.fail(`get ${k} after ${idx}`);
    }
    if (i >= 150 && !restarted) {
      restarted = true;
      // A restart of the tight one: what landed is reloaded, the rest replayed.
      await tight.settled();
      tight = await make(3, { memoryPrefixes: [b('l'), b('m/')], memoryKeysMax: 6 });
    }
  }
  t.same(await dump(roomy), await dump(ref));
  t.same(await dump(tight), await dump(ref));
  // A snapshot of the reference restored into the roomy one: its memory copy is the new state's.
  await ref.apply([{ index: ++idx, data: pb.Command.encode(put('l-after-snapshot', 'x')).finish() }]);
  await roomy.restore(ref.snapshotChunks(64));
  const e = { index: ++idx, data: pb.Command.encode({ domain: 'scan', args: b('l:100') }).finish() };
  const want = (await ref.apply([e])).get(e.index);
  t.ok(s(want?.domainResult)?.includes('l-after-snapshot'));
  t.same((await roomy.apply([e])).get(e.index), want, 'a scan after restore sees the restored keys');
});
