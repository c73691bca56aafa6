// The Raft state machine (a port of etcd-io/raft's raft.go, trimmed): no I/O, no timers, no
// clock, no Math.random. Inputs are messages and ticks; outputs are appended to `msgs`, the
// unstable log, readStates and state changes, which RawNode turns into a Ready.
//
// One step function per role (stepLeader / stepFollower / stepCandidate, the candidate one also
// serving pre-candidates), installed by becomeX(); an illegal transition throws.
//
// Membership change is ONE AT A TIME (single-server changes, Raft thesis §4.1) with the known
// fix (Ongaro, raft-dev 2015): a leader may propose a change only after an entry of its own term
// has been applied (becomeLeader sets pendingConfIndex to the index of its no-op entry) and
// while no other change is unapplied. A change takes effect on each node when that node
// applies it (RawNode.advance), as in etcd. Learners receive the log but do not vote; adding a
// learner as a node promotes it. Removing the leader makes it step down when it applies the
// change.
import { assert, assertSafeInteger, type Prng } from '../common/index.js';
import { decodeConfChange } from './confchange.js';
import { ConfChangePendingError, InvalidMessageError, NotLeaderError, ProposalDroppedError, RaftConfigError, ReadIndexDroppedError } from './errors.js';
import { RaftLog } from './log.js';
import { Progress } from './progress.js';
import type { Storage } from './storage.js';
import type { ConfChange, ConfState, Entry, HardState, Message, MessageType, RaftRole, ReadState, Snapshot } from './types.js';
import { entrySizeBytes, makeMessage, NONE } from './types.js';

export interface RaftConfig {
  id: number;
  groupId: number;
  storage: Storage;
  /** Ticks without hearing from a leader before campaigning (randomized in [electionTicks, 2*electionTicks)). */
  electionTicks: number;
  heartbeatTicks: number;
  /** The last index the state machine has applied (on restart: at least the snapshot index). */
  applied?: number;
  /** Target upper bound of one append message's entries. */
  maxSizePerMsgBytes?: number;
  /** Append messages in flight per follower in replicate state. */
  maxInflightMsgs?: number;
  /** Bytes in flight per follower (0: unlimited, bounded by maxInflightMsgs * maxSizePerMsgBytes). */
  maxInflightBytes?: number;
  /** The leader refuses proposals while this many bytes of its log are uncommitted. */
  maxUncommittedEntriesSizeBytes?: number;
  /** Bytes of committed entries handed out per Ready. */
  maxCommittedSizePerReadyBytes?: number;
  /** Pending ReadIndex requests at the leader. */
  maxPendingReadIndex?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  /** 'leaseBased' requires checkQuorum; reads are served on the leader's lease without a round trip. */
  readOnlyOption?: 'safe' | 'leaseBased';
  /** Lease reads: ticks of clock-rate uncertainty subtracted from the lease. */
  leaseSafetyMarginTicks?: number;
  /** Followers forward proposals to the leader (otherwise they throw NotLeaderError). */
  forwardProposals?: boolean;
  /**
   * How followers learn that the commit index moved. 'eager' (etcd's way): an append, empty if
   * need be, goes to every follower at once. 'heartbeat': only appends that carry entries are
   * sent at once; a commit with nothing else to send reaches followers with the next heartbeat
   * (every heartbeatTicks) or the next append. Commit on the leader, and so every reply to a
   * client, is unchanged; followers apply up to a heartbeat later. At low load it saves a
   * message per follower per write (and the follower's turn to persist the new commit).
   */
  commitBroadcast?: 'eager' | 'heartbeat';
  /** Randomness for election timeouts: the caller seeds it, so simulations replay. */
  prng: Prng;
}

type StepFn = (r: Raft, m: Message) => void;
type VoteResult = 'won' | 'lost' | 'pending';

interface ReadRequest {
  index: number;
  /** The requester: NONE/self for a local read, else the follower that forwarded it. */
  from: number;
  context: string;
  acks: Set<number>;
}

const LOCAL_TYPES = new Set<MessageType>(['hup', 'beat', 'checkQuorum', 'snapStatus', 'unreachable']);
export function isLocalMessageType(t: MessageType): boolean {
  return LOCAL_TYPES.has(t);
}
const CAMPAIGN_TRANSFER = 'transfer';

export class Raft {
  readonly id: number;
  readonly groupId: number;
  term = 0;
  vote = NONE;
  lead = NONE;
  role: RaftRole = 'follower';
  readonly log: RaftLog;
  /** Every member's progress, voters and learners (the leader's own included). */
  prs = new Map<number, Progress>();
  /** Output for the driver; drained by RawNode.ready(). */
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  /** Index of the last membership change proposed or a no-op that must apply first; invariant: no new change while > applied. */
  pendingConfIndex = 0;
  /** Bytes of entries appended by this leader and not yet applied. invariant: <= maxUncommitted (unless a single entry exceeds it). */
  uncommittedSizeBytes = 0;
  /** Leader: pending ReadIndex requests in arrival order. invariant: length <= maxPendingReadIndex */
  private readQueue: ReadRequest[] = [];
  /** Leader: reads waiting until an entry of this term is committed. */
  private pendingReadMsgs: Message[] = [];
  electionElapsed = 0;
  private heartbeatElapsed = 0;
  /** Ticks since this instance started; stamps heartbeats for lease reads. */
  tickCount = 0;
  private randomizedElectionTimeout = 0;
  leadTransferee = NONE;
  /** Set once this leader sent TimeoutNow: its lease can no longer be trusted this term. */
  private leaseRevoked = false;
  private votes = new Map<number, boolean>();
  private step_: StepFn = stepFollower;

  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly maxSizePerMsgBytes: number;
  readonly maxInflightMsgs: number;
  readonly maxInflightBytes: number;
  readonly maxUncommittedEntriesSizeBytes: number;
  readonly maxCommittedSizePerReadyBytes: number;
  readonly maxPendingReadIndex: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly readOnlyOption: 'safe' | 'leaseBased';
  readonly leaseSafetyMarginTicks: number;
  readonly forwardProposals: boolean;
  readonly commitBroadcast: 'eager' | 'heartbeat';
  private readonly prng: Prng;

  constructor(c: RaftConfig) {
    const posInt = (v: number, name: string) => {
      if (!Number.isSafeInteger(v) || v <= 0) throw new RaftConfigError(`${name} must be a positive integer, got ${v}`);
      return v;
    };
    this.id = posInt(c.id, 'id');
    if (!Number.isSafeInteger(c.groupId) || c.groupId < 0) throw new RaftConfigError(`groupId must be a non-negative integer, got ${c.groupId}`);
    this.groupId = c.groupId;
    this.heartbeatTicks = posInt(c.heartbeatTicks, 'heartbeatTicks');
    this.electionTicks = posInt(c.electionTicks, 'electionTicks');
    if (this.electionTicks <= this.heartbeatTicks) throw new RaftConfigError('electionTicks must be greater than heartbeatTicks');
    this.maxSizePerMsgBytes = posInt(c.maxSizePerMsgBytes ?? 1 << 20, 'maxSizePerMsgBytes');
    this.maxInflightMsgs = posInt(c.maxInflightMsgs ?? 256, 'maxInflightMsgs');
    this.maxInflightBytes = c.maxInflightBytes ?? 0;
    this.maxUncommittedEntriesSizeBytes = posInt(c.maxUncommittedEntriesSizeBytes ?? 64 << 20, 'maxUncommittedEntriesSizeBytes');
    this.maxCommittedSizePerReadyBytes = posInt(c.maxCommittedSizePerReadyBytes ?? 16 << 20, 'maxCommittedSizePerReadyBytes');
    this.maxPendingReadIndex = posInt(c.maxPendingReadIndex ?? 4096, 'maxPendingReadIndex');
    this.preVote = c.preVote ?? true;
    this.checkQuorum = c.checkQuorum ?? true;
    this.readOnlyOption = c.readOnlyOption ?? 'safe';
    if (this.readOnlyOption === 'leaseBased' && !this.checkQuorum) throw new RaftConfigError('leaseBased reads require checkQuorum');
    this.leaseSafetyMarginTicks = c.leaseSafetyMarginTicks ?? 1;
    this.forwardProposals = c.forwardProposals ?? true;
    this.commitBroadcast = c.commitBroadcast ?? 'eager';
    this.prng = c.prng;

    this.log = new RaftLog(c.storage);
    const { hardState, confState } = c.storage.initialState();
    this.applyConfState(confState);
    if (hardState.term !== 0 || hardState.commit !== 0 || hardState.vote !== NONE) this.loadState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.log.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  // ---- state ----

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private loadState(hs: HardState): void {
    assertSafeInteger(hs.term, 'term');
    assertSafeInteger(hs.commit, 'commit');
    assert(hs.commit >= this.log.committed && hs.commit <= this.log.lastIndex(), `hardState commit ${hs.commit} out of range [${this.log.committed}, ${this.log.lastIndex()}]`);
    this.log.committed = hs.commit;
    this.term = hs.term;
    this.vote = hs.vote;
  }

  confState(): ConfState {
    const voters: number[] = [];
    const learners: number[] = [];
    for (const [id, pr] of this.prs) (pr.isLearner ? learners : voters).push(id);
    voters.sort((a, b) => a - b);
    learners.sort((a, b) => a - b);
    return { voters, learners };
  }

  voterIds(): number[] {
    const out: number[] = [];
    for (const [id, pr] of this.prs) if (!pr.isLearner) out.push(id);
    return out;
  }

  quorum(): number {
    return Math.floor(this.voterIds().length / 2) + 1;
  }

  /** Can this node become leader: a voter in its own view of the membership. */
  promotable(): boolean {
    const pr = this.prs.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.log.hasPendingSnapshot();
  }

  private newProgress(isLearner: boolean): Progress {
    return new Progress(this.log.lastIndex() + 1, isLearner, this.maxInflightMsgs, this.maxInflightBytes);
  }

  private applyConfState(cs: ConfState): void {
    this.prs = new Map();
    for (const id of cs.voters) this.prs.set(id, this.newProgress(false));
    for (const id of cs.learners) {
      assert(!this.prs.has(id), `node ${id} is both voter and learner`);
      this.prs.set(id, this.newProgress(true));
    }
  }

  private send(m: Message): void {
    if (m.type === 'vote' || m.type === 'voteResp' || m.type === 'preVote' || m.type === 'preVoteResp') {
      // Vote messages carry the term they are about (pre-votes: the future term).
      assert(m.term !== 0, `term should be set when sending ${m.type}`);
    } else if (m.type !== 'prop' && m.type !== 'readIndex') {
      assert(m.term === 0 || m.term === this.term, 'term set on a message that takes the current term');
      m.term = this.term;
    } else {
      // Forwarded proposals and reads are not term-checked by the receiver's term logic.
      m.term = 0;
    }
    this.msgs.push(m);
  }

  private msg(type: MessageType, to: number): Message {
    return makeMessage(type, this.groupId, this.id, to, 0);
  }

  // ---- replication ----

  /** Sends an append (or a snapshot) to `to` if its progress allows; returns whether anything was sent. */
  maybeSendAppend(to: number, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    let ents: Entry[] | undefined;
    if (prevTerm !== undefined) {
      try {
        ents = this.log.entries(pr.next, this.maxSizePerMsgBytes);
      } catch {
        ents = undefined;
      }
    }
    if (prevTerm === undefined || ents === undefined) {
      // The follower needs entries that were compacted: send the snapshot instead.
      if (!pr.recentActive) return false;
      const snap = this.log.snapshot();
      if (snap.metadata.index === 0) return false;
      const m = this.msg('snap', to);
      m.snapshot = snap;
      pr.becomeSnapshot(snap.metadata.index);
      this.send(m);
      return true;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    const m = this.msg('app', to);
    m.index = prevIndex;
    m.logTerm = prevTerm;
    m.entries = ents;
    m.commit = this.log.committed;
    if (ents.length > 0) {
      if (pr.state === 'replicate') {
        const last = (ents[ents.length - 1] as Entry).index;
        pr.optimisticUpdate(last);
        let bytes = 0;
        for (const e of ents) bytes += entrySizeBytes(e);
        pr.inflights.add(last, bytes);
      } else if (pr.state === 'probe') {
        pr.probeSent = true;
      }
    } else if (pr.state === 'probe') {
      pr.probeSent = true;
    }
    this.send(m);
    return true;
  }

  private sendHeartbeat(to: number, context: string | undefined): void {
    const pr = this.prs.get(to);
    // Never tell a follower to commit past what it is known to have (it may not have it yet).
    const commit = Math.min(pr?.match ?? 0, this.log.committed);
    const m = this.msg('heartbeat', to);
    m.commit = commit;
    m.leaseTick = this.tickCount;
    if (context !== undefined) m.context = context;
    this.send(m);
  }

  bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.maybeSendAppend(id, true);
  }

  /** After the commit index moved: tell followers now ('eager'), or send only appends with entries. */
  bcastCommit(): void {
    const empty = this.commitBroadcast === 'eager';
    for (const id of this.prs.keys()) if (id !== this.id) this.maybeSendAppend(id, empty);
  }

  private bcastHeartbeat(): void {
    const last = this.readQueue[this.readQueue.length - 1];
    this.bcastHeartbeatWithCtx(last?.context);
  }

  private bcastHeartbeatWithCtx(ctx: string | undefined): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendHeartbeat(id, ctx);
  }

  /** Quorum commit index among voters' matches. */
  private maybeCommit(): boolean {
    const matches: number[] = [];
    for (const pr of this.prs.values()) if (!pr.isLearner) matches.push(pr.match);
    if (matches.length === 0) return false;
    matches.sort((a, b) => b - a);
    const mci = matches[this.quorum() - 1] as number;
    return this.log.maybeCommit(mci, this.term);
  }

  private appendEntry(ents: Entry[]): void {
    let li = this.log.lastIndex();
    let size = 0;
    for (const e of ents) {
      e.term = this.term;
      e.index = ++li;
      size += e.data.byteLength;
    }
    if (this.uncommittedSizeBytes > 0 && size > 0 && this.uncommittedSizeBytes + size > this.maxUncommittedEntriesSizeBytes) {
      throw new ProposalDroppedError(`uncommitted log is ${this.uncommittedSizeBytes} bytes, limit ${this.maxUncommittedEntriesSizeBytes}`);
    }
    this.uncommittedSizeBytes += size;
    li = this.log.append(ents);
    const self = this.prs.get(this.id);
    // The leader's own entries count toward the quorum: the driver persists them before
    // anything that depends on this commit leaves the node (Ready order).
    if (self) self.maybeUpdate(li);
    this.maybeCommit();
  }

  /** Called by RawNode when committed entries were applied: they no longer count as uncommitted. */
  reduceUncommittedSize(ents: Entry[]): void {
    if (this.role !== 'leader') return;
    let s = 0;
    for (const e of ents) s += e.data.byteLength;
    this.uncommittedSizeBytes = Math.max(0, this.uncommittedSizeBytes - s);
  }

  // ---- role changes ----

  private reset(term: number): void {
    if (this.term !== term) {
      assertSafeInteger(term, 'term');
      assert(term > this.term, `term moving backwards ${this.term} -> ${term}`);
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.leadTransferee = NONE;
    this.leaseRevoked = false;
    this.votes.clear();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.prs) {
      const np = new Progress(last + 1, pr.isLearner, this.maxInflightMsgs, this.maxInflightBytes);
      if (id === this.id) np.match = last;
      this.prs.set(id, np);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSizeBytes = 0;
    this.readQueue = [];
    this.pendingReadMsgs = [];
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTicks + this.prng.int(this.electionTicks);
  }

  becomeFollower(term: number, lead: number): void {
    this.step_ = stepFollower;
    this.reset(term);
    this.lead = lead;
    this.role = 'follower';
  }

  becomeCandidate(): void {
    assert(this.role !== 'leader', 'invalid transition leader -> candidate');
    this.step_ = stepCandidate;
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  becomePreCandidate(): void {
    assert(this.role !== 'leader', 'invalid transition leader -> preCandidate');
    // A pre-candidate changes neither term nor vote: a partitioned node cannot inflate terms.
    this.step_ = stepCandidate;
    this.votes.clear();
    this.role = 'preCandidate';
    this.lead = NONE;
  }

  becomeLeader(): void {
    assert(this.role === 'candidate', `invalid transition ${this.role} -> leader`);
    this.step_ = stepLeader;
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    const self = this.prs.get(this.id);
    if (self) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // No membership change until this no-op (an entry of our term) is applied: the
    // one-at-a-time fix. Also, read requests wait for it to commit.
    this.appendEntry([{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }]);
    this.pendingConfIndex = this.log.lastIndex();
  }

  private hup(transfer: boolean): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) return;
    if (this.log.hasUnappliedConfChange()) return;
    if (this.preVote && !transfer) this.campaign('preElection', false);
    else this.campaign('election', transfer);
  }

  private campaign(kind: 'preElection' | 'election', transfer: boolean): void {
    let voteType: MessageType;
    let term: number;
    if (kind === 'preElection') {
      this.becomePreCandidate();
      voteType = 'preVote';
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteType = 'vote';
      term = this.term;
    }
    if (this.poll(this.id, true) === 'won') {
      if (kind === 'preElection') this.campaign('election', transfer);
      else this.becomeLeader();
      return;
    }
    for (const id of this.voterIds()) {
      if (id === this.id) continue;
      const m = makeMessage(voteType, this.groupId, this.id, id, term);
      m.index = this.log.lastIndex();
      m.logTerm = this.log.lastTerm();
      if (transfer) m.context = CAMPAIGN_TRANSFER;
      this.send(m);
    }
  }

  private poll(id: number, granted: boolean): VoteResult {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    let yes = 0;
    let no = 0;
    for (const vid of this.voterIds()) {
      const v = this.votes.get(vid);
      if (v === true) yes++;
      else if (v === false) no++;
    }
    const q = this.quorum();
    if (yes >= q) return 'won';
    if (no >= this.voterIds().length - q + 1) return 'lost';
    return 'pending';
  }

  // ---- ticks ----

  tick(): void {
    this.tickCount++;
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
  }

  private pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      this.step(this.msg('hup', this.id));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(this.msg('checkQuorum', this.id));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === 'leader' && this.leadTransferee !== NONE) this.leadTransferee = NONE;
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.step(this.msg('beat', this.id));
    }
  }

  // ---- step ----

  step(m: Message): void {
    assertSafeInteger(m.term, 'message term');
    if (m.term === 0) {
      // local message, or a forwarded proposal/read
    } else if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        const force = m.context === CAMPAIGN_TRANSFER;
        // Check-quorum leases: a node that heard from a leader within an election timeout
        // ignores votes, so a partitioned node cannot disrupt a healthy leader. With lease
        // reads, a follower that just (re)started also waits out one election timeout, because
        // the leader's lease may count its acknowledgment from before the restart.
        const inLease =
          this.checkQuorum && this.electionElapsed < this.electionTicks &&
          (this.lead !== NONE || (this.readOnlyOption === 'leaseBased' && this.role === 'follower'));
        if (!force && inLease) return;
      }
      if (m.type === 'preVote') {
        // Never change term for a pre-vote.
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // We will bump to this term when the pre-vote wins.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'heartbeat' || m.type === 'app')) {
        // A stale leader (e.g. after a partition healed): tell it our term so it steps down;
        // with pre-vote it could otherwise never learn of it.
        this.send(this.msg('appResp', m.from));
      } else if (m.type === 'preVote') {
        const resp = makeMessage('preVoteResp', this.groupId, this.id, m.from, this.term);
        resp.reject = true;
        this.send(resp);
      }
      return;
    }

    switch (m.type) {
      case 'hup':
        this.hup(m.context === CAMPAIGN_TRANSFER);
        return;
      case 'vote':
      case 'preVote': {
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === 'preVote' && m.term > this.term);
        const respType = m.type === 'vote' ? 'voteResp' : 'preVoteResp';
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          // Answer with the message's term: for a pre-vote that is the future term.
          this.send(makeMessage(respType, this.groupId, this.id, m.from, m.term));
          if (m.type === 'vote') {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          const resp = makeMessage(respType, this.groupId, this.id, m.from, this.term);
          resp.reject = true;
          this.send(resp);
        }
        return;
      }
      default:
        this.step_(this, m);
    }
  }

  // ---- handlers shared by roles ----

  handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      const r = this.msg('appResp', m.from);
      r.index = this.log.committed;
      this.send(r);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    const r = this.msg('appResp', m.from);
    if (lastNew !== undefined) {
      r.index = lastNew;
    } else {
      const hintIndex = Math.min(m.index, this.log.lastIndex());
      const [idx, t] = this.log.findConflictByTerm(hintIndex, m.logTerm);
      r.index = m.index;
      r.reject = true;
      r.rejectHint = idx;
      r.logTerm = t;
    }
    this.send(r);
  }

  handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    const r = this.msg('heartbeatResp', m.from);
    if (m.context !== undefined) r.context = m.context;
    if (m.leaseTick !== undefined) r.leaseTick = m.leaseTick;
    this.send(r);
  }

  handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (s === undefined) throw new InvalidMessageError('snap message without snapshot');
    const r = this.msg('appResp', m.from);
    if (this.restore(s)) {
      r.index = this.log.lastIndex();
    } else {
      r.index = this.log.committed;
    }
    this.send(r);
  }

  /** Installs a snapshot from the leader; returns false if it is not newer than what we have committed. */
  private restore(s: Snapshot): boolean {
    const meta = s.metadata;
    if (meta.index <= this.log.committed) return false;
    assert(this.role === 'follower', 'only a follower installs a snapshot');
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We already have the entries: just move the commit index.
      this.log.commitTo(meta.index);
      return false;
    }
    this.log.restore(s);
    this.applyConfState(meta.confState);
    const self = this.prs.get(this.id);
    if (self) self.match = meta.index;
    return true;
  }

  /** Applies a committed membership change (called as the entry is applied). */
  applyConfChange(cc: ConfChange): void {
    const id = cc.nodeId;
    switch (cc.type) {
      case 'addNode': {
        const pr = this.prs.get(id);
        if (pr === undefined) {
          const np = this.newProgress(false);
          np.recentActive = true;
          this.prs.set(id, np);
        } else {
          pr.isLearner = false;
        }
        break;
      }
      case 'addLearner': {
        // Demoting a voter to learner is not supported one-at-a-time: ignored.
        if (!this.prs.has(id)) {
          const np = this.newProgress(true);
          np.recentActive = true;
          this.prs.set(id, np);
        }
        break;
      }
      case 'removeNode': {
        this.prs.delete(id);
        if (this.role === 'leader' && this.leadTransferee === id) this.leadTransferee = NONE;
        break;
      }
    }
    if (this.role !== 'leader') return;
    if (!this.prs.has(this.id) || this.prs.get(this.id)?.isLearner === true) {
      // A leader removed from the voters steps down once the change is applied.
      this.becomeFollower(this.term, NONE);
      return;
    }
    if (this.maybeCommit()) this.bcastCommit();
    else for (const pid of this.prs.keys()) if (pid !== this.id) this.maybeSendAppend(pid, false);
  }

  // ---- reads ----

  committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  /** Lease check: a quorum acknowledged heartbeats sent less than (electionTicks - margin) ticks ago. */
  leaseValid(): boolean {
    if (this.leaseRevoked || this.leadTransferee !== NONE) return false;
    const acks: number[] = [];
    for (const [id, pr] of this.prs) {
      if (pr.isLearner) continue;
      acks.push(id === this.id ? this.tickCount : pr.leaseAckTick);
    }
    acks.sort((a, b) => b - a);
    const t = acks[this.quorum() - 1];
    return t !== undefined && t >= 0 && this.tickCount < t + this.electionTicks - this.leaseSafetyMarginTicks;
  }

  private respondRead(m: Message, index: number): void {
    const ctx = m.context ?? '';
    if (m.from === NONE || m.from === this.id) {
      this.readStates.push({ index, context: ctx });
    } else {
      const r = this.msg('readIndexResp', m.from);
      r.index = index;
      r.context = ctx;
      this.send(r);
    }
  }

  private handleReadIndex(m: Message): void {
    if (this.voterIds().length === 1 && this.prs.has(this.id)) {
      this.respondRead(m, this.log.committed);
      return;
    }
    if (!this.committedEntryInCurrentTerm()) {
      // Our commit index may lag the true one until our no-op commits.
      if (this.pendingReadMsgs.length >= this.maxPendingReadIndex) {
        if (m.from === NONE || m.from === this.id) throw new ReadIndexDroppedError('too many pending reads');
        return;
      }
      this.pendingReadMsgs.push(m);
      return;
    }
    this.readIndexNow(m);
  }

  private readIndexNow(m: Message): void {
    if (this.readOnlyOption === 'leaseBased' && this.leaseValid()) {
      this.respondRead(m, this.log.committed);
      return;
    }
    if (this.readQueue.length >= this.maxPendingReadIndex) {
      if (m.from === NONE || m.from === this.id) throw new ReadIndexDroppedError('too many pending reads');
      return;
    }
    const ctx = m.context ?? '';
    if (this.readQueue.some((r) => r.context === ctx)) return;
    this.readQueue.push({ index: this.log.committed, from: m.from, context: ctx, acks: new Set([this.id]) });
    this.bcastHeartbeatWithCtx(ctx);
  }

  private releasePendingReads(): void {
    if (!this.committedEntryInCurrentTerm()) return;
    const msgs = this.pendingReadMsgs;
    this.pendingReadMsgs = [];
    for (const m of msgs) {
      try {
        this.readIndexNow(m);
      } catch {
        // dropped: the requester retries
      }
    }
  }

  private recvReadAck(from: number, ctx: string): void {
    const pos = this.readQueue.findIndex((r) => r.context === ctx);
    if (pos < 0) return;
    const req = this.readQueue[pos] as ReadRequest;
    req.acks.add(from);
    let n = 0;
    for (const id of req.acks) if (this.prs.get(id)?.isLearner === false) n++;
    if (n < this.quorum()) return;
    // A quorum confirmed leadership as of this heartbeat: every earlier request is confirmed too.
    const done = this.readQueue.splice(0, pos + 1);
    for (const r of done) {
      const fake = this.msg('readIndex', this.id);
      fake.from = r.from;
      fake.context = r.context;
      this.respondRead(fake, r.index);
    }
  }

  // role step functions need access to a few privates
  /** @internal */ _handleReadIndex(m: Message): void {
    this.handleReadIndex(m);
  }
  /** @internal */ _recvReadAck(from: number, ctx: string): void {
    this.recvReadAck(from, ctx);
  }
  /** @internal */ _releasePendingReads(): void {
    this.releasePendingReads();
  }
  /** @internal */ _bcastHeartbeat(): void {
    this.bcastHeartbeat();
  }
  /** @internal */ _maybeCommit(): boolean {
    return this.maybeCommit();
  }
  /** @internal */ _appendEntry(ents: Entry[]): void {
    this.appendEntry(ents);
  }
  /** @internal */ _poll(id: number, granted: boolean): VoteResult {
    return this.poll(id, granted);
  }
  /** @internal */ _campaignElection(transfer: boolean): void {
    this.campaign('election', transfer);
  }
  /** @internal */ _send(m: Message): void {
    this.send(m);
  }
  /** @internal */ _revokeLease(): void {
    this.leaseRevoked = true;
  }
  /** @internal */ _hupTransfer(): void {
    this.hup(true);
  }
}

// ---- role step functions ----

function sendTimeoutNow(r: Raft, to: number): void {
  r._revokeLease();
  r._send(makeMessage('timeoutNow', r.groupId, r.id, to, 0));
}

function stepLeader(r: Raft, m: Message): void {
  switch (m.type) {
    case 'beat':
      r._bcastHeartbeat();
      return;
    case 'checkQuorum': {
      let active = 0;
      for (const [id, pr] of r.prs) {
        if (id === r.id) {
          if (!pr.isLearner) active++;
          continue;
        }
        if (pr.recentActive && !pr.isLearner) active++;
        pr.recentActive = false;
      }
      if (active < r.quorum()) r.becomeFollower(r.term, NONE);
      return;
    }
    case 'prop': {
      if (m.entries.length === 0) throw new ProposalDroppedError('empty proposal');
      if (!r.prs.has(r.id)) throw new ProposalDroppedError('leader is no longer a member');
      if (r.leadTransferee !== NONE) throw new ProposalDroppedError(`leadership transfer to ${r.leadTransferee} in progress`);
      for (const e of m.entries) {
        if (e.type !== 'confChange') continue;
        if (r.pendingConfIndex > r.log.applied) {
          throw new ConfChangePendingError(`membership change pending at ${r.pendingConfIndex}, applied ${r.log.applied}`);
        }
        validateConfChange(r, decodeConfChange(e.data));
        r.pendingConfIndex = r.log.lastIndex() + 1;
      }
      r._appendEntry(m.entries);
      r.bcastAppend();
      return;
    }
    case 'readIndex':
      r._handleReadIndex(m);
      return;
    default:
      break;
  }

  const pr = r.prs.get(m.from);
  if (pr === undefined) return;
  switch (m.type) {
    case 'appResp': {
      pr.recentActive = true;
      if (m.reject) {
        let nextProbeIdx = m.rejectHint;
        if (m.logTerm > 0) nextProbeIdx = r.log.findConflictByTerm(m.rejectHint, m.logTerm)[0];
        if (pr.maybeDecrTo(m.index, nextProbeIdx)) {
          if (pr.state === 'replicate') pr.becomeProbe();
          r.maybeSendAppend(m.from, true);
        }
        return;
      }
      const oldPaused = pr.isPaused();
      // A duplicated or late ack of what we already knew: nothing to do.
      if (!pr.maybeUpdate(m.index)) return;
      if (pr.state === 'probe') pr.becomeReplicate();
      else if (pr.state === 'snapshot' && pr.match + 1 >= r.log.firstIndex()) {
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index);

      if (r._maybeCommit()) {
        r._releasePendingReads();
        r.bcastCommit();
        // bcastCommit('heartbeat') sends this follower nothing when it is caught up; a follower
        // that was paused still needs its probe answered.
        if (r.commitBroadcast === 'heartbeat' && oldPaused) r.maybeSendAppend(m.from, true);
      } else if (oldPaused) {
        r.maybeSendAppend(m.from, true);
      }
      // Fill the pipeline while there is room (bounded by maxInflightMsgs).
      for (let i = 0; i < r.maxInflightMsgs && r.maybeSendAppend(m.from, false); i++) {
        // keep sending
      }
      if (m.from === r.leadTransferee && pr.match === r.log.lastIndex()) sendTimeoutNow(r, m.from);
      return;
    }
    case 'heartbeatResp': {
      pr.recentActive = true;
      pr.probeSent = false;
      if (m.leaseTick !== undefined && m.leaseTick > pr.leaseAckTick) pr.leaseAckTick = m.leaseTick;
      if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
      if (pr.match < r.log.lastIndex()) r.maybeSendAppend(m.from, true);
      if (m.context !== undefined) r._recvReadAck(m.from, m.context);
      return;
    }
    case 'snapStatus': {
      if (pr.state !== 'snapshot') return;
      // Success or failure, wait for the next heartbeat response before probing again.
      if (m.reject) pr.pendingSnapshot = 0;
      pr.becomeProbe();
      pr.probeSent = true;
      return;
    }
    case 'unreachable':
      if (pr.state === 'replicate') pr.becomeProbe();
      return;
    case 'transferLeader': {
      if (pr.isLearner) return;
      const target = m.from;
      if (r.leadTransferee === target) return;
      if (target === r.id) return;
      r.leadTransferee = target;
      r.electionElapsed = 0;
      if (pr.match === r.log.lastIndex()) sendTimeoutNow(r, target);
      else r.maybeSendAppend(target, true);
      return;
    }
    default:
      return;
  }
}

function validateConfChange(r: Raft, cc: ConfChange): void {
  const pr = r.prs.get(cc.nodeId);
  if (cc.type === 'removeNode' && pr === undefined) throw new ProposalDroppedError(`node ${cc.nodeId} is not a member`);
  if (cc.type === 'addLearner' && pr !== undefined && !pr.isLearner) throw new ProposalDroppedError(`node ${cc.nodeId} is a voter; demotion is not supported`);
  if (cc.type === 'removeNode' && r.voterIds().length === 1 && pr !== undefined && !pr.isLearner) {
    throw new ProposalDroppedError('cannot remove the last voter');
  }
}

function stepCandidate(r: Raft, m: Message): void {
  const myVoteResp: MessageType = r.role === 'preCandidate' ? 'preVoteResp' : 'voteResp';
  switch (m.type) {
    case 'prop':
      throw new NotLeaderError(NONE, 'not leader, election in progress');
    case 'readIndex':
      if (m.from === NONE || m.from === r.id) throw new NotLeaderError(NONE, 'not leader, election in progress');
      return;
    case 'app':
      r.becomeFollower(m.term, m.from);
      r.handleAppendEntries(m);
      return;
    case 'heartbeat':
      r.becomeFollower(m.term, m.from);
      r.handleHeartbeat(m);
      return;
    case 'snap':
      r.becomeFollower(m.term, m.from);
      r.handleSnapshot(m);
      return;
    default:
      break;
  }
  if (m.type === myVoteResp) {
    const res = r._poll(m.from, !m.reject);
    if (res === 'won') {
      if (r.role === 'preCandidate') r._campaignElection(false);
      else {
        r.becomeLeader();
        r.bcastAppend();
      }
    } else if (res === 'lost') {
      r.becomeFollower(r.term, NONE);
    }
  }
}

function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case 'prop':
      if (r.lead === NONE || !r.forwardProposals) throw new NotLeaderError(r.lead);
      m.to = r.lead;
      m.from = r.id;
      r._send(m);
      return;
    case 'app':
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleAppendEntries(m);
      return;
    case 'heartbeat':
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleHeartbeat(m);
      return;
    case 'snap':
      r.electionElapsed = 0;
      r.lead = m.from;
      r.handleSnapshot(m);
      return;
    case 'transferLeader':
      if (r.lead === NONE) return;
      m.to = r.lead;
      r._send({ ...m, term: r.term });
      return;
    case 'timeoutNow':
      // Forced election (no pre-vote, ignores leases): the leader chose us.
      r._hupTransfer();
      return;
    case 'readIndex':
      if (r.lead === NONE) {
        if (m.from === NONE || m.from === r.id) throw new NotLeaderError(NONE);
        return;
      }
      r._send({ ...m, from: r.id, to: r.lead });
      return;
    case 'readIndexResp':
      r.readStates.push({ index: m.index, context: m.context ?? '' });
      return;
    default:
      return;
  }
}
