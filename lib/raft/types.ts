// Plain data types shared by the raft core, its storages and drivers. Everything here is
// serializable data (no classes), so a driver can put it on the wire or on disk as it likes.

/** Node id 0 means "nobody" (no leader, no vote). Real ids are positive safe integers. */
export const NONE = 0;

export type EntryType = 'normal' | 'confChange';

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** For 'confChange' entries: encodeConfChange(...). An empty normal entry is the leader's no-op. */
  data: Uint8Array;
}

/** What must survive a crash besides the log: persisted before any message that depends on it is sent. */
export interface HardState {
  term: number;
  /** Who this node voted for in `term`; NONE if nobody. */
  vote: number;
  commit: number;
}

/** Membership of a group. invariant: voters and learners are disjoint. */
export interface ConfState {
  voters: number[];
  learners: number[];
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** The state machine's image at metadata.index. Opaque to the core. */
  data: Uint8Array;
}

/**
 * Membership change, applied one at a time (not joint consensus): see raft.ts for the rule that
 * makes it safe (a leader proposes one only after an entry of its own term is applied and no
 * other change is pending).
 */
export type ConfChange =
  | { type: 'addNode'; nodeId: number }
  | { type: 'addLearner'; nodeId: number }
  | { type: 'removeNode'; nodeId: number };

export type RaftRole = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/**
 * Message types. Local ones ('hup', 'beat', 'checkQuorum', 'prop' from the app, 'snapStatus',
 * 'unreachable') never cross the wire; RawNode.step refuses them from the network.
 */
export type MessageType =
  | 'hup'
  | 'beat'
  | 'checkQuorum'
  | 'prop'
  | 'app'
  | 'appResp'
  | 'vote'
  | 'voteResp'
  | 'preVote'
  | 'preVoteResp'
  | 'snap'
  | 'snapStatus'
  | 'unreachable'
  | 'heartbeat'
  | 'heartbeatResp'
  | 'transferLeader'
  | 'timeoutNow'
  | 'readIndex'
  | 'readIndexResp';

export interface Message {
  type: MessageType;
  /** The raft group this message belongs to, so a multi-raft host can route many groups over one link. */
  groupId: number;
  from: number;
  to: number;
  /** 0 for local messages. */
  term: number;
  /** app: term of the entry at `index`; vote: candidate's last term; appResp reject: hint term. */
  logTerm: number;
  /** app: index preceding `entries`; appResp: the index accepted (or rejected); vote: candidate's last index. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** appResp with reject: the follower's guess of where the leader should probe next. */
  rejectHint: number;
  /** 'snap': metadata plus data; a driver may stream `snapshot.data` in chunks (see snapshot-chunks.ts). */
  snapshot?: Snapshot;
  /** readIndex/readIndexResp/heartbeat/heartbeatResp: the read request this is about; vote: 'transfer' when forced. */
  context?: string;
  /** heartbeat/heartbeatResp: the leader's tick counter when the heartbeat was sent (lease reads). */
  leaseTick?: number;
}

/** A linearizable read point: once the state machine has applied `index`, reads for `context` may be served. */
export interface ReadState {
  index: number;
  context: string;
}

export interface SoftState {
  lead: number;
  role: RaftRole;
}

/** One batch of work for the driver: persist entries/hardState/snapshot, then send messages, then apply. */
export interface Ready {
  softState?: SoftState;
  /** Set when changed since the last Ready; persist it with `entries` in one synced write. */
  hardState?: HardState;
  readStates: ReadState[];
  /** Entries to append to stable storage (may overwrite a suffix). */
  entries: Entry[];
  /** A snapshot to install in storage and in the state machine. */
  snapshot?: Snapshot;
  /** Committed entries to apply, in order, after persisting this Ready. */
  committedEntries: Entry[];
  /** Messages to send only after entries, hardState and snapshot are durable. */
  messages: Message[];
  /** True when entries or hardState (term/vote) need an fsync before sending. */
  mustSync: boolean;
}

export function makeMessage(type: MessageType, groupId: number, from: number, to: number, term: number): Message {
  return { type, groupId, from, to, term, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0 };
}

export function entrySizeBytes(e: Entry): number {
  // A fixed overhead approximates the framing so empty entries still count for batching.
  return e.data.byteLength + 24;
}

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === NONE && hs.commit === 0;
}

export function emptyConfState(): ConfState {
  return { voters: [], learners: [] };
}

export function emptySnapshot(): Snapshot {
  return { metadata: { index: 0, term: 0, confState: emptyConfState() }, data: new Uint8Array(0) };
}
