// Chunked, resumable snapshot streaming: split, reassemble, resume after a broken stream.
import t from 'tap';
import { InvalidMessageError, makeMessage, SnapshotAssembler, splitSnapshot, type Message } from '../../lib/raft/index.js';

function snapMsg(size: number, index = 50): Message {
  const m = makeMessage('snap', 3, 1, 2, 7);
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31) & 0xff;
  m.snapshot = { metadata: { index, term: 6, confState: { voters: [1, 2, 3], learners: [] } }, data };
  return m;
}

t.test('split and reassemble', async (t) => {
  const m = snapMsg(1000);
  const chunks = splitSnapshot(m, 300);
  t.equal(chunks.length, 4);
  t.same(chunks.map((c) => c.last), [false, false, false, true]);
  const a = new SnapshotAssembler(1 << 20);
  let done: Message | undefined;
  for (const c of chunks) {
    const r = a.add(c);
    if (r.kind === 'complete') done = r.message;
  }
  t.ok(done);
  t.same(done?.snapshot?.data, m.snapshot?.data, 'bytes identical');
  t.same(done?.snapshot?.metadata, m.snapshot?.metadata);
  t.equal(done?.term, 7);
  t.equal(done?.groupId, 3);
});

t.test('resume after a broken stream', async (t) => {
  const m = snapMsg(1000);
  const a = new SnapshotAssembler(1 << 20);
  const first = splitSnapshot(m, 256);
  a.add(first[0]!);
  a.add(first[1]!);
  // The stream broke; the sender asks where to resume.
  const at = a.receivedBytes(first[0]!);
  t.equal(at, 512);
  const rest = splitSnapshot(m, 100, at);
  let done: Message | undefined;
  for (const c of rest) {
    const r = a.add(c);
    if (r.kind === 'complete') done = r.message;
  }
  t.same(done?.snapshot?.data, m.snapshot?.data);
});

t.test('out-of-order chunks are refused with the resume offset; a newer snapshot replaces an old transfer', async (t) => {
  const a = new SnapshotAssembler(1 << 20);
  const c = splitSnapshot(snapMsg(1000), 200);
  t.same(a.add(c[1]!), { kind: 'outOfOrder', receivedBytes: 0 });
  a.add(c[0]!);
  t.same(a.add(c[2]!), { kind: 'outOfOrder', receivedBytes: 200 });
  const newer = splitSnapshot(snapMsg(10, 60), 200);
  const r = a.add(newer[0]!);
  t.equal(r.kind, 'complete', 'a new transfer for the group starts over');
  t.equal(a.receivedBytes(c[0]!), 0, 'the old partial transfer is gone');
});

t.test('limits', async (t) => {
  const a = new SnapshotAssembler(500);
  t.throws(() => a.add(splitSnapshot(snapMsg(1000), 100)[0]!), InvalidMessageError);
  const empty = splitSnapshot(snapMsg(0), 100);
  t.equal(empty.length, 1, 'an empty snapshot is one (last) chunk');
  t.equal(new SnapshotAssembler(10).add(empty[0]!).kind, 'complete');
});
