// The core's view of the log: stable entries in Storage plus an unstable tail (and maybe an
// unstable snapshot) that the driver has not persisted yet. Port of etcd's raftLog/unstable.
import { assert } from '../common/index.js';
import { CompactedError } from './errors.js';
import { limitSize, type Storage } from './storage.js';
import type { Entry, Snapshot } from './types.js';

class Unstable {
  snapshot: Snapshot | undefined = undefined;
  // invariant: entries[i].index === offset + i
  entries: Entry[] = [];
  offset: number;
  constructor(offset: number) {
    this.offset = offset;
  }
  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.metadata.index + 1 : undefined;
  }
  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.metadata.index : undefined;
  }
  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return (this.entries[i - this.offset] as Entry).term;
  }
  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    // Only drop what was persisted: if the tail was replaced since that Ready, the term differs.
    if (gt === t && i >= this.offset) {
      this.entries = this.entries.slice(i + 1 - this.offset);
      this.offset = i + 1;
    }
  }
  stableSnapTo(i: number): void {
    if (this.snapshot && this.snapshot.metadata.index === i) this.snapshot = undefined;
  }
  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.entries = [];
    this.snapshot = s;
  }
  truncateAndAppend(ents: Entry[]): void {
    const after = (ents[0] as Entry).index;
    if (after === this.offset + this.entries.length) {
      this.entries = this.entries.concat(ents);
    } else if (after <= this.offset) {
      this.offset = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents);
    }
  }
}

export class RaftLog {
  readonly unstable: Unstable;
  // invariant: applied <= committed <= lastIndex()
  committed: number;
  applied: number;

  constructor(readonly storage: Storage) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }
  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }
  /** undefined when i is compacted or beyond the last index. */
  term(i: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    return this.unstable.maybeTerm(i) ?? this.storage.term(i);
  }
  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, 'last term unknown');
    return t;
  }
  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }
  isUpToDate(lasti: number, term: number): boolean {
    const lt = this.lastTerm();
    return term > lt || (term === lt && lasti >= this.lastIndex());
  }

  /** Follower append: returns the new last index, or undefined when (index, logTerm) does not match. */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      assert(ci > this.committed, `entry ${ci} conflicts with committed entry (committed ${this.committed})`);
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = (ents[0] as Entry).index - 1;
    assert(after >= this.committed, `append after ${after} is below committed ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** First index whose entry differs from ents (by term), or 0 if all match (or are new but none conflict). */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index <= index whose term is <= term, with that term (0 if compacted), so a
   * rejected leader can skip a whole term of divergent entries in one round trip.
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (; index > 0; index--) {
      const t = this.term(index);
      if (t === undefined) return [index, 0];
      if (t <= term) return [index, t];
    }
    return [0, 0];
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  hasNextCommittedEnts(): boolean {
    if (this.hasPendingSnapshot()) return false;
    return this.committed > this.applied;
  }

  nextCommittedEnts(maxSizeBytes: number): Entry[] {
    if (!this.hasNextCommittedEnts()) return [];
    const lo = Math.max(this.applied + 1, this.firstIndex());
    return this.slice(lo, this.committed + 1, maxSizeBytes);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  commitTo(tc: number): void {
    if (this.committed < tc) {
      assert(tc <= this.lastIndex(), `commit ${tc} beyond last index ${this.lastIndex()}`);
      this.committed = tc;
    }
  }
  appliedTo(i: number): void {
    if (i === 0) return;
    assert(i <= this.committed && i >= this.applied, `applied ${i} out of range [${this.applied}, ${this.committed}]`);
    this.applied = i;
  }
  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }
  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  maybeCommit(maxIndex: number, term: number): boolean {
    // Only entries of the current term are committed by counting (Raft §5.4.2).
    if (maxIndex > this.committed && this.term(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  restore(s: Snapshot): void {
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }

  /** Entries from i to the last, within maxSizeBytes. Throws CompactedError if i was compacted. */
  entries(i: number, maxSizeBytes: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxSizeBytes);
  }

  /** Entries in [lo, hi) within maxSizeBytes (at least one). Throws CompactedError if lo is compacted. */
  slice(lo: number, hi: number, maxSizeBytes: number): Entry[] {
    if (lo >= hi) return [];
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(`index ${lo} compacted (first ${first})`);
    assert(hi <= this.lastIndex() + 1, `slice [${lo}, ${hi}) beyond last ${this.lastIndex()}`);
    let ents: Entry[] = [];
    const off = this.unstable.offset;
    if (lo < off) {
      const stored = this.storage.entries(lo, Math.min(hi, off), maxSizeBytes);
      // Storage returned fewer than asked: the size limit was hit, stop here.
      if (stored.length < Math.min(hi, off) - lo) return stored;
      ents = stored;
    }
    if (hi > off) {
      const u = this.unstable.entries.slice(Math.max(lo, off) - off, hi - off);
      ents = ents.length > 0 ? ents.concat(u) : u;
    }
    return limitSize(ents, maxSizeBytes);
  }

  /** Scan committed-but-unapplied entries for a membership change (bounded by the commit window). */
  hasUnappliedConfChange(): boolean {
    if (this.committed <= this.applied) return false;
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (lo > this.committed) return false;
    const ents = this.slice(lo, this.committed + 1, Number.MAX_SAFE_INTEGER);
    return ents.some((e) => e.type === 'confChange');
  }
}
