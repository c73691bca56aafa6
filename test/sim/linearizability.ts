// A linearizability checker for key/value histories (Wing & Gong's search with Lowe's
// memoization of (linearized set, state), as in Porcupine). Operations on different keys
// commute, so the history is split per key (P-compositionality) and each key checked alone.
// The search is bounded: past `maxSteps` it answers 'unknown' rather than running forever.

export type KvInput =
  | { kind: 'put'; key: string; value: string }
  | { kind: 'get'; key: string }
  | { kind: 'cas'; key: string; expected: string | null; value: string };

/** What the operation returned; undefined when it never returned (pending: any outcome allowed). */
export type KvOutput = { kind: 'ok' } | { kind: 'value'; value: string | null } | { kind: 'cas'; swapped: boolean } | undefined;

export interface HistoryOp {
  id: number;
  client: number;
  input: KvInput;
  output: KvOutput;
  /** Logical times from one global counter: a real-time order of events. */
  invokeTime: number;
  /** Infinity for an operation that never returned. */
  returnTime: number;
}

export type CheckResult = { kind: 'ok' } | { kind: 'illegal'; key: string; ops: HistoryOp[] } | { kind: 'unknown'; key: string };

type State = string | null;

function step(state: State, input: KvInput, output: KvOutput): { ok: boolean; next: State } {
  switch (input.kind) {
    case 'put':
      return { ok: output === undefined || output.kind === 'ok', next: input.value };
    case 'get':
      return { ok: output === undefined || (output.kind === 'value' && output.value === state), next: state };
    case 'cas': {
      const swapped = state === input.expected;
      const ok = output === undefined || (output.kind === 'cas' && output.swapped === swapped);
      return { ok, next: swapped ? input.value : state };
    }
  }
}

interface Node {
  isCall: boolean;
  op: HistoryOp;
  /** Index of the op within its per-key history (bit in the linearized set). */
  bit: number;
  match: Node | undefined; // call -> its return
  prev: Node | undefined;
  next: Node | undefined;
}

function lift(call: Node): void {
  const ret = call.match as Node;
  (call.prev as Node).next = call.next;
  if (call.next) call.next.prev = call.prev;
  (ret.prev as Node).next = ret.next;
  if (ret.next) ret.next.prev = ret.prev;
}

function unlift(call: Node): void {
  const ret = call.match as Node;
  (ret.prev as Node).next = ret;
  if (ret.next) ret.next.prev = ret;
  (call.prev as Node).next = call;
  if (call.next) call.next.prev = call;
}

/** Checks one key's operations starting from `initial`. */
export function checkKey(ops: HistoryOp[], initial: State, maxSteps: number): 'ok' | 'illegal' | 'unknown' {
  if (ops.length === 0) return 'ok';
  const events: { time: number; isCall: boolean; node: Node }[] = [];
  const nodes: Node[] = [];
  ops.forEach((op, i) => {
    const call: Node = { isCall: true, op, bit: i, match: undefined, prev: undefined, next: undefined };
    const ret: Node = { isCall: false, op, bit: i, match: undefined, prev: undefined, next: undefined };
    call.match = ret;
    nodes.push(call);
    events.push({ time: op.invokeTime, isCall: true, node: call });
    events.push({ time: op.returnTime, isCall: false, node: ret });
  });
  // Same time cannot happen with a global counter except for two pending returns (Infinity).
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.node.bit - b.node.bit : a.isCall ? -1 : 1));
  const head: Node = { isCall: false, op: ops[0] as HistoryOp, bit: -1, match: undefined, prev: undefined, next: undefined };
  let prev = head;
  for (const e of events) {
    prev.next = e.node;
    e.node.prev = prev;
    prev = e.node;
  }

  let state: State = initial;
  let linearized = 0n;
  const cache = new Set<string>();
  const calls: { node: Node; state: State }[] = [];
  let entry = head.next;
  let steps = 0;
  while (head.next !== undefined) {
    if (++steps > maxSteps) return 'unknown';
    if (entry === undefined) return 'illegal';
    if (entry.isCall) {
      const ret = entry.match as Node;
      const r = step(state, entry.op.input, ret.op.output);
      if (r.ok) {
        const nl = linearized | (1n << BigInt(entry.bit));
        const key = `${nl.toString(36)}|${r.next === null ? '\u0000' : r.next}`;
        if (!cache.has(key)) {
          cache.add(key);
          calls.push({ node: entry, state });
          state = r.next;
          linearized = nl;
          lift(entry);
          entry = head.next;
          continue;
        }
      }
      entry = entry.next;
    } else {
      // A return with its call not linearized: undo the last choice.
      const top = calls.pop();
      if (top === undefined) return 'illegal';
      state = top.state;
      linearized &= ~(1n << BigInt(top.node.bit));
      unlift(top.node);
      entry = top.node.next;
    }
  }
  return 'ok';
}

/** Checks a whole key/value history; every key starts absent (null). */
export function checkHistory(history: HistoryOp[], maxStepsPerKey = 2_000_000): CheckResult {
  const byKey = new Map<string, HistoryOp[]>();
  for (const op of history) {
    // A read that never returned has no effect and constrains nothing.
    if (op.input.kind === 'get' && op.output === undefined) continue;
    let l = byKey.get(op.input.key);
    if (!l) byKey.set(op.input.key, (l = []));
    l.push(op);
  }
  for (const [key, ops] of [...byKey.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const r = checkKey(ops, null, maxStepsPerKey);
    if (r === 'illegal') return { kind: 'illegal', key, ops };
    if (r === 'unknown') return { kind: 'unknown', key };
  }
  return { kind: 'ok' };
}
