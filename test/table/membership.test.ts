// Membership of a table cluster of real processes, driven from the CLI as an operator would:
// a fourth member joins (learner, catch-up, promotion), leadership moves to it, an original
// member is removed and stopped, and writes keep working throughout.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TableClient } from '../../lib/table/index.js';
import { freePort, killAndWait } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

t.setTimeout(240_000);
const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerstack.js');
const children = new Map<number, ChildProcess>();
t.teardown(() => {
  for (const c of children.values()) c.kill('SIGKILL');
});

function cli(endpoints: string[], ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, 'table', ...args, '--endpoints', endpoints.join(','), '--timeout', '20000', '--json'], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('add, transfer leadership to, and remove members with the CLI', async (t) => {
  const base = tempDirFor(t, 'table-members-');
  // Before base goes (tap: last in, first out); the file's own teardown comes too late for that.
  t.teardown(() => killAndWait(children.values()));
  const ports = new Map<number, number>();
  for (const id of [1, 2, 3, 4]) ports.set(id, await freePort());
  const addr = (id: number): string => `127.0.0.1:${ports.get(id)}`;
  const founders = [1, 2, 3];
  const serve = (id: number, peerIds: number[], join_ = false): void => {
    const peers = peerIds.map((p) => `${p}=${addr(p)}`).join(',');
    children.set(id, spawn(process.execPath, [bin, 'table', 'serve', '--id', String(id), '--listen', addr(id), '--peers', peers, '--data-dir', join(base, `m${id}`), '--admin-listen', '127.0.0.1:0', '--tick-ms', '50', '--log-level', 'error', ...(join_ ? ['--join'] : [])], { stdio: 'ignore' }));
  };
  for (const id of founders) serve(id, founders);
  const client = new TableClient({ endpoints: founders.map(addr), deadlineMs: 20_000 });
  t.teardown(() => client.close());
  for (let i = 0; i < 100; i++) await client.put(`k${i}`, String(i));

  serve(4, [1, 2, 3, 4], true);
  let r = cli(founders.map(addr), 'member', 'add', '4', addr(4));
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout).voters, [1, 2, 3, 4], 'member 4 is a voter');
  const on4 = new TableClient({ endpoints: [addr(4)], deadlineMs: 10_000 });
  t.teardown(() => on4.close());
  t.equal(Buffer.from((await on4.get('k99', 'stale'))?.value ?? []).toString(), '99', 'the new member has the data');

  r = cli(founders.map(addr), 'transfer-leader', '4');
  t.equal(r.status, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).leader, 4, 'leadership moved to the new member');

  r = cli([1, 2, 3, 4].map(addr), 'member', 'remove', '1');
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout).voters, [2, 3, 4]);
  children.get(1)!.kill('SIGKILL');
  const rest = new TableClient({ endpoints: [2, 3, 4].map(addr), deadlineMs: 20_000 });
  t.teardown(() => rest.close());
  await rest.put('after', 'removal');
  t.equal(Buffer.from((await rest.get('after'))!.value).toString(), 'removal', 'writes work on the new membership');
  r = cli([2, 3, 4].map(addr), 'member', 'list');
  t.match(JSON.parse(r.stdout), { voters: [2, 3, 4], learners: [] });
  r = cli([2, 3, 4].map(addr), 'member', 'add', '9', '127.0.0.1:1');
  t.not(r.status, 0, 'adding an unreachable member fails instead of promoting it');
});
