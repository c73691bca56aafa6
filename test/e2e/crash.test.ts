// Crashes under a real mount: kill -9 of the mount process while a write is in flight, and
// kill -9 of a datanode in the chain of the block group being written. After a remount every
// byte that fsync acknowledged must be there, unchanged.
import t from 'tap';
import { promises as fsp, chmodSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { MasterClient } from '../../lib/master/index.js';
import { startTestCluster } from '../fs/cluster.js';
import { isMounted, startMount, stopAllMounts } from './helpers.js';
import { tempDirFor } from '../lib/tmp.js';

// Four datanodes: after one dies, new block groups still find three replicas.
const { cluster, volume } = await startTestCluster({ datas: 4 });
// Removed after the teardown below has stopped the mounts and the cluster (tap: last in, first out).
const base = tempDirFor(t, 'cfs-crash-');
chmodSync(base, 0o755);
t.teardown(async () => {
  await stopAllMounts();
  await cluster.stop();
});

/** Chunk i of a file: its bytes name it, so a misplaced or stale chunk is caught. */
const chunk = (i: number, size: number): Buffer => {
  const b = Buffer.alloc(size);
  for (let o = 0; o < size; o += 8) b.writeUInt32LE(i, o), b.writeUInt32LE(o, o + 4);
  return b;
};

t.test('kill -9 of the mount process during writes: fsynced bytes survive', async (t) => {
  const m = await startMount(cluster.master, volume, join(base, 'm1'));
  const size = 64 * 1024;
  const h = await fsp.open(join(m.mnt, 'log'), 'w');
  const synced = 20;
  for (let i = 0; i < synced; i++) {
    await h.write(chunk(i, size), 0, size, i * size);
    await h.sync();
  }
  // More writes, not synced, and one in flight when the process dies.
  for (let i = synced; i < synced + 5; i++) await h.write(chunk(i, size), 0, size, i * size);
  // It may also finish before the kill lands (into the mount's write-back buffer): 'ok'.
  const inflight = h.write(chunk(99, size), 0, size, 30 * size).then(
    () => 'ok',
    (e: { code?: string }) => e.code ?? String(e),
  );
  m.child.kill('SIGKILL');
  await new Promise((r) => m.child.once('exit', r));
  const ended = await inflight;
  // Closed before any assertion can throw: a FileHandle left to the garbage collector on a dead
  // mount fails its close there, and Node ends the process for it.
  await h.close().catch(() => undefined);
  t.ok(['ok', 'ENOTCONN', 'ECONNABORTED', 'EIO'].includes(ended), `in-flight write ended (${ended})`);
  spawnSync('fusermount', ['-u', '-z', m.mnt]);
  t.notOk(isMounted(m.mnt));
  const again = await startMount(cluster.master, volume, join(base, 'm1b'));
  t.teardown(() => again.stop());
  const back = await fsp.readFile(join(again.mnt, 'log'));
  t.ok(back.length >= synced * size, `at least the ${synced} fsynced chunks (${back.length} bytes)`);
  let bad = -1;
  for (let i = 0; i < synced && bad < 0; i++) if (!back.subarray(i * size, (i + 1) * size).equals(chunk(i, size))) bad = i;
  t.equal(bad, -1, 'every fsynced chunk intact');
});

t.test('kill -9 of a datanode in the write chain: writes go on, fsynced bytes survive', async (t) => {
  const m = await startMount(cluster.master, volume, join(base, 'm2'));
  t.teardown(() => m.stop());
  const size = 256 * 1024;
  const total = 40;
  const h = await fsp.open(join(m.mnt, 'chain'), 'w');
  for (let i = 0; i < 10; i++) {
    await h.write(chunk(i, size), 0, size, i * size);
    await h.sync();
  }
  // The group this mount writes to: the open group with the highest id.
  const mc = new MasterClient({ endpoints: [cluster.master] });
  const view = await mc.view(volume);
  await mc.close();
  const open = view.groups.filter((g) => g.state === 'open').sort((a, b) => b.groupId - a.groupId)[0];
  t.ok(open, 'an open block group');
  const primaryAddr = view.nodes.find((n) => n.id === open?.replicas[0])?.address;
  const victim = cluster.nodes.find((n) => n.kind === 'data' && n.address === primaryAddr);
  t.ok(victim, `the primary of group ${open?.groupId} is ${primaryAddr}`);
  // A write and fsync in flight as the primary dies.
  const inflight = (async () => {
    await h.write(chunk(10, size), 0, size, 10 * size);
    await h.sync();
  })();
  await cluster.kill(victim!, 'SIGKILL');
  await inflight;
  for (let i = 11; i < total; i++) {
    await h.write(chunk(i, size), 0, size, i * size);
    await h.sync();
  }
  await h.close();
  const back = await fsp.readFile(join(m.mnt, 'chain'));
  t.equal(back.length, total * size);
  let bad = -1;
  for (let i = 0; i < total && bad < 0; i++) if (!back.subarray(i * size, (i + 1) * size).equals(chunk(i, size))) bad = i;
  t.equal(bad, -1, 'every chunk intact on this mount');
  // And on a fresh mount (nothing from this client's memory).
  const other = await startMount(cluster.master, volume, join(base, 'm2b'));
  t.teardown(() => other.stop());
  const again = await fsp.readFile(join(other.mnt, 'chain'));
  t.ok(again.equals(back), 'a fresh mount reads the same bytes');
});
