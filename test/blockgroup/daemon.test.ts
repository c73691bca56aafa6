// `containerfs data` as an operator sees it: the dispatcher lists it, --help explains it, a
// broken config is refused with exit 2, a config file works, /metrics and /health answer, and
// SIGTERM stops it cleanly (exit 0).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockGroupClient } from '../../lib/blockgroup/index.js';
import { bin, freePort, makeNode, start, kill, killAll, groupId } from './helpers.js';

const made: string[] = [];
function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}
t.teardown(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

t.teardown(killAll);

t.test('help and bad config', async (t) => {
  const top = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  t.equal(top.status, 0);
  t.match(top.stdout, /data \[options\]\s+run a datanode/, 'the dispatcher lists data');
  const help = spawnSync(process.execPath, [bin, 'data', '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0);
  t.match(help.stdout, /--data-dir/);
  t.match(help.stdout, /crc32c per block/);
  t.match(help.stdout, /dataDir\s+string\[\]/, 'config fields are described');
  const bad = spawnSync(process.execPath, [bin, 'data', '--listen', 'nonsense'], { encoding: 'utf8' });
  t.equal(bad.status, 2, 'bad flag exits 2');
  t.match(bad.stderr, /listen/);
  const badMaster = spawnSync(process.execPath, [bin, 'data', '--master', 'nowhere'], { encoding: 'utf8' });
  t.equal(badMaster.status, 2, 'bad --master exits 2');
  t.match(badMaster.stderr, /master/);
  const dir = tmp('bg-cfg-');
  const cfg = join(dir, 'c.json');
  writeFileSync(cfg, JSON.stringify({ listne: '127.0.0.1:1' }));
  const typo = spawnSync(process.execPath, [bin, 'data', '--config', cfg], { encoding: 'utf8' });
  t.equal(typo.status, 2, 'unknown config key exits 2');
  t.match(typo.stderr, /unknown field/);
});

t.test('config file, metrics, health, clean shutdown', async (t) => {
  const dir = tmp('bg-cfg-');
  const n = await makeNode();
  const cfg = join(dir, 'c.json');
  const port = await freePort();
  writeFileSync(cfg, JSON.stringify({ listen: `127.0.0.1:${port}`, blockSize: '8KiB', logLevel: 'warn' }));
  // The config file sets listen; the harness's --listen flag would override it, so start by hand.
  n.port = port;
  n.address = `127.0.0.1:${port}`;
  n.extraArgs = ['--config', cfg];
  await start(n);
  const client = new BlockGroupClient();
  const ref = await client.createGroup({ groupId: groupId(), replicas: [n.address] });
  client.addGroup(ref);
  await client.append(Buffer.alloc(100_000, 3));
  const st = await client.status(n.address, ref.groupId);
  t.equal(st.blockSizeBytes, 8192, 'block size from the config file');
  const metrics = await (await fetch(`http://127.0.0.1:${n.adminPort}/metrics`)).text();
  t.match(metrics, /blockgroup_append_bytes_total\{[^}]*\} 100000/);
  t.match(metrics, /rpc_server_calls_total/);
  const health = (await (await fetch(`http://127.0.0.1:${n.adminPort}/health`)).json()) as { status: string; checks: Record<string, unknown> };
  t.equal(health.status, 'ok');
  t.ok(health.checks.groups, 'group check present');
  await client.close();
  const code = await kill(n, 'SIGTERM');
  t.equal(code, 0, 'SIGTERM exits 0');
});

t.test('two data directories: groups in either are found again after a restart', async (t) => {
  const { mkdirSync, renameSync } = await import('node:fs');
  const base = tmp('bg-dirs-');
  const d1 = join(base, 'd1');
  const d2 = join(base, 'd2');
  mkdirSync(d1);
  mkdirSync(d2);
  const n = await makeNode([], d1);
  n.extraArgs = ['--data-dir', `${d1},${d2}`];
  await start(n);
  const client = new BlockGroupClient();
  const refs = [{ groupId: groupId(), replicas: [n.address] }, { groupId: groupId(), replicas: [n.address] }];
  const keys = [];
  for (const r of refs) {
    await client.createGroup(r);
    client.addGroup(r);
    keys.push(await client.append(Buffer.alloc(5000, r.groupId % 251)));
    await client.seal(r);
  }
  t.equal(await kill(n, 'SIGTERM'), 0);
  // Move the second group to the other directory, as an operator rebalancing disks would.
  const from = [d1, d2].find((d) => { try { statSync(join(d, 'groups', String(refs[1]?.groupId))); return true; } catch { return false; } }) as string;
  const to = from === d1 ? d2 : d1;
  mkdirSync(join(to, 'groups'), { recursive: true });
  renameSync(join(from, 'groups', String(refs[1]?.groupId)), join(to, 'groups', String(refs[1]?.groupId)));
  await start(n);
  for (const [i, k] of keys.entries()) t.ok((await client.readFrom(n.address, k)).equals(Buffer.alloc(5000, (refs[i]?.groupId ?? 0) % 251)), `group ${i} served after restart`);
  const metrics = await (await fetch(`http://127.0.0.1:${n.adminPort}/metrics`)).text();
  t.match(metrics, /blockgroup_groups\{[^}]*state="sealed"[^}]*\} 2/, 'both groups loaded');
  await client.close();
  await kill(n, 'SIGTERM');
});
