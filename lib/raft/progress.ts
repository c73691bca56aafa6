// The leader's view of each follower (etcd's Progress and Inflights): which entries it has,
// where to send next, and how many append messages are in flight, so replication is pipelined
// but bounded by maxInflightMsgs / maxInflightBytes.
import { assert, BoundedQueue } from '../common/index.js';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export class Inflights {
  // invariant: indexes increase from head to tail; length <= maxMsgs
  private readonly q: BoundedQueue<{ index: number; sizeBytes: number }>;
  private bytes = 0;
  constructor(
    readonly maxMsgs: number,
    readonly maxBytes: number,
  ) {
    this.q = new BoundedQueue(maxMsgs, 'inflights');
  }
  get count(): number {
    return this.q.length;
  }
  get sizeBytes(): number {
    return this.bytes;
  }
  full(): boolean {
    return this.q.length >= this.maxMsgs || (this.maxBytes > 0 && this.bytes >= this.maxBytes);
  }
  add(index: number, sizeBytes: number): void {
    assert(!this.full(), 'inflights: add while full');
    this.q.push({ index, sizeBytes });
    this.bytes += sizeBytes;
  }
  /** Frees every in-flight message whose last index is <= index (the follower acked it). */
  freeLE(index: number): void {
    for (let h = this.q.peek(); h !== undefined && h.index <= index; h = this.q.peek()) {
      this.q.shift();
      this.bytes -= h.sizeBytes;
    }
  }
  freeFirstOne(): void {
    const h = this.q.shift();
    if (h) this.bytes -= h.sizeBytes;
  }
  reset(): void {
    this.q.clear();
    this.bytes = 0;
  }
}

export class Progress {
  // invariant: match < next
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** probe: one append is out; wait for its answer (or a heartbeat response) before the next. */
  probeSent = false;
  /** snapshot: index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** Lease reads: the highest leader tick echoed back by this peer's heartbeat responses. */
  leaseAckTick = -1;
  readonly inflights: Inflights;

  constructor(
    next: number,
    public isLearner: boolean,
    maxInflightMsgs: number,
    maxInflightBytes: number,
  ) {
    this.next = next;
    this.inflights = new Inflights(maxInflightMsgs, maxInflightBytes);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const ps = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, ps + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }
  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }
  becomeSnapshot(snapIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapIndex;
  }

  /** The follower acknowledged n; returns whether match advanced. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** Pipelining: assume the entries up to n will arrive. */
  optimisticUpdate(n: number): void {
    this.next = n + 1;
  }

  /** The follower rejected an append at `rejected`; move next back. Returns false for a stale rejection. */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}
