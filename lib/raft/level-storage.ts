// Durable raft storage on `level`, shared by many groups. One LevelRaftDb holds one level
// database; each group's keys are prefixed by its groupId, and persist() writes the Ready
// output of many groups in ONE synced batch (group commit: one fsync per batch, not per group).
//
// Reads are synchronous (the core's Storage interface), so each group keeps its log in memory
// (a MemoryStorage) loaded at open; compaction bounds it. Every record carries a CRC-32. On
// open, a torn or corrupt tail (bad checksum, short record, wrong index, gap, term going down)
// is detected, the bad entry and everything after it are deleted in a synced batch, and the
// group starts from the valid prefix. What was repaired is reported in `recovery`, never
// refused and never hidden.
//
// Key layout (binary, sorts by group then kind then index):
//   'g' | groupId u64be | 'h'                  -> hard state
//   'g' | groupId u64be | 's'                  -> snapshot (metadata + data)
//   'g' | groupId u64be | 'e' | index u64be    -> entry
import { Level } from 'level';
import { assert } from '../common/index.js';
import { crc32 } from './crc32.js';
import { StorageCorruptError } from './errors.js';
import { cloneConfState, MemoryStorage, type Storage } from './storage.js';
import type { ConfState, Entry, HardState, Snapshot } from './types.js';
import { NONE } from './types.js';

type Db = Level<Buffer, Buffer>;
type BatchOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

const TAG_HARD = 0x68; // 'h'
const TAG_SNAP = 0x73; // 's'
const TAG_ENTRY = 0x65; // 'e'

function groupPrefix(groupId: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b[0] = 0x67; // 'g'
  b.writeBigUInt64BE(BigInt(groupId), 1);
  return b;
}
function tagKey(groupId: number, tag: number): Buffer {
  const b = Buffer.allocUnsafe(10);
  groupPrefix(groupId).copy(b, 0);
  b[9] = tag;
  return b;
}
export function entryKey(groupId: number, index: number): Buffer {
  const b = Buffer.allocUnsafe(18);
  groupPrefix(groupId).copy(b, 0);
  b[9] = TAG_ENTRY;
  b.writeBigUInt64BE(BigInt(index), 10);
  return b;
}

// ---- record codecs: [crc32 u32be][payload], crc over payload ----

function seal(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUInt32BE(crc32(payload), 0);
  payload.copy(out, 4);
  return out;
}
/** The payload if the checksum holds, else undefined. */
function unseal(rec: Buffer): Buffer | undefined {
  if (rec.length < 4) return undefined;
  const payload = rec.subarray(4);
  return crc32(payload) === rec.readUInt32BE(0) ? payload : undefined;
}

const ENTRY_HEADER_BYTES = 17;
export function encodeEntry(e: Entry): Buffer {
  const p = Buffer.allocUnsafe(ENTRY_HEADER_BYTES + e.data.byteLength);
  p.writeBigUInt64BE(BigInt(e.term), 0);
  p.writeBigUInt64BE(BigInt(e.index), 8);
  p[16] = e.type === 'confChange' ? 1 : 0;
  p.set(e.data, ENTRY_HEADER_BYTES);
  return seal(p);
}
function decodeEntry(rec: Buffer): Entry | undefined {
  const p = unseal(rec);
  if (p === undefined || p.length < ENTRY_HEADER_BYTES) return undefined;
  const term = Number(p.readBigUInt64BE(0));
  const index = Number(p.readBigUInt64BE(8));
  const t = p[16];
  if (!Number.isSafeInteger(term) || !Number.isSafeInteger(index) || (t !== 0 && t !== 1)) return undefined;
  // Copy out: the record buffer may be a view of a larger slab.
  return { term, index, type: t === 1 ? 'confChange' : 'normal', data: new Uint8Array(p.subarray(ENTRY_HEADER_BYTES)) };
}

function encodeHardState(hs: HardState): Buffer {
  const p = Buffer.allocUnsafe(24);
  p.writeBigUInt64BE(BigInt(hs.term), 0);
  p.writeBigUInt64BE(BigInt(hs.vote), 8);
  p.writeBigUInt64BE(BigInt(hs.commit), 16);
  return seal(p);
}
function decodeHardState(rec: Buffer): HardState | undefined {
  const p = unseal(rec);
  if (p === undefined || p.length !== 24) return undefined;
  const hs = { term: Number(p.readBigUInt64BE(0)), vote: Number(p.readBigUInt64BE(8)), commit: Number(p.readBigUInt64BE(16)) };
  if (!Number.isSafeInteger(hs.term) || !Number.isSafeInteger(hs.vote) || !Number.isSafeInteger(hs.commit)) return undefined;
  return hs;
}

function encodeSnapshot(s: Snapshot): Buffer {
  const conf = Buffer.from(JSON.stringify(s.metadata.confState));
  const p = Buffer.allocUnsafe(20 + conf.length + s.data.byteLength);
  p.writeBigUInt64BE(BigInt(s.metadata.index), 0);
  p.writeBigUInt64BE(BigInt(s.metadata.term), 8);
  p.writeUInt32BE(conf.length, 16);
  conf.copy(p, 20);
  p.set(s.data, 20 + conf.length);
  return seal(p);
}
function decodeSnapshot(rec: Buffer): Snapshot | undefined {
  const p = unseal(rec);
  if (p === undefined || p.length < 20) return undefined;
  const index = Number(p.readBigUInt64BE(0));
  const term = Number(p.readBigUInt64BE(8));
  const confLen = p.readUInt32BE(16);
  if (20 + confLen > p.length) return undefined;
  let confState: ConfState;
  try {
    const c = JSON.parse(p.subarray(20, 20 + confLen).toString()) as ConfState;
    if (!Array.isArray(c.voters) || !Array.isArray(c.learners)) return undefined;
    confState = { voters: c.voters.map(Number), learners: c.learners.map(Number) };
  } catch {
    return undefined;
  }
  return { metadata: { index, term, confState }, data: new Uint8Array(p.subarray(20 + confLen)) };
}

/** What open() found wrong and repaired. Empty arrays/undefined when the group was clean. */
export interface RecoveryReport {
  /** The first entry index that was bad (and deleted with everything after it), if any. */
  truncatedFromIndex: number | undefined;
  /** Number of entry records deleted by the truncation. */
  droppedEntries: number;
  /** Human-readable reasons, e.g. "entry 17: checksum mismatch". Bounded to the first few. */
  problems: string[];
  /** The hard state record was unreadable and was rebuilt from the log (vote unknown: NONE). */
  hardStateRebuilt: boolean;
  /** The snapshot record was unreadable: the group restarts empty and needs a snapshot from the leader. */
  snapshotLost: boolean;
}

/** One group's share of a group-commit batch: the persistent parts of a Ready. */
export interface GroupWrite {
  storage: LevelRaftStorage;
  snapshot?: Snapshot;
  entries?: Entry[];
  hardState?: HardState;
}

const MAX_PROBLEMS_REPORTED = 16;

export class LevelRaftDb {
  /** Open groups. invariant: at most one LevelRaftStorage per groupId. */
  private readonly groups = new Map<number, LevelRaftStorage>();

  private constructor(readonly db: Db) {}

  static async open(location: string): Promise<LevelRaftDb> {
    const db = new Level<Buffer, Buffer>(location, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    return new LevelRaftDb(db);
  }

  async close(): Promise<void> {
    this.groups.clear();
    await this.db.close();
  }

  /** Loads (and if needed repairs) one group. Bootstraps `voters` when the group has no state. */
  async openGroup(groupId: number, bootstrapVoters?: number[]): Promise<LevelRaftStorage> {
    assert(Number.isSafeInteger(groupId) && groupId >= 0, `bad groupId ${groupId}`);
    assert(!this.groups.has(groupId), `group ${groupId} already open`);
    const report: RecoveryReport = { truncatedFromIndex: undefined, droppedEntries: 0, problems: [], hardStateRebuilt: false, snapshotLost: false };
    const problem = (p: string) => {
      if (report.problems.length < MAX_PROBLEMS_REPORTED) report.problems.push(p);
    };
    const mem = new MemoryStorage();
    const repairs: BatchOp[] = [];

    const snapRec = await this.db.get(tagKey(groupId, TAG_SNAP));
    let snap: Snapshot | undefined;
    if (snapRec !== undefined) {
      snap = decodeSnapshot(snapRec);
      if (snap === undefined) {
        report.snapshotLost = true;
        problem('snapshot: unreadable record');
        repairs.push({ type: 'del', key: tagKey(groupId, TAG_SNAP) });
      } else if (snap.metadata.index > 0) {
        mem.applySnapshot(snap);
      }
    }

    // Entries in key order; stop at the first bad one and delete it and everything after.
    const ents: Entry[] = [];
    let expect = mem.lastIndex() + 1;
    let lastTerm = mem.term(mem.lastIndex()) ?? 0;
    let bad = false;
    for await (const [key, value] of this.db.iterator({ gte: entryKey(groupId, 0), lte: entryKey(groupId, Number.MAX_SAFE_INTEGER) })) {
      const keyIndex = Number(key.readBigUInt64BE(10));
      if (report.snapshotLost) {
        // Without the snapshot the entries have no base: drop them all.
        repairs.push({ type: 'del', key });
        report.droppedEntries++;
        continue;
      }
      if (keyIndex < expect && !bad) {
        // Left over from before the snapshot (a compaction that did not finish): drop.
        if (keyIndex <= mem.snapshot().metadata.index) {
          repairs.push({ type: 'del', key });
          continue;
        }
      }
      if (!bad) {
        const e = decodeEntry(value);
        let why = '';
        if (e === undefined) why = 'checksum mismatch or short record';
        else if (e.index !== keyIndex) why = `record says index ${e.index}`;
        else if (keyIndex !== expect) why = `gap: expected ${expect}`;
        else if (e.term < lastTerm) why = `term ${e.term} below previous ${lastTerm}`;
        if (why === '' && e !== undefined) {
          ents.push(e);
          expect++;
          lastTerm = e.term;
          continue;
        }
        bad = true;
        report.truncatedFromIndex = keyIndex;
        problem(`entry ${keyIndex}: ${why}`);
      }
      repairs.push({ type: 'del', key });
      report.droppedEntries++;
    }
    if (report.snapshotLost && report.droppedEntries > 0) report.truncatedFromIndex = 0;
    mem.append(ents);

    const hsRec = await this.db.get(tagKey(groupId, TAG_HARD));
    let hs: HardState | undefined;
    if (hsRec !== undefined) {
      hs = decodeHardState(hsRec);
      if (hs === undefined) {
        report.hardStateRebuilt = true;
        problem('hard state: unreadable record');
        // The term cannot be lower than any term in our log; the vote is unknown.
        hs = { term: mem.term(mem.lastIndex()) ?? 0, vote: NONE, commit: mem.snapshot().metadata.index };
        repairs.push({ type: 'put', key: tagKey(groupId, TAG_HARD), value: encodeHardState(hs) });
      }
    } else if (bootstrapVoters !== undefined && snapRec === undefined && ents.length === 0) {
      // A brand-new group: the founding membership as a snapshot at index 1 (see MemoryStorage.bootstrap).
      const boot = MemoryStorage.bootstrap(bootstrapVoters);
      mem.applySnapshot(boot.snapshot());
      hs = boot.hardStateNow();
      repairs.push({ type: 'put', key: tagKey(groupId, TAG_SNAP), value: encodeSnapshot(boot.snapshot()) });
      repairs.push({ type: 'put', key: tagKey(groupId, TAG_HARD), value: encodeHardState(hs) });
    }
    if (hs !== undefined) {
      const last = mem.lastIndex();
      if (hs.commit > last) {
        // Committed entries were lost with the tail: commit cannot point past what we have.
        problem(`hard state commit ${hs.commit} beyond last valid entry ${last}: lowered`);
        hs = { ...hs, commit: last };
        repairs.push({ type: 'put', key: tagKey(groupId, TAG_HARD), value: encodeHardState(hs) });
      }
      if (hs.commit < mem.snapshot().metadata.index) hs = { ...hs, commit: mem.snapshot().metadata.index };
      mem.setHardState(hs);
    }
    if (repairs.length > 0) await this.db.batch(repairs, { sync: true });
    const s = new LevelRaftStorage(this, groupId, mem, report);
    this.groups.set(groupId, s);
    return s;
  }

  /**
   * Group commit: persists the Ready output of many groups in ONE synced level batch (one fsync).
   * Per group, in order: snapshot (replacing the log), entries (overwriting a conflicting
   * suffix), hard state. The in-memory views are updated only after the batch is durable.
   */
  async persist(writes: GroupWrite[]): Promise<void> {
    const ops: BatchOp[] = [];
    // Track each group's first/last index as if earlier writes in this batch were applied.
    const shape = new Map<LevelRaftStorage, { first: number; last: number }>();
    for (const w of writes) {
      const st = w.storage;
      let sh = shape.get(st);
      if (sh === undefined) shape.set(st, (sh = { first: st.firstIndex(), last: st.lastIndex() }));
      if (w.snapshot !== undefined) {
        ops.push({ type: 'put', key: tagKey(st.groupId, TAG_SNAP), value: encodeSnapshot(w.snapshot) });
        for (let i = sh.first; i <= sh.last; i++) ops.push({ type: 'del', key: entryKey(st.groupId, i) });
        sh.first = w.snapshot.metadata.index + 1;
        sh.last = w.snapshot.metadata.index;
      }
      if (w.entries !== undefined && w.entries.length > 0) {
        const first = (w.entries[0] as Entry).index;
        const newLast = (w.entries[w.entries.length - 1] as Entry).index;
        assert(first <= sh.last + 1, `entries start at ${first}, after a gap (last ${sh.last})`);
        for (const e of w.entries) {
          if (e.index < sh.first) continue; // already compacted
          ops.push({ type: 'put', key: entryKey(st.groupId, e.index), value: encodeEntry(e) });
        }
        // A shorter overwrite leaves stale entries past newLast: delete them.
        for (let i = newLast + 1; i <= sh.last; i++) ops.push({ type: 'del', key: entryKey(st.groupId, i) });
        sh.last = newLast;
      }
      if (w.hardState !== undefined) ops.push({ type: 'put', key: tagKey(st.groupId, TAG_HARD), value: encodeHardState(w.hardState) });
    }
    if (ops.length > 0) await this.db.batch(ops, { sync: true });
    for (const w of writes) w.storage._applyDurable(w);
  }
}

export class LevelRaftStorage implements Storage {
  constructor(
    private readonly owner: LevelRaftDb,
    readonly groupId: number,
    private readonly mem: MemoryStorage,
    readonly recovery: RecoveryReport,
  ) {}

  initialState(): { hardState: HardState; confState: ConfState } {
    return this.mem.initialState();
  }
  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    return this.mem.entries(lo, hi, maxSizeBytes);
  }
  term(i: number): number | undefined {
    return this.mem.term(i);
  }
  lastIndex(): number {
    return this.mem.lastIndex();
  }
  firstIndex(): number {
    return this.mem.firstIndex();
  }
  snapshot(): Snapshot {
    return this.mem.snapshot();
  }
  hardState(): HardState {
    return this.mem.hardStateNow();
  }

  /** Persists one group's Ready alone (one synced batch); prefer LevelRaftDb.persist for many. */
  async persistReady(rd: { snapshot?: Snapshot; entries: Entry[]; hardState?: HardState }): Promise<void> {
    const w: GroupWrite = { storage: this, entries: rd.entries };
    if (rd.snapshot) w.snapshot = rd.snapshot;
    if (rd.hardState) w.hardState = rd.hardState;
    await this.owner.persist([w]);
  }

  /** @internal called by LevelRaftDb.persist after the batch is durable. */
  _applyDurable(w: GroupWrite): void {
    if (w.snapshot) this.mem.applySnapshot(w.snapshot);
    if (w.entries && w.entries.length > 0) this.mem.append(w.entries);
    if (w.hardState) this.mem.setHardState(w.hardState);
  }

  /**
   * Records a snapshot of the state machine at applied index `index` and deletes the entries
   * up to `compactIndex` (default: index), in one synced batch. compactIndex <= index.
   */
  async createSnapshotAndCompact(index: number, confState: ConfState, data: Uint8Array, compactIndex = index): Promise<Snapshot> {
    assert(compactIndex <= index, `compact ${compactIndex} beyond snapshot ${index}`);
    const term = this.mem.term(index);
    if (term === undefined) throw new StorageCorruptError(`snapshot index ${index} not in the log`);
    const snap: Snapshot = { metadata: { index, term, confState: cloneConfState(confState) }, data };
    const ops: BatchOp[] = [{ type: 'put', key: tagKey(this.groupId, TAG_SNAP), value: encodeSnapshot(snap) }];
    for (let i = this.mem.firstIndex(); i <= compactIndex; i++) ops.push({ type: 'del', key: entryKey(this.groupId, i) });
    await this.owner.db.batch(ops, { sync: true });
    this.mem.createSnapshot(index, confState, data);
    this.mem.compact(compactIndex);
    return snap;
  }
}
