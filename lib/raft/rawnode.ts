// RawNode: the application-facing wrapper of the core (etcd's RawNode). The driver calls
// tick/step/propose, then loops: if hasReady(): rd = ready(); persist rd.entries, rd.hardState
// and rd.snapshot (one synced write); send rd.messages; apply rd.committedEntries; advance(rd).
import { assert, assertSafeInteger, isContainerStackError } from '../common/index.js';
import { decodeConfChange, encodeConfChange } from './confchange.js';
import { InvalidMessageError } from './errors.js';
import { isLocalMessageType, Raft, type RaftConfig } from './raft.js';
import type { ConfChange, ConfState, HardState, Message, RaftRole, Ready, SoftState } from './types.js';
import { makeMessage, NONE } from './types.js';

export interface ProgressStatus {
  match: number;
  next: number;
  state: 'probe' | 'replicate' | 'snapshot';
  isLearner: boolean;
  inflight: number;
}

export interface RaftStatus {
  id: number;
  groupId: number;
  term: number;
  vote: number;
  commit: number;
  applied: number;
  lead: number;
  role: RaftRole;
  leadTransferee: number;
  /** Only on the leader. */
  progress?: Map<number, ProgressStatus>;
}

export class RawNode {
  readonly raft: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;
  /** A Ready was handed out and not yet advanced. invariant: at most one outstanding. */
  private outstanding = false;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoft = { lead: this.raft.lead, role: this.raft.role };
    this.prevHard = this.raft.hardState();
  }

  get id(): number {
    return this.raft.id;
  }
  get groupId(): number {
    return this.raft.groupId;
  }

  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (if this node may be leader). */
  campaign(): void {
    this.raft.step(makeMessage('hup', this.raft.groupId, this.raft.id, this.raft.id, 0));
  }

  /** Proposes data; throws NotLeaderError / ProposalDroppedError when it cannot be accepted. */
  propose(data: Uint8Array): void {
    const m = makeMessage('prop', this.raft.groupId, this.raft.id, this.raft.id, 0);
    m.entries = [{ term: 0, index: 0, type: 'normal', data }];
    this.raft.step(m);
  }

  /** Proposes a membership change; one at a time (ConfChangePendingError otherwise). */
  proposeConfChange(cc: ConfChange): void {
    assertSafeInteger(cc.nodeId, 'nodeId');
    const m = makeMessage('prop', this.raft.groupId, this.raft.id, this.raft.id, 0);
    m.entries = [{ term: 0, index: 0, type: 'confChange', data: encodeConfChange(cc) }];
    this.raft.step(m);
  }

  /** Asks the leader to hand leadership to `transferee` (which must be a voter). */
  transferLeader(transferee: number): void {
    const m = makeMessage('transferLeader', this.raft.groupId, transferee, this.raft.id, 0);
    this.raft.step(m);
  }

  /** Requests a linearizable read point; the answer arrives as a ReadState with this context. */
  readIndex(context: string): void {
    const m = makeMessage('readIndex', this.raft.groupId, NONE, this.raft.id, 0);
    m.context = context;
    this.raft.step(m);
  }

  /**
   * Feeds a message from the network. Local-only types and other groups are refused with
   * InvalidMessageError; a forwarded proposal or read that can no longer be served is dropped
   * (its originator retries).
   */
  step(m: Message): void {
    if (isLocalMessageType(m.type)) throw new InvalidMessageError(`local message type ${m.type} from the network`);
    if (m.groupId !== this.raft.groupId) throw new InvalidMessageError(`message for group ${m.groupId} stepped into group ${this.raft.groupId}`);
    if (m.to !== this.raft.id) throw new InvalidMessageError(`message for node ${m.to} stepped into node ${this.raft.id}`);
    if (!Number.isSafeInteger(m.term) || m.term < 0 || !Number.isSafeInteger(m.index) || !Number.isSafeInteger(m.commit)) {
      throw new InvalidMessageError('message with a bad term/index/commit');
    }
    for (const e of m.entries) {
      if (!Number.isSafeInteger(e.term) || !Number.isSafeInteger(e.index) || e.index < 0 || e.term < 0 || !(e.data instanceof Uint8Array)) {
        throw new InvalidMessageError('message with a malformed entry');
      }
    }
    // Responses from nodes we do not know (removed members) are ignored.
    if (m.type === 'prop' || m.type === 'readIndex') {
      // The leader assigns term and index to proposed entries in place: never alias the caller's.
      if (m.type === 'prop') m = { ...m, entries: m.entries.map((e) => ({ ...e })) };
      try {
        this.raft.step(m);
      } catch (e) {
        if (!isContainerStackError(e) || e.code === 'ASSERTION_FAILED') throw e;
      }
      return;
    }
    this.raft.step(m);
  }

  /** The driver could not deliver to `id`: stop pipelining to it. */
  reportUnreachable(id: number): void {
    this.raft.step(makeMessage('unreachable', this.raft.groupId, id, this.raft.id, 0));
  }

  /** The driver finished (or failed) sending a snapshot to `id`. */
  reportSnapshot(id: number, status: 'finish' | 'failure'): void {
    const m = makeMessage('snapStatus', this.raft.groupId, id, this.raft.id, 0);
    m.reject = status === 'failure';
    this.raft.step(m);
  }

  hasReady(): boolean {
    const r = this.raft;
    if (r.lead !== this.prevSoft.lead || r.role !== this.prevSoft.role) return true;
    const hs = r.hardState();
    if (hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote || hs.commit !== this.prevHard.commit) return true;
    if (r.log.hasPendingSnapshot()) return true;
    if (r.msgs.length > 0 || r.log.unstableEntries().length > 0 || r.readStates.length > 0) return true;
    return r.log.hasNextCommittedEnts();
  }

  ready(): Ready {
    assert(!this.outstanding, 'ready() called again before advance()');
    const r = this.raft;
    const rd: Ready = {
      readStates: r.readStates,
      entries: r.log.unstableEntries().slice(),
      committedEntries: r.log.nextCommittedEnts(r.maxCommittedSizePerReadyBytes),
      messages: r.msgs,
      mustSync: false,
    };
    r.msgs = [];
    r.readStates = [];
    const soft = { lead: r.lead, role: r.role };
    if (soft.lead !== this.prevSoft.lead || soft.role !== this.prevSoft.role) {
      rd.softState = soft;
      this.prevSoft = soft;
    }
    const hs = r.hardState();
    if (hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote || hs.commit !== this.prevHard.commit) {
      rd.hardState = hs;
      rd.mustSync = hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote;
    }
    if (rd.entries.length > 0) rd.mustSync = true;
    const snap = r.log.unstable.snapshot;
    if (snap) {
      rd.snapshot = snap;
      rd.mustSync = true;
    }
    this.outstanding = true;
    return rd;
  }

  /**
   * The driver persisted and applied `rd`. Membership changes among rd.committedEntries take
   * effect here, in log order.
   */
  advance(rd: Ready): void {
    assert(this.outstanding, 'advance() without ready()');
    this.outstanding = false;
    const r = this.raft;
    if (rd.hardState) this.prevHard = rd.hardState;
    const last = rd.entries[rd.entries.length - 1];
    if (last) r.log.stableTo(last.index, last.term);
    if (rd.snapshot) {
      r.log.stableSnapTo(rd.snapshot.metadata.index);
      if (rd.snapshot.metadata.index > r.log.applied) r.log.appliedTo(rd.snapshot.metadata.index);
    }
    const lastC = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastC) {
      for (const e of rd.committedEntries) {
        r.log.appliedTo(e.index);
        if (e.type === 'confChange') r.applyConfChange(decodeConfChange(e.data));
      }
      r.reduceUncommittedSize(rd.committedEntries);
    }
  }

  confState(): ConfState {
    return this.raft.confState();
  }

  status(): RaftStatus {
    const r = this.raft;
    const st: RaftStatus = {
      id: r.id, groupId: r.groupId, term: r.term, vote: r.vote, commit: r.log.committed, applied: r.log.applied,
      lead: r.lead, role: r.role, leadTransferee: r.leadTransferee,
    };
    if (r.role === 'leader') {
      st.progress = new Map();
      for (const [id, pr] of r.prs) {
        st.progress.set(id, { match: pr.match, next: pr.next, state: pr.state, isLearner: pr.isLearner, inflight: pr.inflights.count });
      }
    }
    return st;
  }

  /** Whether a lease read would be served locally right now (leader with a valid lease). */
  hasValidLease(): boolean {
    return this.raft.role === 'leader' && this.raft.readOnlyOption === 'leaseBased' && this.raft.leaseValid();
  }
}

