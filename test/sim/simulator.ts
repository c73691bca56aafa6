// The deterministic raft simulator: N nodes, each a RawNode over a MemoryStorage, a simulated
// disk that loses unsynced writes on crash (a random prefix of the unsynced writes survives),
// a simulated network (drop, duplicate, reorder, delay, partition, heal) and a simulated clock
// (ticks). One seed chooses every parameter and every fault, so a failure replays exactly.
//
// After every tick it checks raft's safety properties; clients run put/get/cas against a
// replicated key/value store (reads through ReadIndex, or leases on some seeds) and the history
// is checked for linearizability at the end. A safety phase with faults is followed by a
// liveness phase that heals everything and requires convergence.
import { Prng } from '../../lib/common/index.js';
import {
  MemoryStorage, RawNode, NotLeaderError, SnapshotAssembler, splitSnapshot, type ConfChange, type Entry, type Message, type Ready,
  type Snapshot, type SnapshotChunk,
} from '../../lib/raft/index.js';
import { checkHistory, type HistoryOp, type KvInput } from './linearizability.js';
import { decodeCommand, encodeCommand, KvStateMachine, type KvCommand, type KvResult } from './kv.js';

export interface SimOptions {
  seed: number;
  /** Ticks of the safety phase (faults on). */
  steps?: number;
  /** Upper bound of the liveness phase in ticks. */
  livenessStepsMax?: number;
  /** Receives a line per notable event when set (for replay debugging). */
  trace?: (line: string) => void;
}

export interface SimParams {
  nodeIds: number[];
  initialVoters: number[];
  membership: boolean;
  leaseRead: boolean;
  preVote: boolean;
  checkQuorum: boolean;
  electionTicks: number;
  heartbeatTicks: number;
  maxInflightMsgs: number;
  maxSizePerMsgBytes: number;
  dropP: number;
  dupP: number;
  delayTicksMax: number;
  crashP: number;
  restartP: number;
  partitionP: number;
  healP: number;
  syncDelayTicksMax: number;
  compactEveryEntries: number;
  tickSkipP: number;
  clients: number;
  keys: string[];
  confChangeEveryTicks: number;
  transferP: number;
  snapshotChunkBytes: number;
}

export interface SimStats {
  ticks: number;
  livenessTicks: number;
  ops: number;
  opsCompleted: number;
  crashes: number;
  partitions: number;
  confChanges: number;
  snapshotsSent: number;
  snapshotResumes: number;
  transfers: number;
  leaderChanges: number;
  maxTerm: number;
}

export class SimFailure extends Error {
  constructor(
    readonly seed: number,
    readonly tick: number,
    message: string,
  ) {
    super(`seed ${seed} tick ${tick}: ${message}`);
    this.name = 'SimFailure';
  }
}

export function chooseParams(prng: Prng): SimParams {
  const membership = prng.chance(0.35);
  const nodeCount = membership ? 5 : prng.pick([3, 3, 5]);
  const nodeIds = Array.from({ length: nodeCount }, (_, i) => i + 1);
  const leaseRead = prng.chance(0.25);
  const checkQuorum = leaseRead || prng.chance(0.75);
  return {
    nodeIds,
    initialVoters: membership ? [1, 2, 3] : nodeIds,
    membership,
    leaseRead,
    preVote: prng.chance(0.75),
    checkQuorum,
    electionTicks: prng.range(8, 16),
    heartbeatTicks: prng.range(1, 3),
    maxInflightMsgs: prng.range(1, 8),
    maxSizePerMsgBytes: prng.range(100, 2000),
    dropP: prng.pick([0, 0.01, 0.05, 0.1]),
    dupP: prng.pick([0, 0.01, 0.05]),
    delayTicksMax: prng.range(0, 4),
    crashP: prng.pick([0, 0.002, 0.005, 0.01]),
    restartP: prng.pick([0.02, 0.05, 0.2]),
    partitionP: prng.pick([0, 0.003, 0.01, 0.02]),
    healP: prng.pick([0.01, 0.03, 0.1]),
    syncDelayTicksMax: prng.range(0, 2),
    compactEveryEntries: prng.pick([8, 20, 50, 1_000_000]),
    // Lease reads assume every node's clock runs at the same rate: no skipped ticks then.
    tickSkipP: leaseRead ? 0 : prng.pick([0, 0, 0.05, 0.2]),
    clients: prng.range(2, 5),
    keys: ['a', 'b', 'c'].slice(0, prng.range(1, 3)),
    confChangeEveryTicks: prng.range(60, 250),
    transferP: prng.pick([0, 0.002, 0.01]),
    snapshotChunkBytes: prng.pick([16, 64, 4096]),
  };
}

// ---- simulated disk ----

type DiskOp =
  | { kind: 'append'; entries: Entry[] }
  | { kind: 'hardState'; term: number; vote: number; commit: number }
  | { kind: 'installSnapshot'; snap: Snapshot }
  | { kind: 'createSnapshot'; snap: Snapshot }
  | { kind: 'compact'; index: number };

/** What a node's disk holds durably, plus the writes issued but not yet synced. */
export class SimDisk {
  durable = new MemoryStorage();
  // invariant: ops are applied to `durable` in issue order; a crash keeps a prefix of them
  private unsynced: DiskOp[] = [];

  constructor(initial: MemoryStorage) {
    this.durable = initial;
  }
  write(op: DiskOp): void {
    this.unsynced.push(op);
  }
  sync(): void {
    for (const op of this.unsynced) applyOp(this.durable, op);
    this.unsynced = [];
  }
  /** Power loss: some prefix of the unsynced writes made it to the platter, the rest is lost. */
  crash(prng: Prng): number {
    const kept = this.unsynced.length === 0 ? 0 : prng.int(this.unsynced.length + 1);
    for (const op of this.unsynced.slice(0, kept)) applyOp(this.durable, op);
    const lost = this.unsynced.length - kept;
    this.unsynced = [];
    return lost;
  }
  /** A fresh in-memory view of what is durable (what a restarted process reads). */
  load(): MemoryStorage {
    return cloneStorage(this.durable);
  }
}

function applyOp(s: MemoryStorage, op: DiskOp): void {
  switch (op.kind) {
    case 'append':
      s.append(op.entries);
      return;
    case 'hardState':
      s.setHardState({ term: op.term, vote: op.vote, commit: op.commit });
      return;
    case 'installSnapshot':
      if (op.snap.metadata.index > s.snapshot().metadata.index) s.applySnapshot(op.snap);
      return;
    case 'createSnapshot':
      if (op.snap.metadata.index > s.snapshot().metadata.index && op.snap.metadata.index <= s.lastIndex()) {
        s.createSnapshot(op.snap.metadata.index, op.snap.metadata.confState, op.snap.data);
      }
      return;
    case 'compact':
      if (op.index <= s.snapshot().metadata.index) s.compact(op.index);
      return;
  }
}

function cloneStorage(src: MemoryStorage): MemoryStorage {
  const s = new MemoryStorage();
  const snap = src.snapshot();
  if (snap.metadata.index > 0) s.applySnapshot(snap);
  const first = src.firstIndex();
  const last = src.lastIndex();
  if (last >= first) s.append(src.entries(first, last + 1, Number.MAX_SAFE_INTEGER));
  s.setHardState(src.hardStateNow());
  return s;
}

function allEntries(s: MemoryStorage): Entry[] {
  const first = s.firstIndex();
  const last = s.lastIndex();
  return last >= first ? s.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
}

function entryHash(e: Entry): string {
  return `${e.term}/${e.type}/${Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).toString('base64')}`;
}

// ---- nodes ----

interface PendingRead {
  client: number;
  opId: number;
  /** Set when the ReadState arrived: serve once applied >= index. */
  index: number | undefined;
}

const MAX_PENDING_READS_PER_NODE = 256;

class SimNode {
  alive = true;
  raw!: RawNode;
  storage!: MemoryStorage;
  sm!: KvStateMachine;
  /** A Ready written to the disk and waiting for its sync (persist is asynchronous). */
  syncing: { rd: Ready; syncAtTick: number } | undefined;
  /** invariant: size <= MAX_PENDING_READS_PER_NODE (oldest dropped; the client retries). */
  reads = new Map<string, PendingRead>();
  /** Inbound snapshot streams (in memory: lost on crash, so a restart resumes from 0). */
  assembler = new SnapshotAssembler(64 << 20);
  /** Highest commit index this node's log was checked against the global record. */
  checkedCommit = 0;
  restarts = 0;

  constructor(
    readonly id: number,
    readonly disk: SimDisk,
  ) {}
}

interface Client {
  id: number;
  seq: number;
  leaderHint: number;
  nextOpTick: number;
  pending:
    | {
        opId: number;
        input: KvInput;
        cmd: KvCommand | undefined;
        attempt: number;
        target: number;
        deadlineTick: number;
        retryAtTick: number;
      }
    | undefined;
}

interface InFlight {
  deliverAtTick: number;
  /** A raft message, or one chunk of a streamed snapshot. */
  msg: Message | undefined;
  chunk: SnapshotChunk | undefined;
}

const MAX_IN_FLIGHT = 20_000;

export class Simulation {
  readonly params: SimParams;
  readonly stats: SimStats = {
    ticks: 0, livenessTicks: 0, ops: 0, opsCompleted: 0, crashes: 0, partitions: 0, confChanges: 0, snapshotsSent: 0, snapshotResumes: 0, transfers: 0,
    leaderChanges: 0, maxTerm: 0,
  };
  private readonly prngParams: Prng;
  private readonly prngNet: Prng;
  private readonly prngFault: Prng;
  private readonly prngClient: Prng;
  private readonly prngNodes: Prng;
  private readonly nodes = new Map<number, SimNode>();
  private net: InFlight[] = [];
  /** Directed links that drop everything: "from->to". */
  private blocked = new Set<string>();
  private faultsOn = true;
  private tickNow = 0;
  /** Global event counter: the real-time order of client invocations and responses. */
  private eventClock = 0;
  private readonly clients: Client[] = [];
  private readonly history = new Map<number, HistoryOp>();
  // --- global records for the safety checks ---
  private readonly leaderOfTerm = new Map<number, number>();
  /** (index, term) -> entry hash: one entry per index per term (leaders append once). */
  private readonly entryAt = new Map<string, string>();
  /** index -> hash of the committed entry. */
  private readonly committedAt = new Map<number, string>();
  private maxCommitted = 0;
  /** index -> hash of the entry applied there by anyone. */
  private readonly appliedAt = new Map<number, string>();
  private lastLeader = 0;
  private nextConfChangeTick: number;

  constructor(readonly opts: SimOptions) {
    const root = new Prng(opts.seed);
    this.prngParams = root.fork();
    this.prngNet = root.fork();
    this.prngFault = root.fork();
    this.prngClient = root.fork();
    this.prngNodes = root.fork();
    this.params = chooseParams(this.prngParams);
    const p = this.params;
    for (const id of p.nodeIds) {
      const initial = p.initialVoters.includes(id)
        ? MemoryStorage.bootstrap(p.initialVoters, new KvStateMachine().snapshot())
        : new MemoryStorage();
      const n = new SimNode(id, new SimDisk(initial));
      this.nodes.set(id, n);
      this.start(n);
    }
    for (let i = 0; i < p.clients; i++) {
      this.clients.push({ id: i + 1, seq: 0, leaderHint: 0, nextOpTick: this.prngClient.int(20), pending: undefined });
    }
    this.nextConfChangeTick = p.confChangeEveryTicks;
  }

  private trace(line: string): void {
    this.opts.trace?.(`[${this.tickNow}] ${line}`);
  }

  private fail(message: string): never {
    throw new SimFailure(this.opts.seed, this.tickNow, message);
  }

  // ---- node lifecycle ----

  private start(n: SimNode): void {
    n.storage = n.disk.load();
    const snap = n.storage.snapshot();
    n.sm = KvStateMachine.restore(snap.data);
    n.sm.appliedIndex = snap.metadata.index;
    n.syncing = undefined;
    n.reads.clear();
    n.assembler = new SnapshotAssembler(64 << 20);
    n.checkedCommit = 0;
    const p = this.params;
    n.raw = new RawNode({
      id: n.id,
      groupId: 7,
      storage: n.storage,
      electionTicks: p.electionTicks,
      heartbeatTicks: p.heartbeatTicks,
      applied: snap.metadata.index,
      maxSizePerMsgBytes: p.maxSizePerMsgBytes,
      maxInflightMsgs: p.maxInflightMsgs,
      maxUncommittedEntriesSizeBytes: 64 * 1024,
      preVote: p.preVote,
      checkQuorum: p.checkQuorum,
      readOnlyOption: p.leaseRead ? 'leaseBased' : 'safe',
      // Both ways of telling followers about commits (odd seeds: with heartbeats, as RaftHost does).
      commitBroadcast: this.opts.seed % 2 === 1 ? 'heartbeat' : 'eager',
      prng: this.prngNodes.fork(),
    });
    n.alive = true;
  }

  private crash(n: SimNode): void {
    const lost = n.disk.crash(this.prngFault);
    n.alive = false;
    n.syncing = undefined;
    n.reads.clear();
    this.stats.crashes++;
    this.trace(`crash ${n.id} (lost ${lost} unsynced writes)`);
  }

  // ---- network ----

  private send(m: Message): void {
    if (this.net.length >= MAX_IN_FLIGHT) return; // the network is full: drop
    if (m.type === 'snap') {
      this.streamSnapshot(m);
      return;
    }
    const copies = this.faultsOn && this.prngNet.chance(this.params.dupP) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const delay = this.prngNet.int(this.params.delayTicksMax + 1);
      this.net.push({ deliverAtTick: this.tickNow + delay, msg: structuredClone(m), chunk: undefined });
    }
  }

  /**
   * Snapshots travel as chunks, each delayed, dropped or reordered on its own. A new stream for
   * the same snapshot resumes where the receiver's assembler stopped (the handshake a real
   * transport does by asking the receiver).
   */
  private streamSnapshot(m: Message): void {
    const to = this.nodes.get(m.to);
    const snap = m.snapshot as Snapshot;
    const probe = { groupId: m.groupId, from: m.from, term: m.term, metadata: snap.metadata };
    const resumeAt = to !== undefined && to.alive ? to.assembler.receivedBytes(probe) : 0;
    if (resumeAt > 0) this.stats.snapshotResumes++;
    const chunks = splitSnapshot(structuredClone(m), this.params.snapshotChunkBytes, resumeAt);
    let at = this.tickNow;
    for (const c of chunks) {
      at += this.prngNet.int(this.params.delayTicksMax + 1) === 0 ? 0 : 1;
      const delay = this.prngNet.chance(0.1) ? this.prngNet.int(this.params.delayTicksMax + 1) : 0;
      this.net.push({ deliverAtTick: at + delay, msg: undefined, chunk: c });
    }
  }

  private deliverChunk(c: SnapshotChunk): void {
    const to = this.nodes.get(c.to);
    const from = this.nodes.get(c.from);
    const report = (status: 'finish' | 'failure') => {
      if (from !== undefined && from.alive) from.raw.reportSnapshot(c.to, status);
    };
    const dropped =
      to === undefined || !to.alive || this.blocked.has(`${c.from}->${c.to}`) ||
      (this.faultsOn && this.prngNet.chance(this.params.dropP));
    if (dropped || to === undefined) {
      // The stream broke: the transport tells raft, which retries later (and we resume).
      report('failure');
      return;
    }
    const r = to.assembler.add(c);
    if (r.kind === 'outOfOrder') {
      report('failure');
    } else if (r.kind === 'complete') {
      this.stats.snapshotsSent++;
      report('finish');
      to.raw.step(r.message);
    }
  }

  private deliverDue(): void {
    const due: InFlight[] = [];
    const rest: InFlight[] = [];
    for (const f of this.net) (f.deliverAtTick <= this.tickNow ? due : rest).push(f);
    this.net = rest;
    for (const f of due) {
      if (f.chunk !== undefined) {
        this.deliverChunk(f.chunk);
        continue;
      }
      const m = f.msg as Message;
      const to = this.nodes.get(m.to);
      const from = this.nodes.get(m.from);
      const dropped =
        to === undefined || !to.alive || this.blocked.has(`${m.from}->${m.to}`) ||
        (this.faultsOn && this.prngNet.chance(this.params.dropP));
      if (dropped || to === undefined) {
        // Sometimes the transport notices a dead peer and says so (raft stops pipelining to it).
        if (from !== undefined && from.alive && to !== undefined && !to.alive && this.prngNet.chance(0.1)) from.raw.reportUnreachable(m.to);
        continue;
      }
      to.raw.step(m);
    }
  }

  // ---- ready processing: persist (async sync), then send, then apply ----

  private processNode(n: SimNode): void {
    if (!n.alive) return;
    for (let rounds = 0; rounds < 8; rounds++) {
      if (n.syncing === undefined) {
        if (!n.raw.hasReady()) return;
        const rd = n.raw.ready();
        this.write(n, rd);
        const delay = rd.mustSync ? this.prngFault.int(this.params.syncDelayTicksMax + 1) : 0;
        n.syncing = { rd, syncAtTick: this.tickNow + delay };
      }
      if (n.syncing.syncAtTick > this.tickNow) return;
      const { rd } = n.syncing;
      n.syncing = undefined;
      n.disk.sync();
      for (const m of rd.messages) this.send(m);
      this.apply(n, rd);
      n.raw.advance(rd);
      this.maybeCompact(n);
      this.serveReads(n);
    }
  }

  private write(n: SimNode, rd: Ready): void {
    if (rd.softState?.role === 'leader') this.onLeader(n);
    if (rd.snapshot) {
      n.storage.applySnapshot(rd.snapshot);
      n.disk.write({ kind: 'installSnapshot', snap: rd.snapshot });
    }
    if (rd.entries.length > 0) {
      for (const e of rd.entries) {
        const k = `${e.index}/${e.term}`;
        const h = entryHash(e);
        const prev = this.entryAt.get(k);
        if (prev === undefined) this.entryAt.set(k, h);
        else if (prev !== h) this.fail(`log matching: two different entries at index ${e.index} term ${e.term}`);
      }
      n.storage.append(rd.entries);
      n.disk.write({ kind: 'append', entries: rd.entries });
    }
    if (rd.hardState) {
      n.storage.setHardState(rd.hardState);
      n.disk.write({ kind: 'hardState', ...rd.hardState });
      this.checkCommitted(n, rd.hardState.commit);
    }
  }

  private apply(n: SimNode, rd: Ready): void {
    if (rd.snapshot) {
      n.sm = KvStateMachine.restore(rd.snapshot.data);
      n.sm.appliedIndex = rd.snapshot.metadata.index;
      this.trace(`node ${n.id} installed snapshot at ${rd.snapshot.metadata.index}`);
    }
    for (const e of rd.committedEntries) {
      if (e.index !== n.sm.appliedIndex + 1) this.fail(`node ${n.id} applies ${e.index} after ${n.sm.appliedIndex}`);
      const h = entryHash(e);
      const prev = this.appliedAt.get(e.index);
      if (prev === undefined) this.appliedAt.set(e.index, h);
      else if (prev !== h) this.fail(`state machine safety: node ${n.id} applied a different entry at ${e.index}`);
      n.sm.appliedIndex = e.index;
      if (e.type === 'confChange') {
        this.trace(`node ${n.id} applies conf change at ${e.index}: ${Buffer.from(e.data).toString()}`);
        continue;
      }
      if (e.data.byteLength === 0) continue;
      const cmd = decodeCommand(e.data);
      const result = n.sm.apply(cmd);
      if (result !== undefined) this.completeWrite(cmd, result);
    }
    for (const rs of rd.readStates) {
      const r = n.reads.get(rs.context);
      if (r !== undefined) r.index = rs.index;
    }
  }

  private maybeCompact(n: SimNode): void {
    const snapIndex = n.storage.snapshot().metadata.index;
    const applied = n.sm.appliedIndex;
    if (applied - snapIndex < this.params.compactEveryEntries || applied > n.storage.lastIndex()) return;
    const snap = n.storage.createSnapshot(applied, n.raw.confState(), n.sm.snapshot());
    n.disk.write({ kind: 'createSnapshot', snap });
    const keep = this.prngFault.int(4);
    const compactTo = Math.max(snapIndex, applied - keep);
    if (compactTo > n.storage.firstIndex() - 1) {
      n.storage.compact(compactTo);
      n.disk.write({ kind: 'compact', index: compactTo });
    }
  }

  private serveReads(n: SimNode): void {
    for (const [ctx, r] of n.reads) {
      if (r.index === undefined || n.sm.appliedIndex < r.index) continue;
      n.reads.delete(ctx);
      const c = this.clients[r.client - 1];
      if (c?.pending === undefined || c.pending.opId !== r.opId) continue;
      const input = c.pending.input;
      if (input.kind !== 'get') continue;
      this.complete(c, { kind: 'value', value: n.sm.get(input.key) });
    }
  }

  // ---- safety checks ----

  private onLeader(n: SimNode): void {
    const term = n.raw.raft.term;
    const prev = this.leaderOfTerm.get(term);
    if (prev !== undefined && prev !== n.id) this.fail(`election safety: nodes ${prev} and ${n.id} both lead term ${term}`);
    this.leaderOfTerm.set(term, n.id);
    if (n.id !== this.lastLeader) this.stats.leaderChanges++;
    this.lastLeader = n.id;
    this.stats.maxTerm = Math.max(this.stats.maxTerm, term);
    this.trace(`node ${n.id} leads term ${term}`);
    // Leader completeness: the new leader's log holds every entry committed so far.
    const log = n.raw.raft.log;
    if (log.lastIndex() < this.maxCommitted) this.fail(`leader completeness: leader ${n.id} last index ${log.lastIndex()} < committed ${this.maxCommitted}`);
    const first = log.firstIndex();
    for (let i = Math.max(first, 1); i <= this.maxCommitted; i++) {
      const h = this.committedAt.get(i);
      if (h === undefined) continue;
      const e = log.slice(i, i + 1, Number.MAX_SAFE_INTEGER)[0];
      if (e === undefined || entryHash(e) !== h) this.fail(`leader completeness: leader ${n.id} of term ${term} lacks committed entry ${i}`);
    }
  }

  /** Records entries newly known committed and checks this node's committed prefix agrees. */
  private checkCommitted(n: SimNode, commit: number): void {
    const log = n.raw.raft.log;
    const from = Math.max(n.checkedCommit + 1, log.firstIndex());
    for (let i = from; i <= commit; i++) {
      const e = log.slice(i, i + 1, Number.MAX_SAFE_INTEGER)[0];
      if (e === undefined) continue;
      const h = entryHash(e);
      const prev = this.committedAt.get(i);
      if (prev === undefined) this.committedAt.set(i, h);
      else if (prev !== h) this.fail(`committed entry ${i} differs on node ${n.id}`);
    }
    n.checkedCommit = Math.max(n.checkedCommit, commit);
    this.maxCommitted = Math.max(this.maxCommitted, commit);
  }

  private checkEachTick(): void {
    for (const n of this.nodes.values()) {
      if (!n.alive) continue;
      const r = n.raw.raft;
      if (r.role === 'leader') {
        const prev = this.leaderOfTerm.get(r.term);
        if (prev !== undefined && prev !== n.id) this.fail(`election safety: ${prev} and ${n.id} lead term ${r.term}`);
      }
      if (r.log.applied > r.log.committed) this.fail(`node ${n.id} applied ${r.log.applied} > committed ${r.log.committed}`);
    }
  }

  /** Log matching over every pair of durable logs: same (index, term) implies same prefix. */
  checkLogMatching(): void {
    const logs = [...this.nodes.values()].map((n) => ({ id: n.id, ents: allEntries(n.alive ? n.storage : n.disk.durable) }));
    for (let a = 0; a < logs.length; a++) {
      for (let b = a + 1; b < logs.length; b++) {
        const la = logs[a] as { id: number; ents: Entry[] };
        const lb = logs[b] as { id: number; ents: Entry[] };
        const byIndex = new Map<number, Entry>();
        for (const e of lb.ents) byIndex.set(e.index, e);
        let matched = false;
        for (let i = la.ents.length - 1; i >= 0; i--) {
          const ea = la.ents[i] as Entry;
          const eb = byIndex.get(ea.index);
          if (eb === undefined) continue;
          if (!matched && eb.term === ea.term) matched = true;
          if (matched && entryHash(ea) !== entryHash(eb)) {
            this.fail(`log matching: nodes ${la.id} and ${lb.id} agree on a later (index, term) but differ at ${ea.index}`);
          }
        }
      }
    }
  }

  // ---- clients ----

  private aliveIds(): number[] {
    return [...this.nodes.values()].filter((n) => n.alive).map((n) => n.id);
  }

  private invoke(c: Client): void {
    const p = this.params;
    const key = this.prngClient.pick(p.keys);
    c.seq++;
    const value = `c${c.id}s${c.seq}`;
    const k = this.prngClient.int(10);
    let input: KvInput;
    let cmd: KvCommand | undefined;
    if (k < 4) {
      input = { kind: 'put', key, value };
      cmd = { client: c.id, seq: c.seq, op: 'put', key, value };
    } else if (k < 8) {
      input = { kind: 'get', key };
    } else {
      const expected = this.prngClient.chance(0.3) ? null : `c${this.prngClient.range(1, p.clients)}s${this.prngClient.range(Math.max(1, c.seq - 5), c.seq)}`;
      input = { kind: 'cas', key, expected, value };
      cmd = { client: c.id, seq: c.seq, op: 'cas', key, expected, value };
    }
    const opId = this.stats.ops++;
    this.history.set(opId, { id: opId, client: c.id, input, output: undefined, invokeTime: this.eventClock++, returnTime: Infinity });
    c.pending = { opId, input, cmd, attempt: 0, target: 0, deadlineTick: 0, retryAtTick: this.tickNow };
  }

  private attempt(c: Client): void {
    const pend = c.pending;
    if (pend === undefined) return;
    const alive = this.aliveIds();
    if (alive.length === 0) {
      pend.retryAtTick = this.tickNow + 5;
      return;
    }
    const hinted = this.nodes.get(c.leaderHint);
    const target = hinted !== undefined && hinted.alive && this.prngClient.chance(0.8) ? hinted.id : this.prngClient.pick(alive);
    const n = this.nodes.get(target) as SimNode;
    pend.attempt++;
    pend.target = target;
    pend.deadlineTick = this.tickNow + 3 * this.params.electionTicks;
    pend.retryAtTick = Infinity;
    try {
      if (pend.cmd !== undefined) {
        n.raw.propose(encodeCommand(pend.cmd));
      } else {
        const ctx = `r${c.id}.${c.seq}.${pend.attempt}`;
        if (n.reads.size >= MAX_PENDING_READS_PER_NODE) {
          const oldest = n.reads.keys().next();
          if (!oldest.done) n.reads.delete(oldest.value);
        }
        n.reads.set(ctx, { client: c.id, opId: pend.opId, index: undefined });
        n.raw.readIndex(ctx);
      }
      this.processNode(n);
    } catch (e) {
      if (e instanceof NotLeaderError) {
        c.leaderHint = e.leaderId;
      } else if (!(e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('RAFT_'))) {
        throw e;
      }
      pend.retryAtTick = this.tickNow + 1 + this.prngClient.int(3);
      pend.deadlineTick = Infinity;
    }
  }

  private completeWrite(cmd: KvCommand, result: KvResult): void {
    const c = this.clients[cmd.client - 1];
    if (c?.pending === undefined || c.pending.cmd === undefined || c.pending.cmd.seq !== cmd.seq) return;
    this.complete(c, result);
  }

  private complete(c: Client, output: HistoryOp['output']): void {
    const pend = c.pending;
    if (pend === undefined) return;
    const op = this.history.get(pend.opId) as HistoryOp;
    op.output = output;
    op.returnTime = this.eventClock++;
    c.pending = undefined;
    this.stats.opsCompleted++;
    c.nextOpTick = this.tickNow + this.prngClient.int(6);
    const target = this.nodes.get(pend.target);
    if (target?.alive) c.leaderHint = target.raw.raft.lead || c.leaderHint;
  }

  private runClients(issueNew: boolean): void {
    for (const c of this.clients) {
      if (c.pending === undefined) {
        if (issueNew && this.tickNow >= c.nextOpTick) {
          this.invoke(c);
          this.attempt(c);
        }
        continue;
      }
      if (this.tickNow >= c.pending.retryAtTick || this.tickNow >= c.pending.deadlineTick) {
        this.attempt(c);
      }
    }
  }

  // ---- faults ----

  private faults(): void {
    const p = this.params;
    for (const n of this.nodes.values()) {
      if (n.alive && this.prngFault.chance(p.crashP)) this.crash(n);
      else if (!n.alive && this.prngFault.chance(p.restartP)) {
        n.restarts++;
        this.start(n);
        this.trace(`restart ${n.id}`);
      }
    }
    if (this.blocked.size > 0 && this.prngFault.chance(p.healP)) {
      this.blocked.clear();
      this.trace('heal');
    } else if (this.prngFault.chance(p.partitionP)) {
      this.partition();
    }
    if (p.transferP > 0 && this.prngFault.chance(p.transferP)) {
      const l = this.currentLeader();
      const targets = l === undefined ? [] : l.raw.confState().voters.filter((v) => v !== l.id);
      if (l !== undefined && targets.length > 0) {
        const to = this.prngFault.pick(targets);
        l.raw.transferLeader(to);
        this.stats.transfers++;
        this.trace(`transfer leadership ${l.id} -> ${to}`);
      }
    }
    if (p.membership && this.tickNow >= this.nextConfChangeTick) {
      this.nextConfChangeTick = this.tickNow + p.confChangeEveryTicks;
      this.confChange();
    }
  }

  private partition(): void {
    const ids = this.prngFault.shuffle([...this.nodes.keys()]);
    const cut = this.prngFault.range(1, ids.length - 1);
    let side = new Set(ids.slice(0, cut));
    // The classic nemesis: cut the leader off with a minority, where stale leaders do harm.
    const leader = this.currentLeader();
    if (leader !== undefined && this.prngFault.chance(0.5)) {
      side = new Set([leader.id]);
      if (ids.length === 5 && this.prngFault.chance(0.5)) side.add(this.prngFault.pick(ids.filter((i) => i !== leader.id)));
    }
    const oneWay = this.prngFault.chance(0.2);
    this.blocked.clear();
    for (const a of ids) {
      for (const b of ids) {
        if (side.has(a) && !side.has(b)) {
          this.blocked.add(`${a}->${b}`);
          if (!oneWay) this.blocked.add(`${b}->${a}`);
        }
      }
    }
    this.stats.partitions++;
    this.trace(`partition {${[...side].join(',')}} ${oneWay ? '-/->' : '<-/->'} rest`);
  }

  private currentLeader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      if (!n.alive || n.raw.raft.role !== 'leader') continue;
      if (best === undefined || n.raw.raft.term > best.raw.raft.term) best = n;
    }
    return best;
  }

  private confChange(): void {
    const leader = this.currentLeader();
    if (leader === undefined) return;
    const cs = leader.raw.confState();
    const options: ConfChange[] = [];
    for (const id of this.nodes.keys()) {
      if (!cs.voters.includes(id) && !cs.learners.includes(id)) options.push({ type: 'addLearner', nodeId: id });
    }
    for (const id of cs.learners) {
      options.push({ type: 'addNode', nodeId: id });
      options.push({ type: 'removeNode', nodeId: id });
    }
    if (cs.voters.length > 2) for (const id of cs.voters) options.push({ type: 'removeNode', nodeId: id });
    if (options.length === 0) return;
    const cc = this.prngFault.pick(options);
    try {
      leader.raw.proposeConfChange(cc);
      this.stats.confChanges++;
      this.trace(`propose ${cc.type} ${cc.nodeId} via ${leader.id}`);
    } catch (e) {
      if (!(e instanceof Error && 'code' in e)) throw e;
    }
  }

  // ---- main loop ----

  private tick(issueNew: boolean): void {
    this.tickNow++;
    this.deliverDue();
    for (const n of this.nodes.values()) {
      if (!n.alive) continue;
      if (this.faultsOn && this.params.tickSkipP > 0 && this.prngFault.chance(this.params.tickSkipP)) continue;
      n.raw.tick();
    }
    if (this.faultsOn) this.faults();
    this.runClients(issueNew);
    for (const n of this.nodes.values()) this.processNode(n);
    this.checkEachTick();
    if (this.tickNow % 100 === 0) this.checkLogMatching();
  }

  /** Runs both phases; throws SimFailure on any violation. */
  run(): SimStats {
    const steps = this.opts.steps ?? 1500;
    for (let i = 0; i < steps; i++) this.tick(true);
    this.stats.ticks = steps;

    // Liveness: heal the network, restart every node, stop faults and new operations.
    this.faultsOn = false;
    this.blocked.clear();
    for (const n of this.nodes.values()) {
      if (!n.alive) {
        this.start(n);
        this.trace(`restart ${n.id} for liveness`);
      }
    }
    const maxLive = this.opts.livenessStepsMax ?? 3000;
    let converged = false;
    for (let i = 0; i < maxLive; i++) {
      this.tick(false);
      this.stats.livenessTicks = i + 1;
      if (i % 10 === 0 && this.converged()) {
        converged = true;
        break;
      }
    }
    this.checkLogMatching();
    if (!converged) this.fail(`liveness: no convergence within ${maxLive} ticks (${this.convergenceProblem()})`);
    const lin = checkHistory([...this.history.values()]);
    if (lin.kind === 'illegal') {
      const ops = lin.ops.map((o) => `#${o.id} c${o.client} ${JSON.stringify(o.input)} -> ${JSON.stringify(o.output)} [${o.invokeTime}, ${o.returnTime}]`);
      this.fail(`history not linearizable on key ${lin.key}:\n  ${ops.join('\n  ')}`);
    }
    if (lin.kind === 'unknown') this.fail(`linearizability check exceeded its search bound on key ${lin.key}`);
    return this.stats;
  }

  private convergenceProblem(): string {
    const leader = this.currentLeader();
    if (leader === undefined) return 'no leader';
    const pending = this.clients.filter((c) => c.pending !== undefined).length;
    if (pending > 0) return `${pending} client operations pending`;
    const cs = leader.raw.confState();
    const members = [...cs.voters, ...cs.learners];
    const lr = leader.raw.raft;
    for (const id of members) {
      const n = this.nodes.get(id);
      if (n === undefined || !n.alive) return `member ${id} down`;
      const r = n.raw.raft;
      if (r.log.applied !== lr.log.committed || n.sm.appliedIndex !== lr.log.committed || r.log.lastIndex() !== lr.log.lastIndex()) {
        return `member ${id} applied ${n.sm.appliedIndex}/${r.log.applied} last ${r.log.lastIndex()}, leader ${leader.id} committed ${lr.log.committed} last ${lr.log.lastIndex()}`;
      }
      if (n.sm.fingerprint() !== leader.sm.fingerprint()) return `member ${id} state differs from leader's`;
    }
    if (lr.log.committed !== lr.log.lastIndex()) return 'leader has uncommitted entries';
    return '';
  }

  private converged(): boolean {
    return this.convergenceProblem() === '';
  }
}

/** The command that replays one seed (printed on every failure). */
export function replayCommandFor(seed: number, steps = 1500): string {
  return `npm run sim -- --seed ${seed}${steps === 1500 ? '' : ` --steps ${steps}`}`;
}

export function runSimulation(opts: SimOptions): SimStats {
  return new Simulation(opts).run();
}
