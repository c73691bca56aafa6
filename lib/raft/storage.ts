// The storage interface the raft core reads from (etcd's Storage), and MemoryStorage, the
// in-memory implementation used by tests, the simulator and as the cache in LevelRaftStorage.
// The core only reads storage; the driver writes it (append, setHardState, applySnapshot)
// from each Ready before calling advance().
import { assert, assertSafeInteger } from '../common/index.js';
import { CompactedError, SnapshotOutOfDateError, UnavailableError } from './errors.js';
import type { ConfState, Entry, HardState, Snapshot } from './types.js';
import { emptySnapshot, entrySizeBytes, NONE } from './types.js';

export interface Storage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at most maxSizeBytes but always at least one if any. Throws CompactedError if lo < firstIndex(). */
  entries(lo: number, hi: number, maxSizeBytes: number): Entry[];
  /** Term of entry i, for firstIndex()-1 <= i <= lastIndex(); undefined otherwise. */
  term(i: number): number | undefined;
  lastIndex(): number;
  /** Index of the first entry available (the one after the snapshot). */
  firstIndex(): number;
  snapshot(): Snapshot;
}

/** Keeps a prefix of ents whose total size is within maxSizeBytes, but at least one entry. */
export function limitSize(ents: Entry[], maxSizeBytes: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = entrySizeBytes(ents[0] as Entry);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entrySizeBytes(ents[n] as Entry);
    if (size > maxSizeBytes) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: NONE, commit: 0 };
  private snap: Snapshot = emptySnapshot();
  // invariant: ents[0] is a dummy entry carrying the snapshot's index and term; ents[i].index === ents[0].index + i
  private ents: Entry[] = [{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }];

  /**
   * Storage for a brand-new group's founding members: the initial membership is a snapshot at
   * index 1, term 1, so a node that joins later learns the founding membership by snapshot and
   * never from an empty log (which would let it think it is alone).
   */
  static bootstrap(voters: number[], data: Uint8Array = new Uint8Array(0)): MemoryStorage {
    const s = new MemoryStorage();
    s.applySnapshot({ metadata: { index: 1, term: 1, confState: { voters: [...voters], learners: [] } }, data });
    s.setHardState({ term: 1, vote: NONE, commit: 1 });
    return s;
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.snap.metadata.confState) };
  }

  hardStateNow(): HardState {
    return { ...this.hardState };
  }

  setHardState(hs: HardState): void {
    assertSafeInteger(hs.term, 'hardState.term');
    assertSafeInteger(hs.commit, 'hardState.commit');
    this.hardState = { ...hs };
  }

  private offset(): number {
    return (this.ents[0] as Entry).index;
  }

  entries(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    const offset = this.offset();
    if (lo <= offset) throw new CompactedError(`entries from ${lo} compacted (first is ${offset + 1})`);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(`entries up to ${hi - 1} unavailable (last is ${this.lastIndex()})`);
    if (this.ents.length === 1) return [];
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxSizeBytes);
  }

  term(i: number): number | undefined {
    const offset = this.offset();
    if (i < offset || i - offset >= this.ents.length) return undefined;
    return (this.ents[i - offset] as Entry).term;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces everything with the snapshot (a follower installing the leader's snapshot). */
  applySnapshot(snap: Snapshot): void {
    if (snap.metadata.index < this.snap.metadata.index) {
      throw new SnapshotOutOfDateError(`snapshot ${snap.metadata.index} older than ${this.snap.metadata.index}`);
    }
    this.snap = { metadata: { ...snap.metadata, confState: cloneConfState(snap.metadata.confState) }, data: snap.data };
    this.ents = [{ term: snap.metadata.term, index: snap.metadata.index, type: 'normal', data: new Uint8Array(0) }];
    if (this.hardState.commit < snap.metadata.index) this.hardState = { ...this.hardState, commit: snap.metadata.index };
  }

  /** Records a snapshot of the state machine at applied index i (<= lastIndex); does not compact. */
  createSnapshot(i: number, confState: ConfState, data: Uint8Array): Snapshot {
    assert(i > this.snap.metadata.index, `createSnapshot ${i} not after ${this.snap.metadata.index}`);
    assert(i <= this.lastIndex(), `createSnapshot ${i} beyond last index ${this.lastIndex()}`);
    const term = this.term(i);
    assert(term !== undefined, 'createSnapshot: term unknown');
    this.snap = { metadata: { index: i, term, confState: cloneConfState(confState) }, data };
    return this.snap;
  }

  /** Drops entries up to and including compactIndex (which must be <= the snapshot index to be useful). */
  compact(compactIndex: number): void {
    const offset = this.offset();
    if (compactIndex <= offset) return;
    assert(compactIndex <= this.lastIndex(), `compact ${compactIndex} beyond last ${this.lastIndex()}`);
    const i = compactIndex - offset;
    const head = this.ents[i] as Entry;
    this.ents = [{ term: head.term, index: head.index, type: 'normal', data: new Uint8Array(0) }, ...this.ents.slice(i + 1)];
  }

  /** Appends entries, truncating any conflicting suffix. Entries already compacted are skipped. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = (entries[entries.length - 1] as Entry).index;
    if (last < first) return;
    if (first > (entries[0] as Entry).index) entries = entries.slice(first - (entries[0] as Entry).index);
    const offset = (entries[0] as Entry).index - this.offset();
    assert(offset <= this.ents.length, `append gap: first new ${(entries[0] as Entry).index}, last ${this.lastIndex()}`);
    // In place: appends are the hot path, and copying the whole log per append is O(n^2).
    this.ents.length = offset;
    for (const e of entries) this.ents.push(e);
  }
}

export function cloneConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners] };
}
