// RaftHost: runs many table groups (multi-raft) in one process over one level database, one
// durable log and one RPC endpoint. Each loop turn collects the Ready of every group that has
// work, persists all of them in ONE batch (one fsync: group commit), sends their messages
// batched per peer (so the heartbeats of thousands of groups to a peer travel as one RPC), then
// applies committed entries and answers the proposals and reads that were waiting on them.
import type { Level } from 'level';
import { existsSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng, randomSeed, silentLogger, Counter, Gauge, Histogram, LATENCY_BUCKETS_S, type Logger, type Registry } from '../common/index.js';
import { RawNode, type Message, type Ready, type ConfChange, type RaftStatus } from '../raft/index.js';
import { RpcServer, RpcPool, protoCodec, unaryMethod, clientStreamMethod, type RpcClient } from '../rpc/index.js';
import { containerstack as raftpb } from '../../proto/gen/raft.js';
import { containerstack as tablepb } from '../../proto/gen/table.js';
import { fromPbMessage, toPbMessage } from './wire.js';
import { TableStateMachine, type CommandResult, type Command, type StateMachineOptions, type DomainCommand } from './statemachine.js';
import type { DurableLog, GroupLog, GroupWrite } from './log.js';
import { CommandFailedError, LearnerNotReadyError, NoQuorumError, NotLeaderError, TableClosedError, TableDeadlineError } from './errors.js';

const rp = raftpb.raft;
const tp = tablepb.table;
/** Numbers the default snapshot directories of the hosts in this process (two may share a node id). */
let hostSeq = 0;

export const raftService = {
  step: unaryMethod('raft.Step', protoCodec<raftpb.raft.MessageBatch.$Properties>(rp.MessageBatch), protoCodec<raftpb.raft.StepAck.$Properties>(rp.StepAck)),
  snapshot: clientStreamMethod('raft.Snapshot', protoCodec<raftpb.raft.SnapshotChunk.$Properties>(rp.SnapshotChunk), protoCodec<raftpb.raft.SnapshotAck.$Properties>(rp.SnapshotAck)),
  snapshotOffset: unaryMethod('raft.SnapshotOffset', protoCodec<raftpb.raft.SnapshotOffsetRequest.$Properties>(rp.SnapshotOffsetRequest), protoCodec<raftpb.raft.SnapshotOffsetResponse.$Properties>(rp.SnapshotOffsetResponse)),
};

export interface HostOptions {
  nodeId: number;
  db: Level<Uint8Array, Uint8Array>;
  log: DurableLog;
  /** Where peers reach each node (including this one, for leader hints). */
  peers: Map<number, string>;
  rpc: RpcServer;
  pool: RpcPool;
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Serve reads on the leader's lease instead of a ReadIndex round (needs bounded clock drift). */
  leaseReads?: boolean;
  /** Compact a group's log when this many entries are applied past its first index. */
  compactAfterEntries?: number;
  /** Bytes of a snapshot chunk on the wire. */
  snapshotChunkBytes?: number;
  /**
   * Where a leader keeps the snapshot image it is sending, so a broken transfer resumes from
   * the bytes the follower already holds instead of starting over. Default: a directory of this
   * host's own under the system temp dir, removed by close().
   */
  snapshotDir?: string;
  /** Test seam: return true to break the stream before sending chunk `index` of attempt `attempt`. */
  snapshotFault?: (index: number, attempt: number) => boolean;
  /** Observes each snapshot transfer attempt (identity, resume offset), for logs and tests. */
  onSnapshotAttempt?: (info: { groupId: number; to: number; identity: string; offset: number; attempt: number }) => void;
  maxConcurrentSnapshots?: number;
  /** Proposals waiting for apply, per group. */
  maxPendingProposals?: number;
  logger?: Logger;
  registry?: Registry;
  seed?: number;
}

export interface GroupOptions {
  /** Founding voters of a new group (every founder is given the same list). Omit to join later. */
  voters?: number[];
  stateMachine?: StateMachineOptions;
  domains?: Record<string, DomainCommand>;
  /**
   * How followers learn commits (lib/raft RaftConfig.commitBroadcast). 'eager' (default): at
   * once, so watches and stale reads served by a follower see a write within a round trip.
   * 'heartbeat': with the next heartbeat (up to tickMs * heartbeatTicks later), one message
   * per follower per write fewer: for groups whose followers serve nobody.
   */
  commitBroadcast?: 'eager' | 'heartbeat';
}

interface Waiter {
  resolve: (r: CommandResult) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface ReadWaiter {
  index: number;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class TableGroup {
  readonly sm: TableStateMachine;
  node!: RawNode;
  private readonly proposals = new Map<string, Waiter>();
  private readonly readsByCtx = new Map<string, ReadWaiter>();
  private readonly readsWaitingApply: ReadWaiter[] = [];
  private seq = 0;
  private readonly clientId: string;
  private readCounter = 0;
  dirty = true;
  closed = false;
  /** Entries applied since the last compaction check. */
  appliedSinceCompact = 0;
  private lastLeader = 0;

  constructor(
    readonly host: RaftHost,
    readonly groupId: number,
    readonly glog: GroupLog,
    sm: TableStateMachine,
  ) {
    this.sm = sm;
    this.clientId = `host-${host.nodeId}-${(randomSeed() >>> 0).toString(36)}`;
  }

  get leaderId(): number {
    return this.node.status().lead;
  }
  get isLeader(): boolean {
    return this.node.status().role === 'leader';
  }

  status(): RaftStatus {
    return this.node.status();
  }

  private notLeader(): NotLeaderError {
    const lead = this.leaderId;
    return new NotLeaderError(lead, this.host.peers.get(lead) ?? '');
  }

  /**
   * Proposes a command and resolves with its result once applied here. A command without a
   * client id gets this host's; retrying with the same (clientId, seq) is applied once.
   */
  propose(cmd: Command, deadlineMs = 5000): Promise<CommandResult> {
    if (this.closed) return Promise.reject(new TableClosedError(`group ${this.groupId} is closed`));
    if (!this.isLeader) return Promise.reject(this.notLeader());
    if (this.proposals.size >= this.host.maxPendingProposals) return Promise.reject(new NoQuorumError(`group ${this.groupId}: too many proposals waiting (${this.proposals.size}); is a quorum reachable?`));
    const c: Command = cmd.clientId ? cmd : { ...cmd, clientId: this.clientId, seq: ++this.seq };
    const key = `${c.clientId}\u0000${c.seq ?? 0}`;
    const existing = this.proposals.get(key);
    return new Promise<CommandResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proposals.delete(key);
        reject(new TableDeadlineError(`group ${this.groupId}: command not applied within ${deadlineMs}ms (outcome unknown; retry with the same seq)`));
      }, deadlineMs);
      if (existing) {
        // A retry of a proposal still in flight: answer both from the one application.
        clearTimeout(existing.timer);
        const prev = existing;
        this.proposals.set(key, { resolve: (r) => (prev.resolve(r), resolve(r)), reject: (e) => (prev.reject(e), reject(e)), timer });
      } else this.proposals.set(key, { resolve, reject, timer });
      try {
        this.node.propose(tp.Command.encode(c).finish());
      } catch (err) {
        clearTimeout(timer);
        this.proposals.delete(key);
        reject((err as { code?: string }).code === 'RAFT_NOT_LEADER' ? this.notLeader() : (err as Error));
        return;
      }
      this.host.schedule(this);
    });
  }

  /** Resolves once a linearizable read may be served from this replica's state machine. */
  readBarrier(deadlineMs = 5000): Promise<void> {
    if (this.closed) return Promise.reject(new TableClosedError(`group ${this.groupId} is closed`));
    if (!this.isLeader) return Promise.reject(this.notLeader());
    if (this.host.leaseReads && this.node.hasValidLease()) return Promise.resolve();
    if (this.readsByCtx.size >= this.host.maxPendingProposals) return Promise.reject(new NoQuorumError(`group ${this.groupId}: too many reads waiting`));
    const ctx = `r${++this.readCounter}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readsByCtx.delete(ctx);
        const i = this.readsWaitingApply.indexOf(w);
        if (i >= 0) this.readsWaitingApply.splice(i, 1);
        reject(new TableDeadlineError(`group ${this.groupId}: read not confirmed by a quorum within ${deadlineMs}ms`));
      }, deadlineMs);
      const w: ReadWaiter = { index: 0, resolve, reject, timer };
      this.readsByCtx.set(ctx, w);
      this.node.readIndex(ctx);
      this.host.schedule(this);
    });
  }

  /** Adds a member (as a learner first when `learner`), removes one, or moves leadership. */
  async changeMembership(cc: ConfChange, opts: { catchUpTimeoutMs?: number; maxLagEntries?: number } = {}): Promise<void> {
    if (!this.isLeader) throw this.notLeader();
    const cs0 = this.node.confState();
    if (cc.type === 'addNode' && !cs0.voters.includes(cc.nodeId) && !cs0.learners.includes(cc.nodeId)) {
      // A voter that starts empty would count toward quorum while it cannot help commit; it
      // must join as a learner and catch up first.
      throw new LearnerNotReadyError(`node ${cc.nodeId} must be added as a learner and catch up before it becomes a voter`);
    }
    if (cc.type === 'addNode' && cs0.learners.includes(cc.nodeId)) {
      const maxLag = opts.maxLagEntries ?? 100;
      const deadline = performance.now() + (opts.catchUpTimeoutMs ?? 10_000);
      for (;;) {
        const st = this.node.status();
        const match = st.progress?.get(cc.nodeId)?.match ?? 0;
        if (st.commit - match <= maxLag) break;
        if (performance.now() > deadline) throw new LearnerNotReadyError(`learner ${cc.nodeId} is ${st.commit - match} entries behind (more than ${maxLag}); not promoted`);
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    this.node.proposeConfChange(cc);
    this.host.schedule(this);
    // The change is effective once applied; wait until the membership shows it.
    for (let i = 0; i < 200; i++) {
      await new Promise((r) => setTimeout(r, 25));
      const cs = this.node.confState();
      const isVoter = cs.voters.includes(cc.nodeId);
      const isLearner = cs.learners.includes(cc.nodeId);
      if ((cc.type === 'addNode' && isVoter) || (cc.type === 'addLearner' && isLearner) || (cc.type === 'removeNode' && !isVoter && !isLearner)) return;
    }
    throw new TableDeadlineError(`group ${this.groupId}: membership change ${cc.type} ${cc.nodeId} not applied in time`);
  }

  transferLeader(to: number): void {
    this.node.transferLeader(to);
    this.host.schedule(this);
  }

  /** Called by the host after a Ready is applied. */
  onApplied(results: Map<number, CommandResult>): void {
    for (const r of results.values()) {
      if (!r.clientId) continue;
      const key = `${r.clientId}\u0000${r.seq ?? 0}`;
      const w = this.proposals.get(key);
      if (!w) continue;
      this.proposals.delete(key);
      clearTimeout(w.timer);
      if (r.errorCode && r.errorCode !== '') w.reject(new CommandFailedError(r.errorCode, r.errorMessage ?? r.errorCode));
      else w.resolve(r);
    }
    this.releaseReads();
  }

  onReadStates(states: Ready['readStates']): void {
    for (const rs of states) {
      const w = this.readsByCtx.get(rs.context);
      if (!w) continue;
      this.readsByCtx.delete(rs.context);
      w.index = rs.index;
      this.readsWaitingApply.push(w);
    }
    this.releaseReads();
  }

  private releaseReads(): void {
    if (this.readsWaitingApply.length === 0) return;
    const applied = this.sm.appliedIndex;
    for (let i = 0; i < this.readsWaitingApply.length; ) {
      const w = this.readsWaitingApply[i] as ReadWaiter;
      if (w.index <= applied) {
        this.readsWaitingApply.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve();
      } else i++;
    }
  }

  /** Leadership changed: proposals and reads waiting here will not be answered by this node. */
  onSoftState(lead: number): void {
    if (lead === this.lastLeader) return;
    this.lastLeader = lead;
    if (lead === this.host.nodeId) return;
    const err = this.notLeader();
    // A proposal may still commit under the new leader; the caller retries with the same seq
    // and the session table makes the retry idempotent.
    for (const [k, w] of this.proposals) {
      clearTimeout(w.timer);
      w.reject(err);
      this.proposals.delete(k);
    }
    for (const [k, w] of this.readsByCtx) {
      clearTimeout(w.timer);
      w.reject(err);
      this.readsByCtx.delete(k);
    }
    for (const w of this.readsWaitingApply.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  failAll(err: Error): void {
    for (const w of this.proposals.values()) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.proposals.clear();
    for (const w of [...this.readsByCtx.values(), ...this.readsWaitingApply.splice(0)]) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.readsByCtx.clear();
  }
}

interface HostMetrics {
  readyLoops: Counter;
  persistSeconds: Histogram;
  entriesPersisted: Counter;
  messagesSent: Counter;
  sendErrors: Counter;
  groups: Gauge;
  leaders: Gauge;
  snapshotsSent: Counter<'result'>;
}

export class RaftHost {
  readonly nodeId: number;
  readonly peers: Map<number, string>;
  readonly leaseReads: boolean;
  readonly maxPendingProposals: number;
  private readonly groups = new Map<number, TableGroup>();
  private readonly o: Required<Pick<HostOptions, 'tickMs' | 'electionTicks' | 'heartbeatTicks' | 'compactAfterEntries' | 'snapshotChunkBytes' | 'maxConcurrentSnapshots'>>;
  private readonly log: Logger;
  private readonly prng: Prng;
  private ticker: NodeJS.Timeout | undefined;
  private scheduled = false;
  private running = false;
  private again = false;
  private closed = false;
  /** The loop turn being processed (removeGroup waits for it). */
  private processing: Promise<void> | undefined;
  private snapshotsInFlight = 0;
  private readonly snapshotDir: string;
  /** snapshotDir is the default one, under the temp dir: this host made it and removes it. */
  private readonly ownSnapshotDir: boolean;
  // group -> the image being sent (reused by retries while the core asks for the same snapshot)
  private readonly snapshotImages = new Map<number, { identity: string; metaIndex: number; path: string; attempts: number }>();
  private readonly metrics: HostMetrics | undefined;

  constructor(private readonly opts: HostOptions) {
    this.nodeId = opts.nodeId;
    this.peers = opts.peers;
    this.leaseReads = opts.leaseReads ?? false;
    this.maxPendingProposals = opts.maxPendingProposals ?? 10_000;
    this.log = opts.logger ?? silentLogger;
    this.prng = new Prng(opts.seed ?? randomSeed());
    this.o = {
      tickMs: opts.tickMs ?? 100,
      electionTicks: opts.electionTicks ?? 10,
      heartbeatTicks: opts.heartbeatTicks ?? 1,
      compactAfterEntries: opts.compactAfterEntries ?? 10_000,
      snapshotChunkBytes: opts.snapshotChunkBytes ?? 1 << 20,
      maxConcurrentSnapshots: opts.maxConcurrentSnapshots ?? 2,
    };
    if (opts.registry) {
      const r = [opts.registry];
      this.metrics = {
        readyLoops: new Counter({ name: 'raft_ready_loops_total', help: 'Ready loop turns', registers: r }),
        persistSeconds: new Histogram({ name: 'raft_persist_duration_seconds', help: 'Time to persist one batch of Readies (one fsync)', buckets: LATENCY_BUCKETS_S, registers: r }),
        entriesPersisted: new Counter({ name: 'raft_entries_persisted_total', help: 'Log entries written', registers: r }),
        messagesSent: new Counter({ name: 'raft_messages_sent_total', help: 'Raft messages sent to peers', registers: r }),
        sendErrors: new Counter({ name: 'raft_send_errors_total', help: 'Failed sends of message batches', registers: r }),
        groups: new Gauge({ name: 'raft_groups', help: 'Raft groups hosted', registers: r }),
        leaders: new Gauge({ name: 'raft_leader_groups', help: 'Groups this node leads', registers: r, collect: () => undefined }),
        snapshotsSent: new Counter({ name: 'raft_snapshots_sent_total', help: 'Snapshots streamed to followers', labelNames: ['result'], registers: r }),
      };
      const self = this;
      this.metrics.leaders.reset();
      (this.metrics.leaders as unknown as { collect: () => void }).collect = function (this: Gauge) {
        let n = 0;
        for (const g of self.groups.values()) if (g.isLeader) n++;
        this.set(n);
      };
    }
    opts.rpc.unary(raftService.step, (batch) => {
      this.learnPeers(batch.peers ?? []);
      this.onMessages(batch.messages ?? []);
      return {};
    });
    opts.rpc.clientStream(raftService.snapshot, (chunks) => this.receiveSnapshot(chunks));
    opts.rpc.unary(raftService.snapshotOffset, (req) => {
      const p = this.groups.get(req.groupId ?? 0)?.sm.restoreProgress();
      return { offset: p && p.identity === req.identity ? p.offset : 0 };
    });
    this.ownSnapshotDir = opts.snapshotDir === undefined;
    this.snapshotDir = opts.snapshotDir ?? join(tmpdir(), `containerstack-snap-${opts.nodeId}-${process.pid}-${++hostSeq}`);
  }

  get groupCount(): number {
    return this.groups.size;
  }

  group(groupId: number): TableGroup | undefined {
    return this.groups.get(groupId);
  }

  async addGroup(groupId: number, go: GroupOptions = {}): Promise<TableGroup> {
    if (this.groups.has(groupId)) throw new TypeError(`table: group ${groupId} already hosted`);
    const glog = await this.opts.log.open(groupId, go.voters);
    // A failed apply batch stops the host as a failed persist does.
    const sm = new TableStateMachine(this.opts.db, groupId, { ...go.stateMachine, logger: this.log, onWriteError: (err) => this.fail(err) });
    for (const [name, fn] of Object.entries(go.domains ?? {})) sm.register(name, fn);
    await sm.open();
    const g = new TableGroup(this, groupId, glog, sm);
    const snapIndex = glog.snapshot().metadata.index;
    // The state machine may be ahead of a log whose torn tail was cut at open (its batch is
    // written after the log's): tell the core only what the log can back. Entries the state
    // machine already holds are skipped when the leader sends them again.
    const applied = Math.max(snapIndex, Math.min(sm.appliedIndex, glog.initialState().hardState.commit, glog.lastIndex()));
    g.node = new RawNode({
      id: this.nodeId,
      groupId,
      storage: glog,
      electionTicks: this.o.electionTicks,
      heartbeatTicks: this.o.heartbeatTicks,
      applied,
      preVote: true,
      checkQuorum: true,
      readOnlyOption: this.leaseReads ? 'leaseBased' : 'safe',
      commitBroadcast: go.commitBroadcast ?? 'eager',
      prng: this.prng.fork(),
    });
    // The only voter needs nobody's vote: it campaigns now rather than after an election
    // timeout (1-2 s at the daemons' 100 ms ticks), so a one-master cluster answers at once.
    const cs = g.node.confState();
    if (cs.voters.length === 1 && cs.voters[0] === this.nodeId) g.node.campaign();
    this.groups.set(groupId, g);
    this.metrics?.groups.set(this.groups.size);
    this.schedule(g);
    return g;
  }

  start(): void {
    if (this.ticker) return;
    this.ticker = setInterval(() => {
      for (const g of this.groups.values()) {
        g.node.tick();
        g.dirty = true;
      }
      this.kick();
    }, this.o.tickMs);
  }

  /** Marks a group as having work and runs the loop soon. */
  schedule(g: TableGroup): void {
    g.dirty = true;
    this.kick();
  }

  private kick(yieldFirst = false): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    // An idle loop starts in a microtask, not a later loop turn: a proposal, an append at a
    // follower, or the response that commits an entry is handled without waiting for the
    // event loop to come round (one hop less on every write's path). Work that arrives in the
    // same callback (a batch of messages, proposals decoded from one read) still shares the
    // turn, and while a turn runs new work collects for the next one as before.
    const run = (): void => {
      this.scheduled = false;
      void this.loop();
    };
    if (yieldFirst) setImmediate(run);
    else queueMicrotask(run);
  }

  private addressBookCache: { size: number; list: raftpb.raft.PeerAddress.$Properties[] } | undefined;
  /** This host's peers, as sent with every message batch (bounded: the first 64). */
  private addressBook(): raftpb.raft.PeerAddress.$Properties[] {
    if (this.addressBookCache?.size !== this.peers.size) {
      const list: raftpb.raft.PeerAddress.$Properties[] = [];
      for (const [id, address] of this.peers) if (list.length < 64) list.push({ id, address });
      this.addressBookCache = { size: this.peers.size, list };
    }
    return this.addressBookCache.list;
  }

  /** Adds members this host has not heard of (added at runtime); never overrides configuration. */
  private learnPeers(list: raftpb.raft.PeerAddress.$Properties[]): void {
    for (const p of list.slice(0, 64)) {
      const id = p.id ?? 0;
      if (id > 0 && p.address && !this.peers.has(id) && this.peers.size < 1024) {
        this.peers.set(id, p.address);
        this.log.info({ id, address: p.address }, 'raft: learned the address of a new member');
      }
    }
  }

  /** Records where a member (new at runtime) listens, before it is added to a group. */
  setPeerAddress(id: number, address: string): void {
    this.peers.set(id, address);
    this.addressBookCache = undefined;
  }

  private onMessages(msgs: raftpb.raft.Message.$Properties[]): void {
    for (const pm of msgs) {
      const g = this.groups.get(pm.groupId ?? 0);
      if (!g) continue; // a group not (yet) hosted here: the sender retries
      try {
        const m = fromPbMessage(pm);
        if (m.type === 'snap') continue; // snapshots only arrive through the snapshot stream
        g.node.step(m);
        g.dirty = true;
      } catch (err) {
        this.log.warn({ err, group: pm.groupId, from: pm.from }, 'raft: dropped bad message');
      }
    }
    this.kick();
  }

  /**
   * Stops one group on this running host: its pending proposals and reads fail with
   * TableClosedError, messages for it are dropped from now on, and with `destroy` its log and
   * state are deleted from disk (the group is gone for good: its members were told so; a
   * group id is never reused). Works for a group not hosted here too (destroying what a
   * previous run left on disk). Answers whether the group was hosted.
   */
  async removeGroup(groupId: number, opts: { destroy?: boolean } = {}): Promise<boolean> {
    const g = this.groups.get(groupId);
    if (g) {
      // Out of the map first: no later loop turn, tick or message reaches it. A turn already
      // running may hold its Ready; wait for that turn, so nothing of it is written after the
      // data below is deleted.
      this.groups.delete(groupId);
      g.closed = true;
      if (this.processing) await this.processing.catch(() => undefined);
      await g.sm.settled().catch(() => undefined);
      g.failAll(new TableClosedError(`group ${groupId} is closed`));
      g.sm.closeWatchers(new TableClosedError(`group ${groupId} is closed`));
      this.metrics?.groups.set(this.groups.size);
      const img = this.snapshotImages.get(groupId);
      this.snapshotImages.delete(groupId);
      if (img) await rm(img.path, { force: true }).catch(() => undefined);
    }
    if (opts.destroy) {
      await this.opts.log.drop(groupId);
      await TableStateMachine.destroy(this.opts.db, groupId);
    }
    return g !== undefined;
  }

  private async loop(): Promise<void> {
    if (this.running || this.closed) return;
    this.running = true;
    try {
      for (let turn = 0; turn < 1000; turn++) {
        this.again = false;
        const work: { g: TableGroup; rd: Ready }[] = [];
        for (const g of this.groups.values()) {
          if (!g.dirty) continue;
          g.dirty = false;
          if (g.node.hasReady()) work.push({ g, rd: g.node.ready() });
        }
        if (work.length === 0) {
          if (!this.again) break;
          continue;
        }
        this.metrics?.readyLoops.inc();
        this.processing = this.process(work);
        try {
          await this.processing;
        } finally {
          this.processing = undefined;
        }
      }
    } catch (err) {
      this.fail(err as Error);
    } finally {
      this.running = false;
    }
    // After 1000 turns the event loop gets its turn first: turns that never wait on I/O must
    // not starve timers and sockets.
    if (this.again && !this.closed) this.kick(true);
  }

  /** A failure to persist or apply means this node can no longer promise durability: stop serving. */
  private fail(err: Error): void {
    if (this.closed) return;
    this.log.fatal({ err }, 'raft: ready loop failed; host stopping');
    for (const g of this.groups.values()) g.failAll(err);
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
  }

  private async process(work: { g: TableGroup; rd: Ready }[]): Promise<void> {
    // 0. A leader's appends and heartbeats go out before its own write (Raft thesis 10.2.1:
    // the leader writes its log in parallel with replicating it). Safe here because any commit
    // this enables reaches the state machine and the network only in a later loop turn, which
    // starts after this turn's persist has finished. Everything else (votes, append responses)
    // waits for persistence below.
    const early = new Map<number, Message[]>();
    const late: Message[][] = [];
    for (const { rd } of work) {
      const rest: Message[] = [];
      for (const m of rd.messages) {
        if (m.type === 'app' || m.type === 'heartbeat') {
          let list = early.get(m.to);
          if (!list) early.set(m.to, (list = []));
          list.push(m);
        } else rest.push(m);
      }
      late.push(rest);
    }
    for (const [to, msgs] of early) this.send(to, msgs);
    // 1. Persist every group's entries, hard state and snapshot in one batch.
    const writes: GroupWrite[] = [];
    let sync = false;
    let nEntries = 0;
    for (const { g, rd } of work) {
      if (rd.entries.length === 0 && !rd.hardState && !rd.snapshot) continue;
      writes.push({ groupId: g.groupId, entries: rd.entries, ...(rd.hardState ? { hardState: rd.hardState } : {}), ...(rd.snapshot ? { snapshot: rd.snapshot } : {}) });
      sync ||= rd.mustSync;
      nEntries += rd.entries.length;
    }
    if (writes.length > 0) {
      const t0 = performance.now();
      await this.opts.log.persist(writes, sync);
      this.metrics?.persistSeconds.observe((performance.now() - t0) / 1000);
      this.metrics?.entriesPersisted.inc(nEntries);
    }
    // 2. Send, batched per peer.
    const byPeer = new Map<number, Message[]>();
    for (const [i, { g, rd }] of work.entries()) {
      if (rd.softState) g.onSoftState(rd.softState.lead);
      for (const m of late[i] as Message[]) {
        if (m.type === 'snap') {
          this.sendSnapshot(g, m);
          continue;
        }
        let list = byPeer.get(m.to);
        if (!list) byPeer.set(m.to, (list = []));
        list.push(m);
      }
    }
    for (const [to, msgs] of byPeer) this.send(to, msgs);
    // 3. Apply committed entries, answer waiters, advance.
    for (const { g, rd } of work) {
      if (rd.committedEntries.length > 0) {
        // Answered before the apply's level batch lands (see applyStaged); a batch that fails
        // stops the host (the state machine's onWriteError).
        const results = await g.sm.applyStaged(rd.committedEntries);
        g.appliedSinceCompact += rd.committedEntries.length;
        g.onApplied(results);
      }
      if (rd.readStates.length > 0) g.onReadStates(rd.readStates);
      g.node.advance(rd);
      g.dirty = true; // advance may have produced more work (e.g. the next committed batch)
      if (g.appliedSinceCompact >= this.o.compactAfterEntries) await this.compact(g);
    }
  }

  private send(to: number, msgs: Message[]): void {
    const addr = this.peers.get(to);
    if (!addr) {
      for (const m of msgs) this.groups.get(m.groupId)?.node.reportUnreachable(to);
      return;
    }
    const client: RpcClient = this.opts.pool.get(addr);
    this.metrics?.messagesSent.inc(msgs.length);
    // One way: raft is best-effort and retries what goes missing, so an RPC-level answer would
    // only cost the peer a frame write and us a read (half the frames of a replication round).
    // A rejection means the bytes never reached the socket: report the peer as a lost send did.
    client.notify(raftService.step, { from: this.nodeId, messages: msgs.map(toPbMessage), peers: this.addressBook() }, { deadlineMs: 5000 }).catch((err: unknown) => {
      this.metrics?.sendErrors.inc();
      this.log.debug({ err, to }, 'raft: send failed');
      const seen = new Set<number>();
      for (const m of msgs) {
        if (seen.has(m.groupId)) continue;
        seen.add(m.groupId);
        const g = this.groups.get(m.groupId);
        if (g && !g.closed) {
          g.node.reportUnreachable(to);
          g.dirty = true;
        }
      }
      this.kick();
    });
  }

  private sendSnapshot(g: TableGroup, m: Message): void {
    if (this.snapshotsInFlight >= this.o.maxConcurrentSnapshots) {
      g.node.reportSnapshot(m.to, 'failure');
      return;
    }
    const addr = this.peers.get(m.to);
    if (!addr || !m.snapshot) {
      g.node.reportSnapshot(m.to, 'failure');
      return;
    }
    this.snapshotsInFlight++;
    const metaIndex = m.snapshot.metadata.index;
    const run = async (): Promise<void> => {
      // The image: a point-in-time copy of the state machine, written once and reused by retries.
      let img = this.snapshotImages.get(g.groupId);
      if (!img || img.metaIndex !== metaIndex || !existsSync(img.path)) {
        if (img) await rm(img.path, { force: true });
        const identity = `${this.nodeId}-${g.groupId}-${m.term}-${metaIndex}-${randomSeed().toString(36)}`;
        // After close() nothing may (re)create the directory it removed.
        if (this.closed) throw new TableClosedError('host closing');
        await mkdir(this.snapshotDir, { recursive: true });
        const path = join(this.snapshotDir, `${identity}.snap`);
        const fh = await open(`${path}.tmp`, 'w');
        try {
          const len = Buffer.allocUnsafe(4);
          for await (const chunk of g.sm.snapshotChunks(this.o.snapshotChunkBytes)) {
            len.writeUInt32BE(chunk.length);
            await fh.write(len);
            await fh.write(chunk);
          }
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(`${path}.tmp`, path);
        if (this.closed) {
          // close() ran while the image was written (its removal may have come first).
          await this.dropSnapshotFiles([path]);
          throw new TableClosedError('host closing');
        }
        img = { identity, metaIndex, path, attempts: 0 };
        this.snapshotImages.set(g.groupId, img);
      }
      const attempt = img.attempts++;
      const client = this.opts.pool.get(addr);
      const { offset } = await client.call(raftService.snapshotOffset, { groupId: g.groupId, identity: img.identity }, { deadlineMs: 10_000 });
      this.opts.onSnapshotAttempt?.({ groupId: g.groupId, to: m.to, identity: img.identity, offset: offset ?? 0, attempt });
      const stream = client.clientStream(raftService.snapshot, { deadlineMs: 300_000 });
      await stream.write({ message: toPbMessage(m), identity: img.identity, offset: offset ?? 0 });
      const fh = await open(img.path, 'r');
      try {
        let pos = 0;
        let payload = 0;
        let index = 0;
        const len = Buffer.allocUnsafe(4);
        for (;;) {
          const r = await fh.read(len, 0, 4, pos);
          if (r.bytesRead < 4) break;
          const n = len.readUInt32BE(0);
          pos += 4;
          if (payload >= (offset ?? 0)) {
            if (this.opts.snapshotFault?.(index, attempt)) {
              stream.cancel();
              throw new Error('injected snapshot transfer fault');
            }
            const chunk = Buffer.allocUnsafe(n);
            await fh.read(chunk, 0, n, pos);
            await stream.write({ data: chunk });
          }
          pos += n;
          payload += n;
          index++;
        }
      } finally {
        await fh.close();
      }
      await stream.write({ last: true });
      const ack = await stream.end();
      if (!ack.ok) throw new Error(`peer refused snapshot: ${ack.error}`);
      this.snapshotImages.delete(g.groupId);
      await rm(img.path, { force: true });
    };
    run().then(
      () => {
        this.metrics?.snapshotsSent.inc({ result: 'ok' });
        g.node.reportSnapshot(m.to, 'finish');
        this.schedule(g);
      },
      (err: unknown) => {
        this.metrics?.snapshotsSent.inc({ result: 'failed' });
        this.log.warn({ err, group: g.groupId, to: m.to }, 'raft: snapshot send failed; it resumes on the next attempt');
        g.node.reportSnapshot(m.to, 'failure');
        this.schedule(g);
      },
    ).finally(() => this.snapshotsInFlight--);
  }

  private async receiveSnapshot(chunks: AsyncIterable<raftpb.raft.SnapshotChunk.$Properties>): Promise<raftpb.raft.SnapshotAck.$Properties> {
    const it = chunks[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done || !first.value.message) return { ok: false, error: 'snapshot stream without a header' };
    const identity = first.value.identity ?? '';
    if (identity === '') return { ok: false, error: 'snapshot stream without an identity' };
    const m = fromPbMessage(first.value.message);
    const g = this.groups.get(m.groupId);
    if (!g) return { ok: false, error: `group ${m.groupId} not hosted here` };
    if (m.type !== 'snap' || !m.snapshot) return { ok: false, error: 'first chunk is not a snapshot message' };
    try {
      await g.sm.beginRestore(identity, first.value.offset ?? 0);
      for (;;) {
        const r = await it.next();
        // A stream that ends without `last` keeps what arrived: the sender resumes from there.
        if (r.done) return { ok: false, error: 'snapshot stream ended before its last chunk' };
        if (r.value.last) break;
        // A group removed meanwhile takes no more chunks (its keys were or will be deleted).
        if (g.closed) return { ok: false, error: `group ${m.groupId} closed` };
        if (r.value.data && r.value.data.length > 0) await g.sm.restoreChunk(identity, r.value.data);
      }
      // The state machine takes the leader's applied state; then the core installs the
      // snapshot metadata and resets the log to it.
      if (g.closed) return { ok: false, error: `group ${m.groupId} closed` };
      await g.sm.finishRestore(identity);
    } catch (err) {
      return { ok: false, error: `snapshot not installed: ${(err as Error).message}` };
    }
    g.node.step(m);
    this.schedule(g);
    return { ok: true };
  }

  private async compact(g: TableGroup): Promise<void> {
    g.appliedSinceCompact = 0;
    // The log is cut below the applied index only once the state machine holds it on disk.
    await g.sm.settled();
    const applied = g.sm.appliedIndex;
    const first = g.glog.firstIndex();
    // Keep a tail so slightly lagging followers catch up from the log, not a snapshot.
    // The snapshot marks the applied state (its data is streamed from the state machine when
    // needed); the log is cut below it.
    const keep = Math.floor(this.o.compactAfterEntries / 2);
    const upTo = applied - keep;
    if (upTo <= first) return;
    g.glog.createSnapshot(applied, g.node.confState(), new Uint8Array(0));
    await this.opts.log.compact(g.groupId, upTo);
  }

  /** Closing: removes these images, and the whole directory if it is this host's own (best effort: close() must finish). */
  private async dropSnapshotFiles(paths: string[]): Promise<void> {
    for (const p of paths) await rm(p, { force: true }).catch(() => undefined);
    if (this.ownSnapshotDir) await rm(this.snapshotDir, { recursive: true, force: true }).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.ticker) clearInterval(this.ticker);
    await this.dropSnapshotFiles([...this.snapshotImages.values()].map((img) => img.path));
    this.snapshotImages.clear();
    for (let i = 0; i < 200 && this.running; i++) await new Promise((r) => setTimeout(r, 5));
    // No apply batch may still be in flight when the caller closes the database.
    for (const g of this.groups.values()) await g.sm.settled().catch(() => undefined);
    for (const g of this.groups.values()) {
      g.closed = true;
      g.failAll(new TableClosedError('host closing'));
    }
  }
}
