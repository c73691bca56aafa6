// Damage on disk under a running datanode: flipped bytes in a data block and in a checksum
// entry are detected on read (typed error, the client reads on from the next replica) and the
// block is repaired from a peer, after which that replica serves it again and its file holds the
// original bytes. Who checks: a whole-extent read is checked by the client against the key's crc
// (the replica skips its block checks; the client's report gets the block repaired), a partial
// read by the replica's block checksums (which also find a bad checksum entry).
import t from 'tap';
import { openSync, writeSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { BlockGroupClient, BlockGroupChecksumError, type ExtentKey } from '../../lib/blockgroup/index.js';
import { makeNode, start, kill, killAll, payload, groupId, eventually, type Node } from './helpers.js';

let nodes: Node[] = [];
t.before(async () => {
  nodes = await Promise.all([makeNode(), makeNode(), makeNode()]);
  await Promise.all(nodes.map(start));
});
t.teardown(killAll);

function flip(path: string, position: number): number {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, position);
    const old = b[0] as number;
    b[0] = old ^ 0x5a;
    writeSync(fd, b, 0, 1, position);
    return old;
  } finally {
    closeSync(fd);
  }
}

function byteAt(path: string, position: number): number {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, position);
    return b[0] as number;
  } finally {
    closeSync(fd);
  }
}

t.test('flipped data bytes are detected, read from a peer, and repaired', async (t) => {
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) }, { blockSizeBytes: 4096 });
  client.addGroup(ref);
  const items: { key: ExtentKey; data: Buffer }[] = [];
  for (let i = 0; i < 20; i++) {
    const data = payload(0, i, 10_000);
    items.push({ key: await client.append(data), data });
  }
  const victim = nodes[0] as Node;
  const target = items[7] as { key: ExtentKey; data: Buffer };
  const file = join(victim.dir, 'groups', String(ref.groupId), `${target.key.extentId}.dat`);
  const pos = target.key.offset + 5000;
  const original = flip(file, pos);
  t.not(byteAt(file, pos), original, 'byte flipped on disk');
  await t.rejects(client.readFrom(victim.address, target.key), BlockGroupChecksumError, 'the damaged replica refuses with a typed checksum error');
  t.ok((await client.read(target.key)).equals(target.data), 'the client reads on from a healthy replica');
  await eventually('the block is repaired from a peer', async () => (await client.readFrom(victim.address, target.key)).equals(target.data));
  t.equal(byteAt(file, pos), original, 'the file holds the original byte again');
  // The other extents were never disturbed.
  for (const it of items) t.ok((await client.readFrom(victim.address, it.key)).equals(it.data));
  await client.close();
});

t.test('whole reads are checked by the client, partial reads by the replica; both get the block repaired', async (t) => {
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) }, { blockSizeBytes: 4096 });
  client.addGroup(ref);
  const data = payload(4, 4, 40_000);
  const key = await client.append(data);
  const victim = nodes[2] as Node;
  const file = join(victim.dir, 'groups', String(ref.groupId), `${key.extentId}.dat`);
  const block = Math.floor((key.offset + 9000) / 4096);
  const inBlock = block * 4096 - key.offset; // extent-relative start of the damaged block
  const original = flip(file, key.offset + 9000);
  // Partial read over the damaged block: refused by the replica itself (its block check).
  const partial = await client.readFrom(victim.address, key, Math.max(0, inBlock), 2000).then(() => undefined, (e: unknown) => e);
  t.type(partial, BlockGroupChecksumError);
  t.match((partial as Error).message, /block \d+ does not match its checksum/, 'the replica found it');
  await eventually('repaired after the replica found it', async () => byteAt(file, key.offset + 9000) === original);
  // Damage it again: a whole read is caught by the client's end-to-end check and reported.
  flip(file, key.offset + 9000);
  const whole = await client.readFrom(victim.address, key).then(() => undefined, (e: unknown) => e);
  t.type(whole, BlockGroupChecksumError);
  t.match((whole as Error).message, /does not match its key checksum/, 'the client found it (the replica skipped its block checks)');
  await eventually('repaired after the client reported it', async () => byteAt(file, key.offset + 9000) === original);
  t.ok((await client.readFrom(victim.address, key)).equals(data), 'the replica serves the extent intact');
  await client.close();
});

t.test('a flipped checksum entry (found after a restart) is detected and repaired too', async (t) => {
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) }, { blockSizeBytes: 4096 });
  client.addGroup(ref);
  const data = payload(1, 1, 50_000);
  const key = await client.append(data);
  const victim = nodes[1] as Node;
  const crcFile = join(victim.dir, 'groups', String(ref.groupId), `${key.extentId}.crc`);
  const block = Math.floor((key.offset + 9000) / 4096);
  // A running node checks against its checksums in memory; the file is read at start.
  await kill(victim, 'SIGTERM');
  flip(crcFile, block * 8 + 1);
  await start(victim);
  // The bytes are intact: a whole read, checked end to end by the client, is served right (the
  // replica skips its block checks for it). A read the replica checks finds the bad entry.
  t.ok((await client.readFrom(victim.address, key)).equals(data), 'whole read: right bytes');
  const inBlock = block * 4096 - key.offset;
  await t.rejects(client.readFrom(victim.address, key, inBlock, 100), BlockGroupChecksumError, 'partial read over the block: the replica refuses');
  await eventually('checksum entry repaired', async () => (await client.readFrom(victim.address, key, inBlock, 100)).equals(data.subarray(inBlock, inBlock + 100)));
  t.ok((await client.read(key)).equals(data));
  await client.close();
});

async function repairsOk(n: Node): Promise<number> {
  const st = await fetch(`http://127.0.0.1:${n.adminPort}/metrics`).then((r) => r.text());
  const m = /blockgroup_repairs_total\{result="ok"[^}]*\} (\d+)/.exec(st);
  return m ? Number(m[1]) : 0;
}

t.test('a client read of a damaged replica reports it, even when no one reads it directly again', async (t) => {
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) }, { blockSizeBytes: 4096 });
  client.addGroup(ref);
  const data = payload(2, 2, 30_000);
  const key = await client.append(data);
  // The replica the client reads first: damaged, so the read must fall back and report it.
  const firstAddr = (await client.readOrder(key))[0];
  const victim = nodes.find((n) => n.address === firstAddr) as Node;
  const repairedBefore = await repairsOk(victim);
  const file = join(victim.dir, 'groups', String(ref.groupId), `${key.extentId}.dat`);
  flip(file, key.offset + 100);
  t.ok((await client.read(key)).equals(data), 'read served by the next replica');
  await eventually('damaged replica repaired after the report', async () => (await repairsOk(victim)) > repairedBefore);
  t.ok((await client.readFrom(victim.address, key)).equals(data));
  await client.close();
});

t.test('the scrubber finds and repairs a damaged block that no one reads', async (t) => {
  const scrubbed = await Promise.all([makeNode(['--scrub-interval', '300ms']), makeNode(), makeNode()]);
  await Promise.all(scrubbed.map(start));
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: scrubbed.map((n) => n.address) }, { blockSizeBytes: 4096 });
  client.addGroup(ref);
  const data = payload(3, 3, 20_000);
  const key = await client.append(data);
  const victim = scrubbed[0] as Node;
  const file = join(victim.dir, 'groups', String(ref.groupId), `${key.extentId}.dat`);
  const original = flip(file, key.offset + 12_345);
  await eventually('scrub repaired the block', async () => byteAt(file, key.offset + 12_345) === original);
  t.ok((await client.readFrom(victim.address, key)).equals(data), 'the replica serves the extent intact');
  await client.close();
});
