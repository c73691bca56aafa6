// BlockGroupClient.readPooled on three real datanodes: bytes as read() gives them (whole keys,
// ranges, and a read of several parts), buffers reused once released and not before, a replica
// answering bad bytes falls through to the next one, and with every replica down a typed error.
import t from 'tap';
import { openSync, readdirSync, writeSync, closeSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BlockGroupClient, type ExtentKey } from '../../lib/blockgroup/index.js';
import { makeNode, start, kill, killAll, payload, groupId, type Node } from './helpers.js';

let nodes: Node[] = [];
t.before(async () => {
  nodes = await Promise.all([makeNode(), makeNode(), makeNode()]);
  await Promise.all(nodes.map(start));
});
t.teardown(killAll);

function dataFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.dat')) out.push(join(d, e.name));
    }
  };
  walk(dir);
  return out;
}

t.test('pooled reads: same bytes, buffers reused only after release', async (t) => {
  const client = new BlockGroupClient({ deadlineMs: 10_000 });
  t.teardown(() => client.close());
  client.addGroup(await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) }));
  const sizes = [1, 70_000, 1024 * 1024, 3 * 1024 * 1024 + 5];
  const keys: { key: ExtentKey; data: Buffer }[] = [];
  for (const [i, n] of sizes.entries()) {
    const data = payload(1, i, n);
    keys.push({ key: await client.append(data), data });
  }
  for (const { key, data } of keys) {
    const r = await client.readPooled(key);
    t.ok(r.data.equals(data), `${key.length} bytes: whole key`);
    r.release();
    r.release(); // twice is harmless
    const part = await client.readPooled(key, Math.floor(key.length / 3), Math.max(1, Math.floor(key.length / 2)));
    t.ok(part.data.equals(data.subarray(Math.floor(key.length / 3), Math.floor(key.length / 3) + Math.max(1, Math.floor(key.length / 2)))), `${key.length} bytes: a range`);
    part.release();
  }
  const big = keys[2] as { key: ExtentKey; data: Buffer };
  const a = await client.readPooled(big.key);
  const b = await client.readPooled(big.key);
  t.not(a.data.buffer, b.data.buffer, 'two reads held at once have buffers of their own');
  const seen = a.data.buffer;
  a.release();
  b.release();
  const c = await client.readPooled(big.key);
  const d = await client.readPooled(big.key);
  t.ok(c.data.buffer === seen || d.data.buffer === seen, 'a released buffer is reused');
  t.ok(c.data.equals(big.data) && d.data.equals(big.data), 'and the reused buffers hold the right bytes');
  c.release();
  d.release();
});

t.test('pooled reads fall through a replica with bad bytes and a dead one', async (t) => {
  const client = new BlockGroupClient({ deadlineMs: 5_000 });
  t.teardown(() => client.close());
  const gid = groupId();
  client.addGroup(await client.createGroup({ groupId: gid, replicas: nodes.map((n) => n.address) }));
  const data = payload(2, 0, 1024 * 1024);
  const key = await client.append(data);
  // Flip a byte in every replica but the last one the read order tries.
  const order = await client.readOrder(key);
  const last = order[order.length - 1] as string;
  let flipped = 0;
  for (const n of nodes) {
    if (n.address === last) continue;
    for (const f of dataFiles(n.dir)) {
      if (!f.includes(`${gid}`) || statSync(f).size < key.offset + 100) continue;
      const fd = openSync(f, 'r+');
      writeSync(fd, Buffer.from([(data[50] as number) ^ 0xff]), 0, 1, key.offset + 50);
      closeSync(fd);
      flipped++;
    }
  }
  t.equal(flipped, 2, 'two replicas hold a flipped byte');
  const r = await client.readPooled(key);
  t.ok(r.data.equals(data), 'the good replica answered, verified');
  r.release();
  await Promise.all(nodes.map((n) => kill(n)));
  await t.rejects(client.readPooled(key), { code: 'BLOCKGROUP_UNAVAILABLE' }, 'no replica up: a typed error');
});
