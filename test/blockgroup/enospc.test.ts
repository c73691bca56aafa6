// A full disk: three datanodes whose data directories share a 3 MiB tmpfs mounted for the test
// (unmounted afterwards). Appends go on until the disk fills; the client gets an ENOSPC-coded
// typed error, every acknowledged extent still reads back byte for byte, and the node stays up.
// Skipped (not failed) where mounting is not permitted.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockGroupClient, BlockGroupNoSpaceError, type ExtentKey } from '../../lib/blockgroup/index.js';
import { makeNode, start, kill, killAll, payload, groupId, eventually, type Node } from './helpers.js';

const mnt = mkdtempSync(join(tmpdir(), 'bg-full-'));
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt], { stdio: 'ignore' });
  mounted = true;
} catch {
  mounted = false;
}
t.teardown(async () => {
  await killAll();
  if (mounted) execFileSync('umount', [mnt], { stdio: 'ignore' });
  rmSync(mnt, { recursive: true, force: true });
});

t.test('disk full gives ENOSPC at the client and never loses an acknowledged extent', { skip: mounted ? false : 'cannot mount tmpfs here (needs root)' }, async (t) => {
  const nodes: Node[] = [];
  for (let i = 0; i < 3; i++) {
    const dir = join(mnt, `n${i}`);
    mkdirSync(dir);
    nodes.push(await makeNode([], dir));
  }
  await Promise.all(nodes.map(start));
  const client = new BlockGroupClient({ deadlineMs: 10_000 });
  const ref = await client.createGroup({ groupId: groupId(), replicas: nodes.map((n) => n.address) }, { blockSizeBytes: 4096 });
  client.addGroup(ref);
  const acked: { key: ExtentKey; data: Buffer }[] = [];
  let failure: unknown;
  for (let i = 0; i < 200 && failure === undefined; i++) {
    const data = payload(0, i, 40_000);
    try {
      acked.push({ key: await client.append(data), data });
    } catch (err) {
      failure = err;
    }
  }
  t.ok(failure, `the disk filled after ${acked.length} appends`);
  t.type(failure, BlockGroupNoSpaceError, 'typed error');
  t.equal((failure as { code?: string }).code, 'ENOSPC', 'err.code is ENOSPC');
  t.ok(acked.length > 5, 'appends were acknowledged before the disk filled');
  for (const n of nodes) {
    let bad = 0;
    for (const a of acked) if (!(await client.readFrom(n.address, a.key).catch(() => undefined))?.equals(a.data)) bad++;
    t.equal(bad, 0, `every acknowledged extent reads back from ${n.address}`);
  }
  for (const n of nodes) t.equal(n.child?.exitCode, null, 'datanode still running');
  // The group was sealed with final lengths that cover every acknowledged extent.
  await eventually('final lengths settled', async () => (await Promise.all(nodes.map((n) => client.status(n.address, ref.groupId)))).every((s) => s.hasSealedLengths));
  const st = await client.status((nodes[0] as Node).address, ref.groupId);
  const finalLen = new Map((st.sealedLengths ?? []).map((e) => [e.extentId ?? 0, e.length ?? 0]));
  t.ok(acked.every((a) => a.key.offset + a.key.length <= (finalLen.get(a.key.extentId) ?? -1)), 'final lengths cover every acknowledged extent');
  // The group is sealed: a further append is refused as such, never half-written.
  const again = await client.append(Buffer.alloc(1000)).catch((e: unknown) => e);
  t.ok(again instanceof Error, `a further append fails (${(again as Error).message})`);
  await client.close();
  await Promise.all(nodes.map((n) => kill(n, 'SIGTERM')));
});
