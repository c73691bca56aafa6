// RaftDriver: the single-group asynchronous loop around a RawNode. It ticks from a timer,
// takes messages from the network (onMessage), and runs persist -> send -> apply -> advance
// for each Ready, one at a time. Proposals and reads return promises that settle when the
// entry is applied (or the read point is reached). A multi-raft host would instead batch the
// Readies of many groups into one LevelRaftDb.persist (group commit); this driver is the
// one-group building block the table library wires to lib/rpc.
import { assert, isContainerStackError, Prng, randomSeed } from '../common/index.js';
import { NotLeaderError, ProposalDroppedError, ReadIndexDroppedError, StoppedError } from './errors.js';
import type { RaftConfig } from './raft.js';
import { RawNode, type RaftStatus } from './rawnode.js';
import type { Storage } from './storage.js';
import type { ConfChange, Entry, HardState, Message, Ready, Snapshot, SoftState } from './types.js';

/** Storage the driver can write: the core reads it, the driver persists each Ready into it. */
export interface DriverStorage extends Storage {
  /** Durably writes snapshot, entries and hard state (in that order), e.g. one synced batch. */
  persistReady(rd: { snapshot?: Snapshot; entries: Entry[]; hardState?: HardState }): Promise<void>;
}

export interface Transport {
  /** Sends messages to their `to` nodes; best effort (raft retries). Must not throw. */
  send(msgs: Message[]): void;
}

export interface StateMachine {
  /** Applies committed entries in order (confChange entries too, for the record). */
  apply(entries: Entry[]): Promise<void> | void;
  /** Replaces the state with a snapshot received from the leader. */
  restore(snapshot: Snapshot): Promise<void> | void;
}

/** Timer seam so tests drive ticks by hand. */
export interface TickSource {
  start(onTick: () => void): void;
  stop(): void;
}

export function intervalTicks(tickIntervalMs: number): TickSource {
  let h: ReturnType<typeof setInterval> | undefined;
  return {
    start(onTick) {
      h = setInterval(onTick, tickIntervalMs);
      h.unref?.();
    },
    stop() {
      if (h !== undefined) clearInterval(h);
      h = undefined;
    },
  };
}

export interface RaftDriverOptions {
  /**
   * Core config. `applied` is where the state machine already is at start (a durable state
   * machine keeps it with its data); it must be at least the storage's snapshot index and the
   * state machine must already reflect that snapshot.
   */
  raft: Omit<RaftConfig, 'storage' | 'prng'> & { prng?: Prng };
  storage: DriverStorage;
  transport: Transport;
  stateMachine: StateMachine;
  ticks: TickSource;
  /** Proposals awaiting apply. invariant: pending.size <= maxPendingProposals */
  maxPendingProposals?: number;
  /** Reads awaiting their read point. */
  maxPendingReads?: number;
  /** A read not answered within this many ticks fails with ReadIndexDroppedError (the leader may be gone). */
  readTimeoutTicks?: number;
  /** Called when the loop fails (storage error); the driver stops. */
  onError?: (e: unknown) => void;
  /** Called when this node's role or known leader changes (after the Ready that shows it is persisted). */
  onSoftState?: (s: SoftState) => void;
}

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

export class RaftDriver {
  readonly node: RawNode;
  private readonly opts: RaftDriverOptions;
  /** index -> proposal waiting for that index to apply with the term it was proposed in. */
  private readonly proposals = new Map<number, Waiter<number> & { term: number }>();
  /** read context -> waiter; index set once the ReadState arrived. */
  private readonly reads = new Map<string, Waiter<number> & { index: number | undefined; deadlineTick: number }>();
  private tickCount = 0;
  private readonly readTimeoutTicks: number;
  private readSeq = 0;
  private appliedIndex: number;
  private running = false;
  private again = false;
  private stopped = false;
  private started = false;
  private idle: Promise<void> = Promise.resolve();
  private readonly maxPendingProposals: number;
  private readonly maxPendingReads: number;

  constructor(opts: RaftDriverOptions) {
    this.opts = opts;
    this.maxPendingProposals = opts.maxPendingProposals ?? 10_000;
    this.maxPendingReads = opts.maxPendingReads ?? 10_000;
    this.readTimeoutTicks = opts.readTimeoutTicks ?? 5 * opts.raft.electionTicks;
    const snapIndex = opts.storage.snapshot().metadata.index;
    this.appliedIndex = Math.max(opts.raft.applied ?? 0, snapIndex);
    this.node = new RawNode({ ...opts.raft, applied: this.appliedIndex, storage: opts.storage, prng: opts.raft.prng ?? new Prng(randomSeed()) });
  }

  start(): void {
    assert(!this.started, 'driver already started');
    this.started = true;
    this.opts.ticks.start(() => {
      if (this.stopped) return;
      this.tickCount++;
      this.node.tick();
      this.expireReads();
      this.kick();
    });
    this.kick();
  }

  /** Stops ticking and processing; pending proposals and reads fail with StoppedError. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.opts.ticks.stop();
    await this.idle;
    const err = new StoppedError('driver stopped');
    for (const w of this.proposals.values()) w.reject(err);
    for (const w of this.reads.values()) w.reject(err);
    this.proposals.clear();
    this.reads.clear();
  }

  /** Entry point for the transport: a message from a peer. Malformed messages are dropped. */
  onMessage(m: Message): void {
    if (this.stopped) return;
    try {
      this.node.step(m);
    } catch (e) {
      if (!isContainerStackError(e) || e.code === 'ASSERTION_FAILED') throw e;
      return;
    }
    this.kick();
  }

  /** Proposes data on the leader; resolves with the entry's index once applied here. */
  propose(data: Uint8Array): Promise<number> {
    return this.proposeWith(() => this.node.propose(data));
  }

  proposeConfChange(cc: ConfChange): Promise<number> {
    return this.proposeWith(() => this.node.proposeConfChange(cc));
  }

  private proposeWith(fn: () => void): Promise<number> {
    if (this.stopped) return Promise.reject(new StoppedError('driver stopped'));
    const r = this.node.raft;
    if (r.role !== 'leader') return Promise.reject(new NotLeaderError(r.lead));
    if (this.proposals.size >= this.maxPendingProposals) {
      return Promise.reject(new ProposalDroppedError(`${this.proposals.size} proposals pending, limit ${this.maxPendingProposals}`));
    }
    try {
      fn();
    } catch (e) {
      return Promise.reject(e);
    }
    const index = r.log.lastIndex();
    const term = r.term;
    const p = new Promise<number>((resolve, reject) => this.proposals.set(index, { resolve, reject, term }));
    this.kick();
    return p;
  }

  /** A linearizable read point: resolves once this node has applied everything committed before the call. */
  readIndex(): Promise<number> {
    if (this.stopped) return Promise.reject(new StoppedError('driver stopped'));
    if (this.reads.size >= this.maxPendingReads) return Promise.reject(new ReadIndexDroppedError('too many pending reads'));
    const ctx = `${this.node.id}.${++this.readSeq}`;
    try {
      this.node.readIndex(ctx);
    } catch (e) {
      return Promise.reject(e);
    }
    const deadlineTick = this.tickCount + this.readTimeoutTicks;
    const p = new Promise<number>((resolve, reject) => this.reads.set(ctx, { resolve, reject, index: undefined, deadlineTick }));
    this.kick();
    return p;
  }

  transferLeader(to: number): void {
    this.node.transferLeader(to);
    this.kick();
  }

  reportUnreachable(id: number): void {
    this.node.reportUnreachable(id);
    this.kick();
  }

  reportSnapshot(id: number, status: 'finish' | 'failure'): void {
    this.node.reportSnapshot(id, status);
    this.kick();
  }

  status(): RaftStatus {
    return this.node.status();
  }

  /** Resolves when the loop has nothing left to do (for tests and orderly shutdown). */
  async settled(): Promise<void> {
    while (this.running) await this.idle;
  }

  private kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (!this.node.hasReady()) return;
    this.running = true;
    this.idle = this.loop().finally(() => {
      this.running = false;
    });
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        while (!this.stopped && this.node.hasReady()) {
          const rd = this.node.ready();
          await this.handle(rd);
          this.node.advance(rd);
          this.settleReads();
        }
      } while (this.again && !this.stopped);
    } catch (e) {
      this.stopped = true;
      this.opts.ticks.stop();
      this.opts.onError?.(e);
      for (const w of this.proposals.values()) w.reject(e);
      for (const w of this.reads.values()) w.reject(e);
      this.proposals.clear();
      this.reads.clear();
    }
  }

  private async handle(rd: Ready): Promise<void> {
    // 1. persist: nothing that depends on this Ready leaves the node before it is durable.
    if (rd.snapshot || rd.entries.length > 0 || rd.hardState) {
      const w: { snapshot?: Snapshot; entries: Entry[]; hardState?: HardState } = { entries: rd.entries };
      if (rd.snapshot) w.snapshot = rd.snapshot;
      if (rd.hardState) w.hardState = rd.hardState;
      await this.opts.storage.persistReady(w);
    }
    // 2. send
    if (rd.messages.length > 0) this.opts.transport.send(rd.messages);
    // 3. apply
    if (rd.snapshot) {
      await this.opts.stateMachine.restore(rd.snapshot);
      this.appliedIndex = rd.snapshot.metadata.index;
      this.failProposalsUpTo(this.appliedIndex);
    }
    if (rd.committedEntries.length > 0) {
      await this.opts.stateMachine.apply(rd.committedEntries);
      for (const e of rd.committedEntries) {
        const w = this.proposals.get(e.index);
        if (w === undefined) continue;
        this.proposals.delete(e.index);
        if (w.term === e.term) w.resolve(e.index);
        else w.reject(new ProposalDroppedError(`entry ${e.index} was replaced by a newer leader`));
      }
      this.appliedIndex = (rd.committedEntries[rd.committedEntries.length - 1] as Entry).index;
    }
    if (rd.softState) this.opts.onSoftState?.(rd.softState);
    for (const rs of rd.readStates) {
      const w = this.reads.get(rs.context);
      if (w !== undefined) w.index = rs.index;
    }
  }

  private failProposalsUpTo(index: number): void {
    for (const [i, w] of this.proposals) {
      if (i > index) continue;
      this.proposals.delete(i);
      w.reject(new ProposalDroppedError(`outcome of entry ${i} unknown: replaced by a snapshot`));
    }
  }

  private expireReads(): void {
    for (const [ctx, w] of this.reads) {
      if (w.index === undefined && this.tickCount >= w.deadlineTick) {
        this.reads.delete(ctx);
        w.reject(new ReadIndexDroppedError(`read not confirmed within ${this.readTimeoutTicks} ticks`));
      }
    }
  }

  private settleReads(): void {
    for (const [ctx, w] of this.reads) {
      if (w.index !== undefined && w.index <= this.appliedIndex) {
        this.reads.delete(ctx);
        w.resolve(w.index);
      }
    }
  }
}
