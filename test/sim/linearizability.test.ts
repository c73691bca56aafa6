// Tests of the linearizability checker on hand-made histories whose verdict is known.
import t from 'tap';
import { Prng } from '../../lib/common/index.js';
import { checkHistory, checkKey, type HistoryOp, type KvInput, type KvOutput } from './linearizability.js';

let nextId = 0;
function op(client: number, input: KvInput, output: KvOutput, invokeTime: number, returnTime: number): HistoryOp {
  return { id: nextId++, client, input, output, invokeTime, returnTime };
}
const put = (key: string, value: string): KvInput => ({ kind: 'put', key, value });
const get = (key: string): KvInput => ({ kind: 'get', key });
const cas = (key: string, expected: string | null, value: string): KvInput => ({ kind: 'cas', key, expected, value });
const OK: KvOutput = { kind: 'ok' };
const val = (v: string | null): KvOutput => ({ kind: 'value', value: v });
const swapped = (b: boolean): KvOutput => ({ kind: 'cas', swapped: b });

t.test('sequential histories', async (t) => {
  t.equal(checkHistory([op(1, put('x', 'a'), OK, 1, 2), op(1, get('x'), val('a'), 3, 4)]).kind, 'ok');
  t.equal(checkHistory([op(1, put('x', 'a'), OK, 1, 2), op(1, get('x'), val('b'), 3, 4)]).kind, 'illegal');
  t.equal(checkHistory([op(1, get('x'), val(null), 1, 2)]).kind, 'ok', 'absent key reads null');
  t.equal(checkHistory([op(1, get('x'), val('a'), 1, 2)]).kind, 'illegal', 'read of a value never written');
});

t.test('stale read after a completed write is not linearizable', async (t) => {
  const h = [op(1, put('x', 'a'), OK, 1, 2), op(1, put('x', 'b'), OK, 3, 4), op(2, get('x'), val('a'), 5, 6)];
  t.equal(checkHistory(h).kind, 'illegal');
});

t.test('concurrent write may be seen or not', async (t) => {
  const seen = [op(1, put('x', 'a'), OK, 1, 10), op(2, get('x'), val('a'), 2, 3)];
  const notSeen = [op(1, put('x', 'a'), OK, 1, 10), op(2, get('x'), val(null), 2, 3)];
  t.equal(checkHistory(seen).kind, 'ok');
  t.equal(checkHistory(notSeen).kind, 'ok');
  // Once one reader saw the new value, a later (non-overlapping) reader cannot see the old one.
  const flip = [op(1, put('x', 'a'), OK, 1, 10), op(2, get('x'), val('a'), 2, 3), op(3, get('x'), val(null), 4, 5)];
  t.equal(checkHistory(flip).kind, 'illegal');
});

t.test('cas semantics', async (t) => {
  t.equal(checkHistory([op(1, cas('x', null, 'a'), swapped(true), 1, 2), op(1, get('x'), val('a'), 3, 4)]).kind, 'ok');
  t.equal(checkHistory([op(1, cas('x', 'z', 'a'), swapped(true), 1, 2)]).kind, 'illegal', 'swap from a wrong value');
  t.equal(checkHistory([op(1, cas('x', null, 'a'), swapped(false), 1, 2)]).kind, 'illegal', 'failed swap on a matching value');
  // Two concurrent CAS from null: exactly one may win.
  const both = [op(1, cas('x', null, 'a'), swapped(true), 1, 5), op(2, cas('x', null, 'b'), swapped(true), 2, 6)];
  t.equal(checkHistory(both).kind, 'illegal');
  const one = [op(1, cas('x', null, 'a'), swapped(true), 1, 5), op(2, cas('x', null, 'b'), swapped(false), 2, 6), op(3, get('x'), val('a'), 7, 8)];
  t.equal(checkHistory(one).kind, 'ok');
});

t.test('pending operations may or may not take effect', async (t) => {
  const took = [op(1, put('x', 'a'), undefined, 1, Infinity), op(2, get('x'), val('a'), 5, 6)];
  const didNot = [op(1, put('x', 'a'), undefined, 1, Infinity), op(2, get('x'), val(null), 5, 6)];
  t.equal(checkHistory(took).kind, 'ok');
  t.equal(checkHistory(didNot).kind, 'ok');
  // ...but not before they were invoked.
  const early = [op(2, get('x'), val('a'), 1, 2), op(1, put('x', 'a'), undefined, 3, Infinity)];
  t.equal(checkHistory(early).kind, 'illegal');
  // A pending op cannot take effect twice (a then b then a again needs two puts of a).
  const twice = [
    op(1, put('x', 'a'), undefined, 1, Infinity), op(2, put('x', 'b'), OK, 2, 3),
    op(3, get('x'), val('a'), 4, 5), op(3, get('x'), val('b'), 6, 7),
  ];
  t.equal(checkHistory(twice).kind, 'illegal');
});

t.test('keys are independent', async (t) => {
  const h = [op(1, put('x', 'a'), OK, 1, 2), op(2, put('y', 'b'), OK, 3, 4), op(3, get('x'), val('a'), 5, 6), op(3, get('y'), val('a'), 7, 8)];
  const r = checkHistory(h);
  t.equal(r.kind, 'illegal');
  if (r.kind === 'illegal') t.equal(r.key, 'y');
});

t.test('search bound gives unknown, not a wrong verdict', async (t) => {
  const ops: HistoryOp[] = [];
  for (let i = 0; i < 12; i++) ops.push(op(i, put('x', `v${i}`), OK, i, 100 + i));
  ops.push(op(99, get('x'), val('nope'), 200, 201));
  t.equal(checkKey(ops, null, 50), 'unknown');
  t.equal(checkKey(ops, null, 10_000_000), 'illegal');
});

t.test('random sequential register histories are linearizable, and a corrupted read is caught', async (t) => {
  // Build histories from a real sequential execution with overlapping intervals around each
  // op's linearization point: always linearizable. Then change one read's value to one that
  // was never written: never linearizable.
  const prng = new Prng(7);
  for (let round = 0; round < 50; round++) {
    let state: string | null = null;
    const h: HistoryOp[] = [];
    let time = 0;
    for (let i = 0; i < 40; i++) {
      const point = (time += 10);
      const inv = point - prng.int(15);
      const ret = point + prng.int(15);
      const c = prng.int(3);
      if (c === 0) {
        const v = `v${round}-${i}`;
        state = v;
        h.push(op(i, put('k', v), OK, inv * 2, ret * 2 + 1));
      } else if (c === 1) {
        h.push(op(i, get('k'), val(state), inv * 2, ret * 2 + 1));
      } else {
        const exp = prng.chance(0.5) ? state : 'other';
        const sw = state === exp;
        const v = `c${round}-${i}`;
        if (sw) state = v;
        h.push(op(i, cas('k', exp, v), swapped(sw), inv * 2, ret * 2 + 1));
      }
    }
    t.equal(checkHistory(h).kind, 'ok', `round ${round} linearizable`);
    const reads = h.filter((o) => o.input.kind === 'get');
    if (reads.length > 0) {
      const r = reads[prng.int(reads.length)] as HistoryOp;
      r.output = val('never-written');
      t.equal(checkHistory(h).kind, 'illegal', `round ${round} corrupted read caught`);
    }
  }
});

/** Slow, obviously-correct checker: try every order consistent with real time. */
function bruteForce(ops: HistoryOp[]): boolean {
  const n = ops.length;
  const used = new Array<boolean>(n).fill(false);
  const rec = (state: string | null, done: number): boolean => {
    if (done === n) return true;
    for (let i = 0; i < n; i++) {
      if (used[i]) continue;
      const o = ops[i] as HistoryOp;
      // o may go next only if no unplaced op returned before o was invoked.
      let ok = true;
      for (let j = 0; j < n && ok; j++) if (j !== i && !used[j] && (ops[j] as HistoryOp).returnTime < o.invokeTime) ok = false;
      if (!ok) continue;
      let next = state;
      const out = o.output;
      if (o.input.kind === 'put') {
        next = o.input.value;
      } else if (o.input.kind === 'get') {
        if (out !== undefined && !(out.kind === 'value' && out.value === state)) continue;
      } else {
        const sw = state === o.input.expected;
        if (out !== undefined && !(out.kind === 'cas' && out.swapped === sw)) continue;
        if (sw) next = o.input.value;
      }
      used[i] = true;
      if (rec(next, done + 1)) return true;
      used[i] = false;
    }
    return false;
  };
  return rec(null, 0);
}

t.test('checker agrees with a brute-force search on random small histories', async (t) => {
  const prng = new Prng(99);
  let legal = 0;
  let illegal = 0;
  for (let round = 0; round < 3000; round++) {
    const n = prng.range(1, 7);
    const values = ['x', 'y', 'z'];
    const ops: HistoryOp[] = [];
    for (let i = 0; i < n; i++) {
      const inv = prng.int(20) * 2;
      const pending = prng.chance(0.1);
      const ret = pending ? Infinity : inv + 1 + prng.int(10) * 2;
      const k = prng.int(3);
      let input: KvInput;
      let output: KvOutput;
      if (k === 0) {
        input = put('k', prng.pick(values));
        output = pending ? undefined : OK;
      } else if (k === 1) {
        input = get('k');
        output = val(prng.chance(0.25) ? null : prng.pick(values));
        if (pending) continue; // a read that never returned is dropped by checkHistory
      } else {
        input = cas('k', prng.chance(0.3) ? null : prng.pick(values), prng.pick(values));
        output = pending ? undefined : swapped(prng.chance(0.5));
      }
      // Distinct event times: odd offsets per op keep every invoke/return unique.
      ops.push(op(i, input, output, inv * 10 + i, ret === Infinity ? Infinity : ret * 10 + i));
    }
    const fast = checkHistory(ops).kind;
    const slow = bruteForce(ops);
    if (fast !== (slow ? 'ok' : 'illegal')) {
      t.fail(`round ${round}: checker says ${fast}, brute force says ${slow}: ${JSON.stringify(ops)}`);
      return;
    }
    if (slow) legal++;
    else illegal++;
  }
  t.ok(legal > 300 && illegal > 300, `both verdicts exercised (${legal} legal, ${illegal} illegal)`);
});
