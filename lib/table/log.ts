// The durable Raft log seam of a host: every group's log and hard state, written for many
// groups in one batch (group commit: one fsync covers every group's Ready of a loop turn).
import type { ConfState, Entry, HardState, Snapshot, Storage } from '../raft/index.js';
import { MemoryStorage } from '../raft/index.js';

/** A group's log as the core reads it, kept in step with what persist() wrote. */
export interface GroupLog extends Storage {
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot;
  compact(index: number): void;
}

export interface GroupWrite {
  groupId: number;
  entries: Entry[];
  hardState?: HardState;
  snapshot?: Snapshot;
}

export interface DurableLog {
  /** Opens a group's log; a new group with `bootstrapVoters` starts with that membership. */
  open(groupId: number, bootstrapVoters?: number[]): Promise<GroupLog>;
  /** Writes every group's part in one batch; `sync` makes it durable before resolving. */
  persist(writes: GroupWrite[], sync: boolean): Promise<void>;
  /** Drops entries up to `index` (after a snapshot at or past it). */
  compact(groupId: number, index: number): Promise<void>;
  /** Deletes a group's whole log, hard state and snapshot metadata (the group is gone for good). */
  drop(groupId: number): Promise<void>;
  close(): Promise<void>;
}

/** Not durable: for tests and a single-process embedded table that accepts losing its log. */
export class MemoryDurableLog implements DurableLog {
  private readonly groups = new Map<number, MemoryStorage>();

  async open(groupId: number, bootstrapVoters?: number[]): Promise<GroupLog> {
    let g = this.groups.get(groupId);
    if (!g) {
      g = bootstrapVoters && bootstrapVoters.length > 0 ? MemoryStorage.bootstrap(bootstrapVoters) : new MemoryStorage();
      this.groups.set(groupId, g);
    }
    return g;
  }

  async persist(writes: GroupWrite[]): Promise<void> {
    for (const w of writes) {
      const g = this.groups.get(w.groupId);
      if (!g) continue;
      if (w.snapshot) g.applySnapshot(w.snapshot);
      if (w.entries.length > 0) g.append(w.entries);
      if (w.hardState) g.setHardState(w.hardState);
    }
  }

  async compact(groupId: number, index: number): Promise<void> {
    this.groups.get(groupId)?.compact(index);
  }

  async drop(groupId: number): Promise<void> {
    this.groups.delete(groupId);
  }

  async close(): Promise<void> {
    this.groups.clear();
  }
}
