// Cut-through forwarding along the chain (a backup writes and passes on each chunk of a
// streamed forward as it arrives): chunk boundaries at and around every block edge land the
// same bytes and block checksums on every replica, including one computing its checksums on the
// TypeScript path; a forward cut off mid-stream seals the group without losing an acknowledged
// byte; and kill -9 of the middle replica while large appends are being relayed loses nothing
// that was acknowledged, with the node catching up when it returns.
import t from 'tap';
import { BlockGroupClient, blockGroupService as svc, crc32c, type ExtentKey, type GroupRef } from '../../lib/blockgroup/index.js';
import { appendHeaderCodec, forwardHeaderCodec } from '../../lib/blockgroup/service.js';
import { RpcClient } from '../../lib/rpc/index.js';
import { makeNode, start, kill, killAll, payload, groupId, eventually, sleep, type Node } from './helpers.js';

t.teardown(killAll);

t.test('chunk boundaries at every block edge, one replica on the TypeScript crc32c', async (t) => {
  const nodes = [await makeNode(), await makeNode(), await makeNode(['--crc32c', 'ts'])];
  await Promise.all(nodes.map(start));
  const chain = nodes.map((n) => n.address);
  const bg = new BlockGroupClient({ deadlineMs: 10_000 });
  t.teardown(() => bg.close());
  const B = 4096;
  const g = await bg.createGroup({ groupId: groupId(), replicas: chain }, { blockSizeBytes: B });
  bg.addGroup(g);
  const rpc = new RpcClient({ host: '127.0.0.1', port: (nodes[0] as Node).port });
  t.teardown(() => rpc.close());
  const acked: { key: ExtentKey; data: Buffer }[] = [];
  // An unaligned start, so later chunk edges fall at every position relative to the blocks.
  const lead = payload(0, 0, 1000);
  acked.push({ key: await bg.append(lead), data: lead });
  // Streamed appends (over the 256 KiB chunk size, so the forwards stream too) whose chunks end
  // exactly on, one before and one after block edges, plus 1-byte and multi-block chunks.
  const patterns = [
    [B - 1000, 1, B - 1, B, B + 1, 3 * B, 1, B - 2, 2 * B + 7],
    [1, 1, 1, B - 3, B, B, 64 * 1024, 100_001, 5],
    [B * 16, B * 16 - 1, 1, B * 16 + 1, B * 16 - 1],
  ];
  for (let i = 0; i < 6; i++) {
    const pat = patterns[i % patterns.length] as number[];
    const sizes: number[] = [];
    let total = 0;
    for (let k = 0; total < 300 * 1024; k++) {
      const s = pat[k % pat.length] as number;
      sizes.push(s);
      total += s;
    }
    const data = payload(1, i, total);
    const call = rpc.clientStream(svc.appendStream);
    await call.write(appendHeaderCodec.encode({ groupId: g.groupId, totalLength: total }));
    let at = 0;
    for (const s of sizes) {
      await call.write(data.subarray(at, at + s));
      at += s;
    }
    const k = await call.end();
    acked.push({ key: { groupId: k.groupId ?? 0, extentId: k.extentId ?? 0, offset: k.offset ?? 0, length: k.length ?? 0, crc: k.crc ?? 0 }, data });
  }
  let bad = 0;
  for (const n of nodes) {
    for (const a of acked) {
      const got = await bg.readFrom(n.address, a.key).catch((e: Error) => e);
      if (!(got instanceof Buffer) || !got.equals(a.data)) bad++;
      // Ranges across block edges are verified block by block on the replica.
      const mid = await bg.readFrom(n.address, a.key, B - 3, 2 * B + 6).catch((e: Error) => e);
      if (a.key.length > 3 * B && (!(mid instanceof Buffer) || !mid.equals(a.data.subarray(B - 3, 3 * B + 3)))) bad++;
    }
  }
  t.equal(bad, 0, 'every replica holds every append byte for byte, its block checksums verifying');
  const st = await Promise.all(chain.map((a) => bg.status(a, g.groupId)));
  t.same(st.map((s) => s.lengthBytes), st.map(() => acked.reduce((n, a) => n + a.data.length, 0)), 'equal lengths on every replica');
  // Restarted (checksum file reloaded, tail blocks recomputed), the TypeScript replica still
  // verifies what the addon replicas checksummed and vice versa.
  await kill(nodes[2] as Node, 'SIGTERM');
  await start(nodes[2] as Node);
  let badAfter = 0;
  for (const a of acked) {
    const got = await bg.readFrom((nodes[2] as Node).address, a.key).catch(() => undefined);
    if (!got?.equals(a.data)) badAfter++;
  }
  t.equal(badAfter, 0, 'after a restart the replica still verifies and serves every append');
  await Promise.all(nodes.map((n) => kill(n)));
});

t.test('tiny chunks: an append of 1-byte chunks, and a forward of them straight to a backup', async (t) => {
  const nodes = [await makeNode(), await makeNode(), await makeNode()];
  await Promise.all(nodes.map(start));
  const chain = nodes.map((n) => n.address);
  const bg = new BlockGroupClient({ deadlineMs: 20_000 });
  t.teardown(() => bg.close());
  const g = await bg.createGroup({ groupId: groupId(), replicas: chain }, { blockSizeBytes: 4096 });
  bg.addGroup(g);
  const rpc = new RpcClient({ host: '127.0.0.1', port: (nodes[0] as Node).port });
  t.teardown(() => rpc.close());
  // 20,000 one-byte chunks, then a large one (over 256 KiB in all: the forward streams).
  const data = payload(3, 0, 20_000 + 300_000);
  const call = rpc.clientStream(svc.appendStream);
  await call.write(appendHeaderCodec.encode({ groupId: g.groupId, totalLength: data.length }));
  for (let i = 0; i < 20_000; i++) await call.write(data.subarray(i, i + 1));
  await call.write(data.subarray(20_000));
  const k = await call.end();
  const key: ExtentKey = { groupId: g.groupId, extentId: k.extentId ?? 0, offset: k.offset ?? 0, length: k.length ?? 0, crc: k.crc ?? 0 };
  for (const a of chain) t.ok((await bg.readFrom(a, key)).equals(data), `${a} holds the append of tiny chunks`);
  // Play the primary towards the middle replica with 1-byte chunks: it batches them, writes
  // them and relays them to the last replica intact.
  const fwd = payload(4, 0, 30_000);
  const rb = new RpcClient({ host: '127.0.0.1', port: (nodes[1] as Node).port });
  t.teardown(() => rb.close());
  const f = rb.clientStream(svc.forwardStream);
  await f.write(forwardHeaderCodec.encode({ groupId: g.groupId, seq: 1, extentId: 0, offset: data.length, totalLength: fwd.length }));
  for (let i = 0; i < fwd.length; i++) await f.write(fwd.subarray(i, i + 1));
  await f.end();
  const fkey: ExtentKey = { groupId: g.groupId, extentId: 0, offset: data.length, length: fwd.length, crc: crc32c(fwd) };
  for (const a of chain.slice(1)) t.ok((await bg.readFrom(a, fkey)).equals(fwd), `${a} holds the relayed tiny chunks`);
  await Promise.all(nodes.map((n) => kill(n)));
});

t.test('a forward cut off mid-stream seals the group; acknowledged bytes stay', async (t) => {
  const nodes = [await makeNode(), await makeNode(), await makeNode()];
  await Promise.all(nodes.map(start));
  const chain = nodes.map((n) => n.address);
  const bg = new BlockGroupClient({ deadlineMs: 10_000 });
  t.teardown(() => bg.close());
  const g = await bg.createGroup({ groupId: groupId(), replicas: chain }, { blockSizeBytes: 4096 });
  bg.addGroup(g);
  const before = payload(2, 0, 400_000);
  const key = await bg.append(before);
  const st = await bg.status(chain[1] as string, g.groupId);
  const len = st.lengths?.[0]?.length ?? 0;
  // Play a primary that dies after half a forward: header, some data, then the connection goes.
  const rpc = new RpcClient({ host: '127.0.0.1', port: (nodes[1] as Node).port });
  const call = rpc.clientStream(svc.forwardStream);
  await call.write(forwardHeaderCodec.encode({ groupId: g.groupId, seq: 1, extentId: 0, offset: len, totalLength: 600_000 }));
  await call.write(Buffer.alloc(200_000, 9));
  await call.write(Buffer.alloc(100_000, 9));
  // Let the frames reach the backup (close() drops whatever is still queued), then vanish.
  await sleep(300);
  await rpc.close();
  await eventually('the backup seals the group', async () => (await bg.status(chain[1] as string, g.groupId)).state === 'sealed');
  await eventually('every replica is sealed', async () => (await Promise.all(chain.map((a) => bg.status(a, g.groupId)))).every((s) => s.state === 'sealed'));
  await eventually('final lengths settle everywhere', async () => (await Promise.all(chain.map((a) => bg.status(a, g.groupId)))).every((s) => s.caughtUp === true));
  const all = await Promise.all(chain.map((a) => bg.status(a, g.groupId)));
  t.same(all.map((s) => s.lengthBytes), [len, len, len], 'the cut-off bytes were never kept');
  for (const a of chain) t.ok((await bg.readFrom(a, key)).equals(before), `${a} still serves the acknowledged append`);
  await Promise.all(nodes.map((n) => kill(n)));
});

t.test('kill -9 of the middle replica while large appends are relayed cut-through', async (t) => {
  const nodes = await Promise.all([makeNode(), makeNode(), makeNode(), makeNode()]);
  await Promise.all(nodes.map(start));
  const victim = nodes[1] as Node;
  let killed = false;
  const alive = (): Node[] => nodes.filter((n) => n !== victim || !killed);
  let newGroups = 0;
  const client: BlockGroupClient = new BlockGroupClient({
    deadlineMs: 10_000,
    newGroup: async (): Promise<GroupRef> => {
      newGroups++;
      return client.createGroup({ groupId: groupId(), replicas: alive().slice(0, 3).map((n) => n.address) }, { blockSizeBytes: 4096 });
    },
  });
  t.teardown(() => client.close());
  const g1 = await client.createGroup({ groupId: groupId(), replicas: nodes.slice(0, 3).map((n) => n.address) }, { blockSizeBytes: 4096 });
  client.addGroup(g1);
  const acked: { key: ExtentKey; data: Buffer }[] = [];
  let failures = 0;
  let issued = 0;
  const total = 60;
  await Promise.all(
    Array.from({ length: 4 }, async (_, w) => {
      let s = 0;
      while (issued < total) {
        issued++;
        // 300 KiB .. 1.3 MiB: every forward is a multi-chunk stream.
        const data = payload(w, s++, 300 * 1024 + ((w * 7919 + s * 104_729) % (1024 * 1024)));
        try {
          acked.push({ key: await client.append(data), data });
        } catch (err) {
          failures++;
          if (failures <= 3) t.comment(`append failed: ${(err as Error).message}`);
        }
        if (!killed && acked.length >= 15) {
          killed = true;
          // Not awaited: appends are in flight, being relayed through the victim.
          void kill(victim, 'SIGKILL');
        }
      }
    }),
  );
  t.ok(killed, 'the middle replica was killed');
  t.ok(newGroups >= 1, 'the client moved on to a new group');
  t.ok(acked.length >= total - 8, `appends acknowledged (${acked.length}/${total}, ${failures} failed)`);
  let bad = 0;
  for (const a of acked) {
    const got = await client.read(a.key).catch(() => undefined);
    if (!got?.equals(a.data)) bad++;
  }
  t.equal(bad, 0, 'every acknowledged append reads back byte for byte');
  await start(victim);
  await eventually('the restarted replica settles the sealed group', async () => (await client.status(victim.address, g1.groupId)).caughtUp === true);
  let badOnVictim = 0;
  for (const a of acked.filter((x) => x.key.groupId === g1.groupId)) {
    const got = await client.readFrom(victim.address, a.key).catch(() => undefined);
    if (!got?.equals(a.data)) badOnVictim++;
  }
  t.equal(badOnVictim, 0, 'the restarted replica serves every acknowledged append of the sealed group');
  await Promise.all(nodes.map((n) => kill(n)));
});
