// Volume lifecycle against a real cluster of processes (master, 3 metanodes, 3 datanodes, the
// `containerfs` CLI): a small capacity quota fills through the Volume API and answers ENOSPC
// with nothing acknowledged lost, statfs reports the capacity, `volume set-capacity` lifts it;
// relatime updates atime on read once per change; a deleted volume's partitions are closed
// and destroyed on the metanodes and its block groups removed from the datanodes, while
// another volume is untouched.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, constants } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Level } from 'level';
import { Volume } from '../../lib/fs/index.js';
import { MasterClient } from '../../lib/master/index.js';
import { blockGroupService } from '../../lib/blockgroup/index.js';
import { RpcPool } from '../../lib/rpc/index.js';
import { startTestCluster } from './cluster.js';
import { code } from '../lib/errors.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerfs.js');
const run = promisify(execFile);
const cli = async (...args: string[]): Promise<string> => (await run(process.execPath, [bin, ...args, '--master', cluster.master])).stdout;

const { cluster, volume } = await startTestCluster();
const master = new MasterClient({ endpoints: [cluster.master] });
const pool = new RpcPool();
const vols: Volume[] = [];
const open = async (name: string, o: Record<string, unknown> = {}): Promise<Volume> => {
  const v = await Volume.open({ master: cluster.master, volume: name, ...o });
  vols.push(v);
  return v;
};
t.teardown(async () => {
  for (const v of vols) await v.close().catch(() => undefined);
  await master.close();
  await pool.close();
  await cluster.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

t.test('capacity quota: fill, ENOSPC, nothing acknowledged lost, set-capacity lifts it', async (t) => {
  const cap = 256 * 1024;
  await master.createVolume('q1', { quotaBytes: cap, replicas: 3 });
  const vol = await open('q1');
  const chunk = 16 * 1024;
  const acked = new Map<string, Buffer>();
  let failure = '';
  // Each writeFile closes its file: resolved means flushed and committed. The quota is eventual
  // (heartbeats), so some files past the capacity are accepted before the volume is full.
  for (let i = 0; i < 2000 && !failure; i++) {
    const data = randomBytes(chunk);
    const c = await code(vol.writeFile(`/f${i}`, data));
    if (c === 'ok') acked.set(`/f${i}`, data);
    else failure = c;
  }
  t.equal(failure, 'ENOSPC', 'writes end with ENOSPC');
  t.ok(acked.size * chunk >= cap, `at least the capacity was accepted (${acked.size} files)`);
  for (const [p, data] of acked) if (!((await vol.readFile(p)) as Buffer).equals(data)) t.fail(`${p} lost or changed`);
  t.pass(`all ${acked.size} acknowledged files read back intact`);

  // The refused commit's appended bytes were freed (dead, for the compactor), not leaked.
  const deadBytes = async () => {
    let dead = 0;
    for (const g of (await master.view('q1')).groups) {
      const ref = await master.locateGroup(g.groupId);
      const st = await pool.get(ref.replicas[0]!).call(blockGroupService.status, { groupId: g.groupId }, { deadlineMs: 5000 });
      dead += st.deadBytes ?? 0;
    }
    return dead;
  };
  await until('the refused bytes marked dead', async () => (await deadBytes()) >= chunk);
  t.pass('the bytes of the refused commit are marked dead on the datanodes');

  // Known full: a growing write fails at once, on the handle; overwrites and deletes still work.
  const h = await vol.open('/f0', 'r+');
  t.equal((await h.write(Buffer.alloc(100, 1), 0, 100, 0)).bytesWritten, 100, 'overwrite inside a file');
  t.equal(await code(h.write(Buffer.alloc(100, 2), 0, 100, chunk)), 'ENOSPC', 'growing the file fails at the write');
  await h.close();
  t.equal(((await vol.readFile('/f0')) as Buffer).subarray(0, 100).equals(Buffer.alloc(100, 1)), true, 'the overwrite is there');
  t.equal(await code(vol.writeFile('/new', 'x')), 'ENOSPC', 'a new file with data fails');

  const fs = await vol.statfs();
  t.equal(fs.blocks * fs.bsize, cap, 'statfs: size is the capacity');
  t.equal(fs.bfree, 0, 'statfs: nothing free');
  const info = await cli('volume', 'info', 'q1');
  t.match(info, /FULL/, 'volume info shows the volume full');
  t.match(info, /256\.0KiB/, 'and its capacity');
  const status = await run(process.execPath, [bin, 'cluster', 'status', '--master', cluster.master]).then(() => ({ code: 0, out: '' }), (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }));
  t.equal(status.code, 5, 'cluster status reports a problem');
  t.match(status.out, /volume q1 is full/, 'the full volume');
  const json = JSON.parse(await cli('volume', 'info', 'q1', '--json')) as { volumes: { usedBytes: number; quotaBytes: number; full: boolean }[] };
  t.ok(json.volumes[0]!.usedBytes >= cap && json.volumes[0]!.full, 'used >= capacity, full');

  // Lift the quota: writes work again once the metanodes hear of it.
  t.match(await cli('volume', 'set-capacity', 'q1', '64MiB'), /capacity 64/);
  const data = randomBytes(chunk);
  await until('writes accepted again', async () => (await code(vol.writeFile('/after', data))) === 'ok');
  t.ok(((await vol.readFile('/after')) as Buffer).equals(data), 'a file written after the raise reads back');
  const big = randomBytes(1 << 20);
  await vol.writeFile('/big', big);
  t.ok(((await vol.readFile('/big')) as Buffer).equals(big), 'a 1 MiB file fits now');
  const fs2 = await vol.statfs();
  t.equal(fs2.blocks * fs2.bsize, 64 * 1024 * 1024, 'statfs: the new capacity');
  t.ok(fs2.bfree > 0, 'statfs: space free');
  t.match(await cli('volume', 'list'), /q1 .* ok /, 'volume list: no longer full');
  t.not(await code(cli('volume', 'set-capacity', 'nope', '1MiB')), 'ok', 'set-capacity of a missing volume fails');
});

t.test('relatime: atime follows reads once per change, ctime untouched', async (t) => {
  const vol = await open(volume);
  const obs = await open(volume, { attrTtlMs: 0, dentryTtlMs: 0 }); // sees the partition's state
  await vol.writeFile('/at', 'hello');
  const s0 = await obs.stat('/at');
  t.ok(s0.atimeMs <= s0.mtimeMs, 'a new file: atime not after mtime');
  t.equal(await vol.readFile('/at', 'utf8'), 'hello');
  const s1 = await until('atime updated by the read', async () => {
    const s = await obs.stat('/at');
    return s.atimeMs > s.mtimeMs ? s : undefined;
  });
  t.equal(s1.ctimeMs, s0.ctimeMs, 'the atime update left ctime');
  t.equal(s1.mtimeMs, s0.mtimeMs, 'and mtime');
  // More reads (same or new handles): atime is newer than mtime and ctime now, so no update.
  const h = await vol.open('/at', 'r');
  for (let i = 0; i < 5; i++) await h.read(Buffer.alloc(5), 0, 5, 0);
  await h.close();
  await vol.readFile('/at');
  await sleep(500);
  t.equal((await obs.stat('/at')).atimeMs, s1.atimeMs, 'no update while nothing changed');
  // A write makes mtime newer: the next read updates atime again.
  await sleep(5);
  await vol.writeFile('/at', 'hello again');
  const s2 = await obs.stat('/at');
  t.ok(s2.mtimeMs >= s1.atimeMs, 'written after the last access');
  await vol.readFile('/at');
  const s3 = await until('atime updated after the write', async () => {
    const s = await obs.stat('/at');
    return s.atimeMs > s2.mtimeMs ? s : undefined;
  });
  t.equal(s3.ctimeMs, s2.ctimeMs, 'ctime still from the write');
  // A day later (this client's clock): an atime newer than mtime and ctime is updated once.
  const later = await open(volume, { now: () => Date.now() + 2 * 86_400_000 });
  await later.readFile('/at');
  const s4 = await until('atime updated a day later', async () => {
    const s = await obs.stat('/at');
    return s.atimeMs > Date.now() + 86_400_000 ? s : undefined;
  });
  await later.readFile('/at');
  await sleep(500);
  t.equal((await obs.stat('/at')).atimeMs, s4.atimeMs, 'once, not per read');
  // O_NOATIME reads leave it, even when an update is due.
  await vol.writeFile('/na', 'x');
  const n0 = await obs.stat('/na');
  const nh = await vol.open('/na', constants.O_RDONLY | constants.O_NOATIME);
  await nh.read(Buffer.alloc(1), 0, 1, 0);
  await nh.close();
  await sleep(500);
  t.equal((await obs.stat('/na')).atimeMs, n0.atimeMs, 'O_NOATIME: no update');
});

t.test('delete a volume: partitions closed and destroyed, block groups removed, others untouched', async (t) => {
  const keep = await open(volume);
  await keep.writeFile('/keep', 'still here');
  await master.createVolume('d1', { replicas: 3 });
  const vol = await open('d1');
  for (let i = 0; i < 5; i++) await vol.writeFile(`/x${i}`, randomBytes(64 * 1024));
  await vol.close();
  const before = await master.view();
  const parts = before.partitions.filter((p) => p.volume === 'd1').map((p) => p.groupId);
  const groups = before.groups.filter((g) => g.volume === 'd1').map((g) => g.groupId);
  const keptGroups = before.groups.filter((g) => g.volume === volume).map((g) => g.groupId);
  t.ok(parts.length >= 1 && groups.length >= 1 && keptGroups.length >= 1, 'both volumes have partitions and groups');
  const datas = cluster.nodes.filter((n) => n.kind === 'data');
  const metas = cluster.nodes.filter((n) => n.kind === 'meta');
  const groupDirs = (id: number) => datas.filter((n) => existsSync(join(n.dir, 'groups', String(id)))).length;
  for (const g of groups) t.equal(groupDirs(g), 3, `group ${g} on three datanodes`);
  const hosted = async (n: (typeof metas)[number]) => {
    if (n.child?.exitCode !== null || n.child?.signalCode !== null) throw new Error(`${n.name} exited (${n.child?.exitCode} ${n.child?.signalCode}): ${n.out.slice(-3000)}`);
    const m = /^raft_groups(?:\{[^}]*\})? (\d+)/m.exec(await (await fetch(`http://${n.admin}/metrics`)).text());
    return Number(m?.[1] ?? -1);
  };
  const hostedBefore = await Promise.all(metas.map(hosted));

  t.match(await cli('volume', 'delete', 'd1'), /deleted/);
  await until('block groups removed from the datanodes', async () => groups.every((g) => groupDirs(g) === 0));
  t.pass(`groups ${groups.join(', ')} gone from every datanode`);
  await until('partitions closed on the metanodes', async () => (await Promise.all(metas.map(hosted))).every((n, i) => n === (hostedBefore[i] as number) - parts.length));
  t.pass(`partitions ${parts.join(', ')} closed on every metanode`);
  for (const g of keptGroups) t.equal(groupDirs(g), 3, `group ${g} of ${volume} untouched`);
  t.equal(await keep.readFile('/keep', 'utf8'), 'still here', `${volume} still reads`);
  await keep.writeFile('/keep2', 'and writes');
  t.equal(await code(Volume.open({ master: cluster.master, volume: 'd1' })), 'FS_VOLUME_NOT_FOUND');

  // The partition's data left the metanode's databases: stop one and look (level is locked
  // while the process runs).
  const m1 = metas[0]!;
  // Logged once the data is destroyed (the hosted count drops when the group is closed, before).
  await until('destroyed on the metanode', async () => (m1.out.match(/closed and destroyed/g) ?? []).length >= parts.length);
  await cluster.kill(m1);
  const keptParts = before.partitions.filter((p) => p.volume === volume && p.members.length > 0).map((p) => p.groupId);
  const gid = Buffer.alloc(4);
  let left = 0;
  let kept = 0;
  for (const sub of ['table', 'raft']) {
    const db = new Level<Uint8Array, Uint8Array>(join(m1.dir, sub), { keyEncoding: 'view', valueEncoding: 'view' });
    await db.open();
    for await (const k of db.keys()) {
      const b = Buffer.from(k);
      for (const p of parts) {
        gid.writeUInt32BE(p);
        if (b.length >= 5 && [0x74, 0x67, 0x6c, 0x68, 0x73].includes(b[0] as number) && b.subarray(1, 5).equals(gid)) left++;
      }
      for (const p of keptParts) {
        gid.writeUInt32BE(p);
        if (b.length >= 5 && [0x74, 0x6c].includes(b[0] as number) && b.subarray(1, 5).equals(gid)) kept++;
      }
    }
    await db.close();
  }
  t.equal(left, 0, 'no key of the deleted partitions left on the metanode');
  t.ok(kept > 0, `the other volume's partition keys are there (${kept})`);
  await cluster.startNode(m1);
  t.equal(await keep.readFile('/keep2', 'utf8'), 'and writes', `${volume} fine after the restart`);
});
