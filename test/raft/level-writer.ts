// Child process for the kill -9 test: appends raft entries to a LevelRaftDb as fast as it can
// (synced batches, two groups per batch) and prints the last index acknowledged durable, until
// it is killed. Not a test file itself.
import { LevelRaftDb } from '../../lib/raft/index.js';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: level-writer <dir>');
const db = await LevelRaftDb.open(dir);
const a = await db.openGroup(1, [1]);
const b = await db.openGroup(2, [1]);
let index = a.lastIndex();
for (;;) {
  const ents = [];
  for (let i = 0; i < 8; i++) {
    index++;
    ents.push({ term: 1, index, type: 'normal' as const, data: new Uint8Array(200).fill(index & 0xff) });
  }
  await db.persist([
    { storage: a, entries: ents, hardState: { term: 1, vote: 0, commit: index } },
    { storage: b, entries: ents.map((e) => ({ ...e })), hardState: { term: 1, vote: 0, commit: index } },
  ]);
  process.stdout.write(`${index}\n`);
}
