// LevelDurableLog: the Raft log and hard state of every group of a host in one level
// database. One persist() is one level batch, synced when Raft needs it: a single fsync
// covers all groups (group commit). Every record carries a CRC32 over its index and bytes, so
// a corrupt or torn tail found at open is truncated (never served, never a refusal to start);
// LevelDB's own log checksums already drop a half-written batch after kill -9.
import { crc32 } from 'node:zlib';
import { Level } from 'level';
import { silentLogger, type Logger } from '../common/index.js';
import { MemoryStorage, type ConfState, type Entry, type HardState, type Snapshot } from '../raft/index.js';
import type { DurableLog, GroupLog, GroupWrite } from './log.js';

const K_ENTRY = 0x6c; // 'l'
const K_HARD = 0x68; // 'h'
const K_SNAP = 0x73; // 's'

function key(kind: number, groupId: number, index?: number): Buffer {
  const b = Buffer.allocUnsafe(index === undefined ? 5 : 13);
  b[0] = kind;
  b.writeUInt32BE(groupId, 1);
  if (index !== undefined) b.writeBigUInt64BE(BigInt(index), 5);
  return b;
}

function seal(body: Buffer, index: number): Buffer {
  const out = Buffer.allocUnsafe(4 + body.length);
  body.copy(out, 4);
  const idx = Buffer.allocUnsafe(8);
  idx.writeBigUInt64BE(BigInt(index));
  out.writeUInt32BE(crc32(body, crc32(idx)) >>> 0, 0);
  return out;
}

/** The body when the CRC matches, undefined otherwise. */
function unseal(v: Uint8Array, index: number): Buffer | undefined {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (b.length < 4) return undefined;
  const body = b.subarray(4);
  const idx = Buffer.allocUnsafe(8);
  idx.writeBigUInt64BE(BigInt(index));
  return (crc32(body, crc32(idx)) >>> 0) === b.readUInt32BE(0) ? body : undefined;
}

function encodeEntry(e: Entry): Buffer {
  const b = Buffer.allocUnsafe(9 + e.data.length);
  b.writeBigUInt64BE(BigInt(e.term), 0);
  b[8] = e.type === 'confChange' ? 1 : 0;
  b.set(e.data, 9);
  return seal(b, e.index);
}

function decodeEntry(v: Uint8Array, index: number): Entry | undefined {
  const b = unseal(v, index);
  if (!b || b.length < 9) return undefined;
  return { term: Number(b.readBigUInt64BE(0)), index, type: b[8] === 1 ? 'confChange' : 'normal', data: Buffer.from(b.subarray(9)) };
}

function encodeHard(hs: HardState): Buffer {
  const b = Buffer.allocUnsafe(24);
  b.writeBigUInt64BE(BigInt(hs.term), 0);
  b.writeBigUInt64BE(BigInt(hs.vote), 8);
  b.writeBigUInt64BE(BigInt(hs.commit), 16);
  return seal(b, 0);
}

function encodeSnapMeta(s: Snapshot['metadata']): Buffer {
  return seal(Buffer.from(JSON.stringify({ index: s.index, term: s.term, voters: s.confState.voters, learners: s.confState.learners })), 0);
}

export interface OpenReport {
  groupId: number;
  entries: number;
  truncatedFrom?: number;
  reason?: string;
}

export class LevelDurableLog implements DurableLog {
  // hardOnDisk: the hard state last written; a change of commit alone is not written by itself
  // (commit is recoverable from the leader, and skipping that write takes a disk round trip off
  // every commit), it rides along with the next write that is made anyway.
  private readonly caches = new Map<number, { mem: MemoryStorage; lastDurable: number; hardOnDisk?: HardState }>();
  /** What open() found and repaired, for logs and tests. */
  readonly reports: OpenReport[] = [];

  private constructor(
    readonly db: Level<Uint8Array, Uint8Array>,
    private readonly log: Logger,
  ) {}

  static async open(path: string, logger: Logger = silentLogger): Promise<LevelDurableLog> {
    const db = new Level<Uint8Array, Uint8Array>(path, { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    return new LevelDurableLog(db, logger);
  }

  async open(groupId: number, bootstrapVoters?: number[]): Promise<GroupLog> {
    const cached = this.caches.get(groupId);
    if (cached) return cached.mem;
    const snapRaw = await this.db.get(key(K_SNAP, groupId));
    const hardRaw = await this.db.get(key(K_HARD, groupId));
    const mem = new MemoryStorage();
    const report: OpenReport = { groupId, entries: 0 };
    if (!snapRaw && !hardRaw) {
      if (bootstrapVoters && bootstrapVoters.length > 0) {
        const boot = MemoryStorage.bootstrap(bootstrapVoters);
        const snap = boot.snapshot();
        mem.applySnapshot(snap);
        mem.setHardState(boot.initialState().hardState);
        await this.db.batch([
          { type: 'put', key: key(K_SNAP, groupId), value: encodeSnapMeta(snap.metadata) },
          { type: 'put', key: key(K_HARD, groupId), value: encodeHard(boot.initialState().hardState) },
        ], { sync: true });
      }
      this.caches.set(groupId, { mem, lastDurable: mem.lastIndex(), hardOnDisk: mem.initialState().hardState });
      this.reports.push(report);
      return mem;
    }
    let snapIndex = 0;
    if (snapRaw) {
      const body = unseal(snapRaw, 0);
      if (!body) throw new Error(`raft log: snapshot metadata of group ${groupId} is corrupt`);
      const m = JSON.parse(body.toString()) as { index: number; term: number; voters: number[]; learners: number[] };
      const confState: ConfState = { voters: m.voters, learners: m.learners };
      mem.applySnapshot({ metadata: { index: m.index, term: m.term, confState }, data: new Uint8Array(0) });
      snapIndex = m.index;
    }
    // Entries must run contiguously from the snapshot with valid checksums and non-decreasing
    // terms; the first that does not is where the tail is cut.
    const entries: Entry[] = [];
    let expect = snapIndex + 1;
    let prevTerm = mem.term(snapIndex) ?? 0;
    let cutAt: number | undefined;
    for await (const [k, v] of this.db.iterator({ gte: key(K_ENTRY, groupId, snapIndex + 1), lt: key(K_ENTRY, groupId + 1, 0) })) {
      const idx = Number(Buffer.from(k).readBigUInt64BE(5));
      const e = idx === expect ? decodeEntry(v, idx) : undefined;
      if (!e || e.term < prevTerm) {
        cutAt = idx === expect ? idx : expect;
        report.reason = idx !== expect ? `gap: expected index ${expect}, found ${idx}` : !e ? `checksum mismatch at ${idx}` : `term went backwards at ${idx}`;
        break;
      }
      entries.push(e);
      prevTerm = e.term;
      expect++;
    }
    if (cutAt !== undefined) {
      report.truncatedFrom = cutAt;
      this.log.warn({ groupId, from: cutAt, reason: report.reason }, 'raft log: corrupt or torn tail truncated');
      await this.db.clear({ gte: key(K_ENTRY, groupId, cutAt), lt: key(K_ENTRY, groupId + 1, 0) });
    }
    if (entries.length > 0) mem.append(entries);
    report.entries = entries.length;
    if (hardRaw) {
      const body = unseal(hardRaw, 0);
      if (body) {
        const hs: HardState = { term: Number(body.readBigUInt64BE(0)), vote: Number(body.readBigUInt64BE(8)), commit: Number(body.readBigUInt64BE(16)) };
        // A commit past what survived would make the core apply entries it does not have:
        // keep the vote and term (safety), and let the leader re-send the lost tail.
        if (hs.commit > mem.lastIndex()) {
          this.log.warn({ groupId, commit: hs.commit, last: mem.lastIndex() }, 'raft log: commit index beyond surviving log; clamped');
          hs.commit = mem.lastIndex();
        }
        if (hs.commit < snapIndex) hs.commit = snapIndex;
        mem.setHardState(hs);
      } else {
        // Losing the vote could let this node vote twice in a term: refuse to guess.
        throw new Error(`raft log: hard state of group ${groupId} is corrupt; restore this member from a peer`);
      }
    }
    this.caches.set(groupId, { mem, lastDurable: mem.lastIndex(), hardOnDisk: mem.initialState().hardState });
    this.reports.push(report);
    return mem;
  }

  async persist(writes: GroupWrite[], sync: boolean): Promise<void> {
    const ops: ({ type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array })[] = [];
    const clears: { groupId: number; from: number; to: number }[] = [];
    for (const w of writes) {
      const c = this.caches.get(w.groupId);
      if (!c) continue;
      if (w.snapshot) {
        ops.push({ type: 'put', key: key(K_SNAP, w.groupId), value: encodeSnapMeta(w.snapshot.metadata) });
        // Entries at or below the snapshot are dead; deleted after the batch (open() ignores them).
        clears.push({ groupId: w.groupId, from: 0, to: w.snapshot.metadata.index + 1 });
      }
      if (w.entries.length > 0) {
        for (const e of w.entries) ops.push({ type: 'put', key: key(K_ENTRY, w.groupId, e.index), value: encodeEntry(e) });
        const newLast = (w.entries[w.entries.length - 1] as Entry).index;
        // A conflicting suffix beyond the new entries must go in the same batch, or a restart
        // would splice old entries onto new ones.
        for (let i = newLast + 1; i <= c.lastDurable; i++) ops.push({ type: 'del', key: key(K_ENTRY, w.groupId, i) });
      }
      if (w.hardState) {
        const prev = c.hardOnDisk;
        const commitOnly = prev !== undefined && prev.term === w.hardState.term && prev.vote === w.hardState.vote;
        if (!commitOnly || w.entries.length > 0 || w.snapshot) {
          ops.push({ type: 'put', key: key(K_HARD, w.groupId), value: encodeHard(w.hardState) });
          c.hardOnDisk = w.hardState;
        }
      }
    }
    if (ops.length > 0) await this.db.batch(ops, { sync });
    for (const w of writes) {
      const c = this.caches.get(w.groupId);
      if (!c) continue;
      if (w.snapshot) c.mem.applySnapshot(w.snapshot);
      if (w.entries.length > 0) c.mem.append(w.entries);
      if (w.hardState) c.mem.setHardState(w.hardState);
      c.lastDurable = c.mem.lastIndex();
    }
    for (const cl of clears) await this.db.clear({ gte: key(K_ENTRY, cl.groupId, cl.from), lt: key(K_ENTRY, cl.groupId, cl.to) });
  }

  async compact(groupId: number, index: number): Promise<void> {
    const c = this.caches.get(groupId);
    if (!c) return;
    c.mem.compact(index);
    // The snapshot marker (created by the host) must be durable before entries go.
    await this.db.put(key(K_SNAP, groupId), encodeSnapMeta(c.mem.snapshot().metadata), { sync: true });
    await this.db.clear({ gte: key(K_ENTRY, groupId, 0), lt: key(K_ENTRY, groupId, index) });
  }

  async drop(groupId: number): Promise<void> {
    this.caches.delete(groupId);
    await this.db.batch([
      { type: 'del', key: key(K_HARD, groupId) },
      { type: 'del', key: key(K_SNAP, groupId) },
    ]);
    await this.db.clear({ gte: key(K_ENTRY, groupId, 0), lt: key(K_ENTRY, groupId + 1, 0) });
  }

  async close(): Promise<void> {
    this.caches.clear();
    await this.db.close();
  }
}
