// kill -9 of a backup and of a primary while several writers stream appends. Afterwards every
// acknowledged extent reads back byte for byte (un-acknowledged ones may be lost), the writers
// went on in new groups, and the killed node, restarted, settles the sealed group at its final
// lengths by catching up (or cutting back) by length, after which it serves every acknowledged
// extent of that group by itself.
import t, { type Test } from 'tap';
import { BlockGroupClient, type ExtentKey, type GroupRef } from '../../lib/blockgroup/index.js';
import { makeNode, start, kill, killAll, payload, groupId, eventually, type Node } from './helpers.js';

t.teardown(killAll);

interface Acked {
  key: ExtentKey;
  data: Buffer;
}

async function scenario(t: Test, victimIndex: number): Promise<void> {
  const nodes = await Promise.all([makeNode(), makeNode(), makeNode(), makeNode()]);
  await Promise.all(nodes.map(start));
  const victim = nodes[victimIndex] as Node;
  const chain = nodes.slice(0, 3).map((n) => n.address);
  // The test plays the master: it stops placing groups on the victim from the moment it kills it.
  const alive = (): Node[] => nodes.filter((n) => n !== victim || !killed);
  let newGroups = 0;
  const client: BlockGroupClient = new BlockGroupClient({
    deadlineMs: 5000,
    newGroup: async (): Promise<GroupRef> => {
      newGroups++;
      const live = alive().slice(0, 3);
      return client.createGroup({ groupId: groupId(), replicas: live.map((n) => n.address) }, { blockSizeBytes: 4096, extentMaxBytes: 256 * 1024 });
    },
  });
  const g1 = await client.createGroup({ groupId: groupId(), replicas: chain }, { blockSizeBytes: 4096, extentMaxBytes: 256 * 1024 });
  client.addGroup(g1);
  let killed = false;
  const acked: Acked[] = [];
  let failures = 0;
  const total = 600;
  let issued = 0;
  await Promise.all(
    Array.from({ length: 6 }, async (_, w) => {
      let s = 0;
      while (issued < total) {
        issued++;
        const data = payload(w, s++, 512 + ((w * 31 + s * 977) % 20_000));
        try {
          acked.push({ key: await client.append(data), data });
        } catch (err) {
          failures++;
          if (failures <= 3) t.comment(`append failed: ${(err as Error).message}`);
        }
        if (!killed && acked.length >= 150) {
          killed = true;
          await kill(victim, 'SIGKILL');
        }
      }
    }),
  );
  t.ok(killed, 'the victim was killed mid-stream');
  t.ok(acked.length >= total - 10, `most appends acknowledged (${acked.length}/${total}, ${failures} failed)`);
  t.ok(newGroups >= 1, 'the client moved on to a new group');
  const inG1 = acked.filter((a) => a.key.groupId === g1.groupId);
  t.ok(inG1.length >= 150 && inG1.length < acked.length, `acks before and after the kill (${inG1.length} in the first group)`);
  let bad = 0;
  for (const a of acked) {
    const got = await client.read(a.key).catch(() => undefined);
    if (!got?.equals(a.data)) bad++;
  }
  t.equal(bad, 0, 'every acknowledged extent reads back byte for byte');

  await start(victim);
  await eventually('the restarted node settles the sealed group', async () => (await client.status(victim.address, g1.groupId)).caughtUp === true);
  const [sv, s0] = await Promise.all([client.status(victim.address, g1.groupId), client.status((alive().find((n) => n !== victim) as Node).address, g1.groupId)]);
  t.equal(sv.state, 'sealed');
  t.same(sv.lengths, sv.sealedLengths, 'victim extents are at the final lengths');
  t.same(s0.sealedLengths, sv.sealedLengths, 'peers agree on the final lengths');
  let badOnVictim = 0;
  for (const a of inG1) {
    const got = await client.readFrom(victim.address, a.key).catch(() => undefined);
    if (!got?.equals(a.data)) badOnVictim++;
  }
  t.equal(badOnVictim, 0, 'the restarted node serves every acknowledged extent of the sealed group itself');
  await client.close();
  await Promise.all(nodes.map((n) => kill(n)));
}

t.test('kill -9 of a backup mid-stream', async (t) => scenario(t, 2));
t.test('kill -9 of the primary mid-stream', async (t) => scenario(t, 0));

t.test('a replica that was down (frozen) during writes catches up by length when it returns', async (t) => {
  const nodes = await Promise.all([0, 1, 2, 3].map(() => makeNode(['--forward-timeout', '1s'])));
  await Promise.all(nodes.map(start));
  const [a, b, c, d] = nodes as [Node, Node, Node, Node];
  const client: BlockGroupClient = new BlockGroupClient({
    deadlineMs: 5000,
    newGroup: () => client.createGroup({ groupId: groupId(), replicas: [a.address, b.address, d.address] }, { blockSizeBytes: 4096 }),
  });
  const g1 = await client.createGroup({ groupId: groupId(), replicas: [a.address, b.address, c.address] }, { blockSizeBytes: 4096 });
  client.addGroup(g1);
  const acked: Acked[] = [];
  for (let i = 0; i < 20; i++) {
    const data = payload(0, i, 30_000);
    acked.push({ key: await client.append(data), data });
  }
  // Freeze the last replica: forwards to it time out, the group is sealed without it.
  c.child?.kill('SIGSTOP');
  const writers = Array.from({ length: 4 }, async (_, w) => {
    for (let i = 0; i < 15; i++) {
      const data = payload(w + 1, i, 30_000);
      try {
        acked.push({ key: await client.append(data), data });
      } catch {
        // un-acknowledged appends may be lost
      }
    }
  });
  await Promise.all(writers);
  const sealed = await client.status(a.address, g1.groupId);
  t.equal(sealed.state, 'sealed', 'the group was sealed while the replica was down');
  t.ok(acked.some((x) => x.key.groupId !== g1.groupId), 'writes went on in a new group');
  await kill(c, 'SIGKILL');
  await start(c);
  await eventually('the returning replica catches up', async () => (await client.status(c.address, g1.groupId)).caughtUp === true);
  const [sa, sc] = await Promise.all([client.status(a.address, g1.groupId), client.status(c.address, g1.groupId)]);
  t.same(sc.lengths, sa.lengths, 'same lengths as a healthy replica');
  const metrics = await (await fetch(`http://127.0.0.1:${c.adminPort}/metrics`)).text();
  const copied = Number(/blockgroup_catchup_bytes_total\{[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
  t.ok(copied > 0, `it copied the bytes it missed from a peer (${copied} bytes)`);
  let bad = 0;
  for (const x of acked.filter((y) => y.key.groupId === g1.groupId)) if (!(await client.readFrom(c.address, x.key).catch(() => undefined))?.equals(x.data)) bad++;
  t.equal(bad, 0, 'every acknowledged extent of the sealed group reads back from it');
  for (const x of acked) t.ok((await client.read(x.key)).equals(x.data));
  await client.close();
  await Promise.all(nodes.map((n) => kill(n)));
});
