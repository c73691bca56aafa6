// Public API of containerstack/raft: the pure consensus core, its storages and the driver.
export { NONE, makeMessage, entrySizeBytes, emptySnapshot, emptyConfState, isEmptyHardState } from './types.js';
export type {
  Entry, EntryType, HardState, ConfState, SnapshotMetadata, Snapshot, ConfChange, RaftRole, MessageType, Message, ReadState,
  SoftState, Ready,
} from './types.js';
export {
  NotLeaderError, ProposalDroppedError, ConfChangePendingError, ReadIndexDroppedError, CompactedError, UnavailableError,
  SnapshotOutOfDateError, RaftConfigError, InvalidMessageError, StorageCorruptError, StoppedError,
} from './errors.js';
export type { Storage } from './storage.js';
export { MemoryStorage, limitSize } from './storage.js';
export { encodeConfChange, decodeConfChange } from './confchange.js';
export type { RaftConfig } from './raft.js';
export { RawNode } from './rawnode.js';
export type { RaftStatus, ProgressStatus } from './rawnode.js';
export { LevelRaftDb, LevelRaftStorage, encodeEntry, entryKey } from './level-storage.js';
export type { GroupWrite, RecoveryReport } from './level-storage.js';
export { crc32 } from './crc32.js';
export { splitSnapshot, SnapshotAssembler } from './snapshot-chunks.js';
export type { SnapshotChunk, ChunkResult } from './snapshot-chunks.js';
export { RaftDriver, intervalTicks } from './driver.js';
export type { DriverStorage, Transport, StateMachine, TickSource, RaftDriverOptions } from './driver.js';
