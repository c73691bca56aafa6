// Compaction under concurrent reads: two thirds of the extents are freed, every replica
// compacts while readers loop over the live extents; readers see no error and no wrong byte,
// the data files shrink on disk, and freed ranges are refused.
import t from 'tap';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { BlockGroupClient, BlockGroupBadRequestError, type ExtentKey } from '../../lib/blockgroup/index.js';
import { makeNode, start, killAll, payload, groupId, type Node } from './helpers.js';

t.teardown(killAll);

function allocated(dir: string, groupId: number, extents: number[]): number {
  let n = 0;
  for (const e of extents) n += statSync(join(dir, 'groups', String(groupId), `${e}.dat`)).blocks * 512;
  return n;
}

t.test('compaction reclaims freed bytes without disturbing concurrent readers', async (t) => {
  const nodes: Node[] = await Promise.all([makeNode(['--compact-interval', '0']), makeNode(['--compact-interval', '0']), makeNode(['--compact-interval', '0'])]);
  await Promise.all(nodes.map(start));
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) }, { blockSizeBytes: 4096, extentMaxBytes: 512 * 1024 });
  client.addGroup(ref);
  const items: { key: ExtentKey; data: Buffer }[] = [];
  for (let i = 0; i < 150; i++) {
    const data = payload(0, i, 16 * 1024 + (i % 5) * 1000);
    items.push({ key: await client.append(data), data });
  }
  const freed = items.filter((_, i) => i % 3 !== 0);
  const live = items.filter((_, i) => i % 3 === 0);
  for (const f of freed) await client.free(f.key);
  const extents = [...new Set(items.map((i) => i.key.extentId))].sort((a, b) => a - b);
  t.ok(extents.length >= 3, `several extents (${extents.length})`);
  const before = nodes.map((n) => allocated(n.dir, ref.groupId, extents));

  let stop = false;
  let reads = 0;
  let readErrors = 0;
  const readers = Array.from({ length: 4 }, async (_, r) => {
    for (let i = r; !stop; i = (i + 1) % live.length) {
      const it = live[i] as { key: ExtentKey; data: Buffer };
      for (const n of nodes) {
        const got = await client.readFrom(n.address, it.key).catch(() => undefined);
        reads++;
        if (!got?.equals(it.data)) readErrors++;
      }
    }
  });
  let reclaimed = 0;
  let compacted = 0;
  for (const n of nodes) {
    const r = await client.compact(n.address, ref.groupId);
    reclaimed += r.reclaimedBytes;
    compacted += r.extentsCompacted;
  }
  // Keep reading a little past the swap, through the new files.
  const readsAtSwap = reads;
  while (reads < readsAtSwap + 300) await new Promise((r) => setTimeout(r, 10));
  stop = true;
  await Promise.all(readers);
  t.ok(compacted >= 3, `extents compacted on every replica (${compacted})`);
  t.ok(reclaimed > 0, `bytes reclaimed (${reclaimed})`);
  t.ok(reads > 300, `readers ran through the compaction (${reads} reads)`);
  t.equal(readErrors, 0, 'no reader saw an error or a wrong byte');
  const after = nodes.map((n) => allocated(n.dir, ref.groupId, extents));
  for (let i = 0; i < nodes.length; i++) t.ok((after[i] as number) < (before[i] as number) * 0.8, `node ${i} data files shrank on disk (${before[i]} -> ${after[i]})`);
  for (const it of live) t.ok((await client.read(it.key)).equals(it.data));
  await t.rejects(client.readFrom((nodes[0] as Node).address, (freed[0] as { key: ExtentKey }).key), BlockGroupBadRequestError, 'a freed range is refused');
  const st = await client.status((nodes[0] as Node).address, ref.groupId);
  t.ok((st.deadBytes ?? 0) > 0 && (st.allocatedBytes ?? 0) < (st.lengthBytes ?? 0), 'status reports freed and allocated bytes');
  await client.close();
});
