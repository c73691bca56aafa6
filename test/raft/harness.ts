// A synchronous in-memory cluster for scripted raft scenarios (etcd's raft_test "network"):
// every node is a RawNode over a MemoryStorage; stabilize() runs ready/persist/send/apply/advance
// until quiet, delivering messages unless a link is cut. It keeps a trace of delivered messages
// so scenarios can assert on what went over the wire.
import { Prng } from '../../lib/common/index.js';
import { MemoryStorage, RawNode, type Entry, type Message, type RaftConfig } from '../../lib/raft/index.js';

export interface TestNode {
  id: number;
  raw: RawNode;
  storage: MemoryStorage;
  /** Normal entries with data, in apply order. */
  applied: Entry[];
  readStates: { index: number; context: string }[];
}

export type NodeOptions = Partial<Omit<RaftConfig, 'id' | 'storage' | 'prng' | 'groupId'>>;

export class Cluster {
  readonly nodes = new Map<number, TestNode>();
  /** Directed links that drop everything: "from->to". */
  private readonly cut = new Set<string>();
  /** Extra drop rule, e.g. drop appResp from 2. */
  dropIf: ((m: Message) => boolean) | undefined;
  /** Every delivered message, as "type from->to". Bounded: cleared by the scenarios. */
  trace: Message[] = [];
  private readonly prng = new Prng(42);

  constructor(
    voters: number[],
    readonly opts: NodeOptions = {},
  ) {
    for (const id of voters) this.add(id, MemoryStorage.bootstrap(voters));
  }

  /** Adds a node; an empty storage makes it a joiner that learns the membership by snapshot. */
  add(id: number, storage = new MemoryStorage(), opts: NodeOptions = {}): TestNode {
    const raw = new RawNode({
      id, groupId: 1, storage, electionTicks: 10, heartbeatTicks: 1, prng: this.prng.fork(),
      applied: storage.snapshot().metadata.index, ...this.opts, ...opts,
    });
    const n: TestNode = { id, raw, storage, applied: [], readStates: [] };
    this.nodes.set(id, n);
    return n;
  }

  node(id: number): TestNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  isolate(id: number): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}->${other}`);
      this.cut.add(`${other}->${id}`);
    }
  }
  cutLink(from: number, to: number): void {
    this.cut.add(`${from}->${to}`);
  }
  recover(): void {
    this.cut.clear();
    this.dropIf = undefined;
  }

  /** Persists, sends and applies everything outstanding until no node has work (bounded). */
  stabilize(maxRounds = 1000): void {
    for (let round = 0; round < maxRounds; round++) {
      const outbox: Message[] = [];
      for (const n of this.nodes.values()) {
        if (!n.raw.hasReady()) continue;
        const rd = n.raw.ready();
        if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
        n.storage.append(rd.entries);
        if (rd.hardState) n.storage.setHardState(rd.hardState);
        outbox.push(...rd.messages);
        for (const e of rd.committedEntries) if (e.type === 'normal' && e.data.byteLength > 0) n.applied.push(e);
        n.readStates.push(...rd.readStates);
        n.raw.advance(rd);
      }
      if (outbox.length === 0) return;
      for (const m of outbox) this.deliver(m);
    }
    throw new Error('cluster did not stabilize');
  }

  private deliver(m: Message): void {
    const to = this.nodes.get(m.to);
    const dropped = to === undefined || this.cut.has(`${m.from}->${m.to}`) || (this.dropIf?.(m) ?? false);
    if (m.type === 'snap') this.nodes.get(m.from)?.raw.reportSnapshot(m.to, dropped ? 'failure' : 'finish');
    if (dropped || to === undefined) return;
    this.trace.push(m);
    to.raw.step(structuredClone(m));
  }

  tick(id: number, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.node(id).raw.tick();
      this.stabilize();
    }
  }

  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) n.raw.tick();
      this.stabilize();
    }
  }

  /** The unique leader with the highest term, or 0. */
  leader(): number {
    let best: TestNode | undefined;
    for (const n of this.nodes.values()) {
      const r = n.raw.raft;
      if (r.role === 'leader' && (best === undefined || r.term > best.raw.raft.term)) best = n;
    }
    return best?.id ?? 0;
  }

  propose(id: number, text: string): void {
    this.node(id).raw.propose(new TextEncoder().encode(text));
    this.stabilize();
  }

  appliedText(id: number): string[] {
    return this.node(id).applied.map((e) => new TextDecoder().decode(e.data));
  }

  /** The full log of a node as "term/index" strings (after the snapshot). */
  logTerms(id: number): string[] {
    const log = this.node(id).raw.raft.log;
    const out: string[] = [];
    for (let i = log.firstIndex(); i <= log.lastIndex(); i++) out.push(`${log.term(i)}/${i}`);
    return out;
  }

  countTrace(pred: (m: Message) => boolean): number {
    return this.trace.filter(pred).length;
  }
}
