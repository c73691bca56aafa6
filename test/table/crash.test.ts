// A 3-member table cluster of real processes on loopback. Members are killed with SIGKILL and
// paused with SIGSTOP while clients write; afterwards every acknowledged write must be there,
// and a member restarted on a corrupted (torn) log must start, truncate, and catch up.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../lib/procs.js';
import { TableClient } from '../../lib/table/index.js';
import { LevelDurableLog } from '../../lib/table/levellog.js';
import { tempDirFor } from '../lib/tmp.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerstack.js');


interface Member {
  id: number;
  port: number;
  dir: string;
  child?: ChildProcess;
  out: string;
}

async function startMember(m: Member, peers: string): Promise<void> {
  const child = spawn(process.execPath, [bin, 'table', 'serve', '--id', String(m.id), '--listen', `127.0.0.1:${m.port}`, '--peers', peers, '--data-dir', m.dir, '--admin-listen', '127.0.0.1:0', '--tick-ms', '50', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  m.child = child;
  m.out = '';
  child.stdout?.on('data', (d: Buffer) => (m.out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (m.out = (m.out + d.toString()).slice(-20_000)));
}

function kill(m: Member, sig: NodeJS.Signals): Promise<void> {
  const c = m.child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  const done = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill(sig);
  return sig === 'SIGKILL' || sig === 'SIGTERM' ? done : Promise.resolve();
}

async function leaderOf(client: TableClient, members: Member[]): Promise<Member | undefined> {
  for (const m of members) {
    try {
      const s = await client.status(`127.0.0.1:${m.port}`);
      if (s.role === 'leader') return m;
    } catch {
      // down or paused
    }
  }
  return undefined;
}

t.test('SIGKILL and SIGSTOP during writes lose no acknowledged write; a torn log rejoins', async (t) => {
  const members: Member[] = [];
  for (const id of [1, 2, 3]) members.push({ id, port: await freePort(), dir: tempDirFor(t, `table-m${id}-`), out: '' });
  const peers = members.map((m) => `${m.id}=127.0.0.1:${m.port}`).join(',');
  for (const m of members) await startMember(m, peers);
  t.teardown(async () => {
    for (const m of members) await kill(m, 'SIGKILL');
  });
  const endpoints = members.map((m) => `127.0.0.1:${m.port}`);
  const client = new TableClient({ endpoints, deadlineMs: 20_000 });
  t.teardown(() => client.close());
  await client.put('hello', 'world');

  const acked = new Map<string, string>();
  let failed = 0;
  let next = 0;
  const total = 600;
  const writer = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const k = `k${i}`;
      const v = `v${i}-${'x'.repeat(i % 50)}`;
      try {
        await client.put(k, v);
        acked.set(k, v);
      } catch {
        failed++; // not acknowledged: may or may not be there
      }
    }
  };
  const chaos = async (): Promise<void> => {
    const waitAcks = async (n: number): Promise<void> => {
      for (let i = 0; i < 2000 && acked.size < n; i++) await new Promise((r) => setTimeout(r, 10));
    };
    await waitAcks(100);
    const leader = await leaderOf(client, members);
    t.ok(leader, 'found the leader');
    await kill(leader!, 'SIGKILL');
    await waitAcks(250);
    const follower = members.find((m) => m !== leader)!;
    await kill(follower, 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 800));
    await kill(follower, 'SIGCONT');
    await startMember(leader!, peers);
    await waitAcks(400);
    const l2 = await leaderOf(client, members);
    if (l2) await kill(l2, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    if (l2) await startMember(l2, peers);
  };
  await Promise.all([writer(), writer(), writer(), writer(), chaos()]);
  t.ok(acked.size > 300, `${acked.size} writes acknowledged (${failed} not)`);

  let missing = 0;
  for (const [k, v] of acked) {
    const kv = await client.get(k);
    if (!kv || Buffer.from(kv.value).toString() !== v) missing++;
  }
  t.equal(missing, 0, 'every acknowledged write is readable (linearizable reads)');

  // Every member converges to the same applied state.
  const leader = await leaderOf(client, members);
  t.ok(leader, 'cluster has a leader after the chaos');
  const target = (await client.status(`127.0.0.1:${leader!.port}`)).applied ?? 0;
  for (const m of members) {
    let applied = 0;
    for (let i = 0; i < 300 && applied < target; i++) {
      try {
        applied = (await client.status(`127.0.0.1:${m.port}`)).applied ?? 0;
      } catch {
        // restarting
      }
      if (applied < target) await new Promise((r) => setTimeout(r, 50));
    }
    t.ok(applied >= target, `member ${m.id} caught up (applied ${applied} >= ${target})`);
  }

  // Torn log: kill a follower, corrupt the tail of its Raft log, restart it.
  const victim = members.find((m) => m !== leader)!;
  await kill(victim, 'SIGKILL');
  const log = await LevelDurableLog.open(join(victim.dir, 'raft'));
  const g = await log.open(1);
  const last = g.lastIndex();
  const k = Buffer.alloc(13);
  k[0] = 0x6c;
  k.writeUInt32BE(1, 1);
  k.writeBigUInt64BE(BigInt(last), 5);
  const raw = Buffer.from((await log.db.get(k))!);
  await log.db.put(k, raw.subarray(0, Math.max(1, raw.length - 3))); // a torn last record
  await log.close();
  for (let i = 0; i < 20; i++) await client.put(`after-torn-${i}`, String(i));
  await startMember(victim, peers);
  const goal = (await client.status(`127.0.0.1:${leader!.port}`)).applied ?? 0;
  let vApplied = 0;
  for (let i = 0; i < 300 && vApplied < goal; i++) {
    try {
      vApplied = (await client.status(`127.0.0.1:${victim.port}`)).applied ?? 0;
    } catch {
      // starting
    }
    if (vApplied < goal) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(vApplied >= goal, `member with a torn log restarted and caught up (${vApplied} >= ${goal})`);
  if (vApplied < goal) t.comment(victim.out);
  const staleOnVictim = new TableClient({ endpoints: [`127.0.0.1:${victim.port}`] });
  const kv = await staleOnVictim.get('after-torn-19', 'stale');
  await staleOnVictim.close();
  t.equal(Buffer.from(kv?.value ?? []).toString(), '19', 'it has the writes made while it was down');
});
