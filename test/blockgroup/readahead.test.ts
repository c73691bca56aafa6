// Read-ahead on a datanode for a sequential reader: four 1 MiB reads in flight through a group
// are answered byte for byte, partly from read-ahead buffers (the datanode's metric counts
// them); random reads and partial reads get the right bytes too; bytes damaged on disk after
// they were read ahead are still caught (the client's end-to-end check), read from a peer and
// repaired.
import t from 'tap';
import { openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { BlockGroupClient, type ExtentKey } from '../../lib/blockgroup/index.js';
import { makeNode, start, killAll, payload, groupId, eventually, type Node } from './helpers.js';

const MiB = 1024 * 1024;
let nodes: Node[] = [];
t.before(async () => {
  nodes = await Promise.all([makeNode(), makeNode(), makeNode()]);
  await Promise.all(nodes.map(start));
});
t.teardown(killAll);

async function readAheadBytes(n: Node): Promise<number> {
  const text = await fetch(`http://127.0.0.1:${n.adminPort}/metrics`).then((r) => r.text());
  const m = /blockgroup_read_ahead_bytes_total(?:\{[^}]*\})? (\d+)/.exec(text);
  return m ? Number(m[1]) : 0;
}

async function readAll(client: BlockGroupClient, keys: ExtentKey[], inFlight: number): Promise<Buffer[]> {
  const out: Buffer[] = new Array(keys.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < keys.length) {
        const i = next++;
        out[i] = await client.read(keys[i] as ExtentKey);
      }
    }),
  );
  return out;
}

t.test('sequential reads are answered right, partly from read-ahead; damage after read-ahead is still caught', async (t) => {
  const client = new BlockGroupClient();
  t.teardown(() => client.close());
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) });
  client.addGroup(ref);
  const datas: Buffer[] = [];
  const keys: ExtentKey[] = [];
  for (let i = 0; i < 24; i++) {
    const d = payload(7, i, MiB);
    datas.push(d);
    keys.push(await client.append(d));
  }
  const first = (await client.readOrder(keys[0] as ExtentKey))[0];
  const server = nodes.find((n) => n.address === first) as Node;
  const before = await readAheadBytes(server);
  const got = await readAll(client, keys, 4);
  t.ok(got.every((b, i) => b.equals(datas[i] as Buffer)), 'every extent byte for byte');
  t.ok((await readAheadBytes(server)) > before, 'some reads were answered from read-ahead');

  // Random and partial reads, through the same extents.
  for (const i of [17, 3, 20, 9]) {
    const k = keys[i] as ExtentKey;
    t.ok((await client.read(k)).equals(datas[i] as Buffer), `random read ${i}`);
    t.ok((await client.readRange(k, 1000, 5000)).equals((datas[i] as Buffer).subarray(1000, 6000)), `partial read ${i}`);
  }

  // Start a sequential pass, damage an extent ahead of it on the serving replica, finish the pass.
  const target = keys[20] as ExtentKey; // past the read-ahead when the damage happens
  const file = join(server.dir, 'groups', String(ref.groupId), `${target.extentId}.dat`);
  const pos = target.offset + 4321;
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, pos);
  const original = b[0] as number;
  const again: Buffer[] = [];
  for (let i = 0; i < 10; i++) again.push(await client.read(keys[i] as ExtentKey));
  b[0] = original ^ 0xff;
  writeSync(fd, b, 0, 1, pos);
  closeSync(fd);
  for (let i = 10; i < keys.length; i++) again.push(await client.read(keys[i] as ExtentKey));
  t.ok(again.every((x, i) => x.equals(datas[i] as Buffer)), 'every extent byte for byte, the damaged one from a peer');
  await eventually('the damaged block is repaired', async () => {
    const f = openSync(file, 'r');
    try {
      const c = Buffer.alloc(1);
      readSync(f, c, 0, 1, pos);
      return c[0] === original;
    } finally {
      closeSync(f);
    }
  });
  t.ok((await client.readFrom(server.address, target)).equals(datas[20] as Buffer), 'the replica serves it intact again');
});
