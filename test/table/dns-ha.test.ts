// ContainerDNS high availability on a replicated table: a 3-member table cluster (real
// `containerstack table serve` processes) and two `containerdns serve --store table
// --table-endpoints` replicas. A record written once is answered by both replicas; after the
// table leader is killed, new writes still reach both, and health written once moves clients
// the same way on both.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TableClient } from '../../lib/table/index.js';
import { TableDnsStore } from '../../lib/dns/tablestore.js';
import { digShort } from '../dns/helpers.js';
import { freePort, killAndWait } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

t.setTimeout(240_000);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const children = new Set<ChildProcess>();
t.teardown(() => {
  for (const c of children) c.kill('SIGKILL');
});
function start(args: string[]): ChildProcess {
  const c = spawn(process.execPath, args, { stdio: 'ignore' });
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(f: () => Promise<T | undefined | false>, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

t.test('two DNS replicas on one table cluster survive the loss of the table leader', async (t) => {
  const base = tempDirFor(t, 'dns-ha-');
  // Before base goes (tap: last in, first out); the file's own teardown comes too late for that.
  t.teardown(() => killAndWait(children));
  const ports = [await freePort(), await freePort(), await freePort()];
  const peers = ports.map((p, i) => `${i + 1}=127.0.0.1:${p}`).join(',');
  const members = ports.map((p, i) => start([join(root, 'cmd/containerstack.js'), 'table', 'serve', '--id', String(i + 1), '--listen', `127.0.0.1:${p}`, '--peers', peers, '--data-dir', join(base, `t${i + 1}`), '--admin-listen', '127.0.0.1:0', '--tick-ms', '50', '--log-level', 'error']));
  const endpoints = ports.map((p) => `127.0.0.1:${p}`);
  const client = new TableClient({ endpoints, deadlineMs: 20_000 });
  t.teardown(() => client.close());
  const store = new TableDnsStore(client);
  await store.put({ id: '1', name: 'api.default.svc.cluster.local', type: 'A', value: '10.1.0.1' });
  await store.put({ id: '2', name: 'api.default.svc.cluster.local', type: 'A', value: '10.1.0.2' });

  const dnsPorts = [await freePort(), await freePort()];
  for (const dp of dnsPorts) {
    start([join(root, 'cmd/containerdns.js'), 'serve', '--listen', `127.0.0.1:${dp}`, '--admin', `127.0.0.1:${await freePort()}`, '--store', 'table', '--table-endpoints', endpoints.join(','),
      '--workers', '1', '--no-forward', '--rate-limit', '0', '--pick-mode', 'sticky']);
  }
  for (const dp of dnsPorts) {
    const a = await until(async () => {
      const r = await digShort(dp, ['api.default.svc.cluster.local', 'A']);
      return r.length === 1 ? r : undefined;
    }, `replica ${dp} answers`);
    t.match(a[0], /^10\.1\.0\.[12]$/, `replica ${dp} answers from the table`);
  }
  // Both replicas give this client the same IP (rendezvous over the same healthy set).
  const pick = async (dp: number): Promise<string> => (await digShort(dp, ['api.default.svc.cluster.local', 'A'], '127.0.0.1'))[0] as string;
  t.equal(await pick(dnsPorts[0]!), await pick(dnsPorts[1]!), 'replicas agree for one client');

  // Kill the table leader; write again; both replicas see it.
  let leaderIdx = -1;
  for (let i = 0; i < 3; i++) {
    const st = await client.status(endpoints[i]).catch(() => undefined);
    if (st?.role === 'leader') leaderIdx = i;
  }
  t.ok(leaderIdx >= 0, 'found the table leader');
  members[leaderIdx]!.kill('SIGKILL');
  await store.put({ id: '1', name: 'new.default.svc.cluster.local', type: 'A', value: '10.2.0.9' });
  for (const dp of dnsPorts) {
    const r = await until(async () => {
      const x = await digShort(dp, ['new.default.svc.cluster.local', 'A']);
      return x.length === 1 ? x : undefined;
    }, `replica ${dp} sees the write made after failover`);
    t.same(r, ['10.2.0.9'], `replica ${dp} has the new record`);
  }
  // Health written once moves the client on both replicas to the same other IP.
  const held = await pick(dnsPorts[0]!);
  await store.setHealth({ ip: held, status: 'down', changedAtMs: Date.now() });
  for (const dp of dnsPorts) {
    const now = await until(async () => {
      const x = await pick(dp);
      return x && x !== held ? x : undefined;
    }, `replica ${dp} drops the down IP`);
    t.not(now, held, `replica ${dp} moved off ${held}`);
  }
  t.equal(await pick(dnsPorts[0]!), await pick(dnsPorts[1]!), 'and they still agree');
  await store.close();
});
