// Fast structures checked against slow obviously-correct models under random operations:
// MemoryStorage (the log every node reads) and Inflights (the pipelining window).
import t from 'tap';
import { Prng } from '../../lib/common/index.js';
import { CompactedError, MemoryStorage, type Entry } from '../../lib/raft/index.js';
import { Inflights } from '../../lib/raft/progress.js';

t.test('MemoryStorage behaves like a plain map of index -> entry', async (t) => {
  const prng = new Prng(5);
  let mismatches = 0;
  for (let round = 0; round < 200; round++) {
    const s = new MemoryStorage();
    // Model: snapshot point plus a Map of the entries after it.
    let snapIndex = 0;
    let snapTerm = 0;
    const model = new Map<number, Entry>();
    const last = () => (model.size === 0 ? snapIndex : Math.max(...model.keys()));
    for (let step = 0; step < 60; step++) {
      const k = prng.int(10);
      if (k < 5) {
        // append from somewhere in [snapIndex+1, last+1], possibly overwriting a suffix
        const from = prng.range(snapIndex + 1, last() + 1);
        const n = prng.range(1, 5);
        const term = prng.range(1, 9);
        const ents: Entry[] = [];
        for (let i = 0; i < n; i++) ents.push({ term, index: from + i, type: 'normal', data: new Uint8Array([prng.int(256)]) });
        s.append(ents);
        for (const i of [...model.keys()]) if (i >= from) model.delete(i);
        for (const e of ents) model.set(e.index, e);
      } else if (k < 7 && last() > snapIndex) {
        const at = prng.range(snapIndex + 1, last());
        const term = (model.get(at) as Entry).term;
        s.createSnapshot(at, { voters: [1], learners: [] }, new Uint8Array([at & 0xff]));
        s.compact(at);
        for (const i of [...model.keys()]) if (i <= at) model.delete(i);
        snapIndex = at;
        snapTerm = term;
      } else if (k < 8) {
        // install a snapshot from a leader, ahead of everything
        const at = last() + prng.range(1, 5);
        s.applySnapshot({ metadata: { index: at, term: 9, confState: { voters: [1], learners: [] } }, data: new Uint8Array(0) });
        model.clear();
        snapIndex = at;
        snapTerm = 9;
      }
      // compare everything observable
      if (s.firstIndex() !== snapIndex + 1 || s.lastIndex() !== last()) mismatches++;
      if (s.term(snapIndex) !== snapTerm) mismatches++;
      for (let i = snapIndex + 1; i <= last(); i++) if (s.term(i) !== model.get(i)?.term) mismatches++;
      if (s.term(last() + 1) !== undefined || (snapIndex > 0 && s.term(snapIndex - 1) !== undefined)) mismatches++;
      if (snapIndex > 0) {
        let threw = false;
        try {
          s.entries(snapIndex, last() + 1, Number.MAX_SAFE_INTEGER);
        } catch (e) {
          threw = e instanceof CompactedError;
        }
        if (!threw) mismatches++;
      }
      if (last() > snapIndex) {
        const lo = prng.range(snapIndex + 1, last());
        const hi = prng.range(lo + 1, last() + 1);
        const got = s.entries(lo, hi, Number.MAX_SAFE_INTEGER);
        const want = [];
        for (let i = lo; i < hi; i++) want.push(model.get(i));
        if (JSON.stringify(got) !== JSON.stringify(want)) mismatches++;
        // A size limit returns a non-empty prefix.
        const limited = s.entries(lo, hi, 1);
        if (limited.length !== 1 || limited[0]?.index !== lo) mismatches++;
      }
    }
  }
  t.equal(mismatches, 0, 'no observable difference from the model');
});

t.test('Inflights behaves like a bounded FIFO of (index, bytes)', async (t) => {
  const prng = new Prng(8);
  let mismatches = 0;
  for (let round = 0; round < 200; round++) {
    const maxMsgs = prng.range(1, 8);
    const maxBytes = prng.chance(0.5) ? 0 : prng.range(10, 100);
    const inf = new Inflights(maxMsgs, maxBytes);
    const model: { index: number; bytes: number }[] = [];
    let next = 1;
    for (let step = 0; step < 100; step++) {
      const bytes = model.reduce((a, b) => a + b.bytes, 0);
      const full = model.length >= maxMsgs || (maxBytes > 0 && bytes >= maxBytes);
      if (inf.full() !== full || inf.count !== model.length || inf.sizeBytes !== bytes) mismatches++;
      const k = prng.int(3);
      if (k === 0 && !full) {
        next += prng.range(1, 3);
        const b = prng.range(1, 30);
        inf.add(next, b);
        model.push({ index: next, bytes: b });
      } else if (k === 1) {
        const upTo = next - prng.int(5);
        inf.freeLE(upTo);
        while (model.length > 0 && (model[0] as { index: number }).index <= upTo) model.shift();
      } else if (k === 2 && prng.chance(0.3)) {
        inf.freeFirstOne();
        model.shift();
      }
    }
  }
  t.equal(mismatches, 0, 'no observable difference from the model');
});
