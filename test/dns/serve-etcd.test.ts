// Two `containerdns serve` replicas on one real etcd (the shared live store): every client gets
// the same IP from both, a single health write moves a client the same way on both, and a
// restarted replica answers as before. One replica uses the native batched UDP path and the
// other Node dgram, so this also shows the two I/O paths hash clients alike.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { EtcdDnsStore } from '../../lib/dns/etcd/store.js';
import { rendezvousOrder } from '../../lib/dns/picker.js';
import { EtcdProcess, etcdAvailable } from './etcd-helpers.js';
import { digShort, freePort, sleep } from './helpers.js';

// Real processes start slowly on a loaded machine; the runner's own per-file limit still applies.
t.setTimeout(300_000);

const root = new URL('../../..', import.meta.url).pathname;
const bin = join(root, 'dist/cmd/containerdns.js');
const IPS = ['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.4'];
const NAME = 'api.default.svc.cluster.local';
const clients = Array.from({ length: 10 }, (_, i) => `127.0.0.${60 + i}`);
const skip = etcdAvailable() ? false : 'etcd not installed (apt-get install etcd-server)';

async function startReplica(etcdUrl: string, udpIo: string, port?: number): Promise<{ proc: ChildProcess; port: number; stop: () => Promise<void> }> {
  const p = port ?? (await freePort());
  const admin = await freePort();
  const proc = spawn(process.execPath, [bin, 'serve', '--listen', `127.0.0.1:${p}`, '--store', 'etcd', '--etcd-endpoints', etcdUrl, '--workers', '2',
    '--admin', `127.0.0.1:${admin}`, '--no-forward', '--rate-limit', '0', '--udp-io', udpIo, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  for (let i = 0; i < 150; i++) {
    if (await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.ok, () => false)) break;
    if (proc.exitCode !== null) break;
    await sleep(100);
  }
  return {
    proc, port: p,
    stop: async () => {
      proc.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000).then(() => proc.kill('SIGKILL'))]);
    },
  };
}

async function answers(port: number): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const c of clients) m.set(c, (await digShort(port, ['-b', c, NAME, 'A'])).join(','));
  return m;
}

async function until(port: number, client: string, pred: (ip: string) => boolean): Promise<string> {
  let ip = '';
  for (let i = 0; i < 100; i++) {
    ip = (await digShort(port, ['-b', client, NAME, 'A'])).join(',');
    if (pred(ip)) break;
    await sleep(100);
  }
  return ip;
}

t.test('replicas on one etcd agree per client, across a health change and a restart', { skip }, async (t) => {
  const etcd = await EtcdProcess.start();
  const writer = new EtcdDnsStore({ endpoints: [etcd.url] });
  t.teardown(async () => {
    await writer.close();
    await etcd.destroy();
  });
  for (const [i, ip] of IPS.entries()) await writer.put({ id: `ip${i}`, name: NAME, type: 'A', value: ip });
  const a = await startReplica(etcd.url, 'native');
  const b = await startReplica(etcd.url, 'node');
  t.teardown(async () => {
    await a.stop();
    await b.stop();
  });
  const fromA = await answers(a.port);
  t.same(await answers(b.port), fromA, 'both replicas give every client the same IP');
  for (const [c, ip] of fromA) t.equal(ip, rendezvousOrder(c, IPS)[0], `${c}: first in its hash order`);

  const c0 = clients[0]!;
  const held = fromA.get(c0)!;
  await writer.setHealth({ ip: held, status: 'down', changedAtMs: Date.now(), reporter: 'test' });
  const movedA = await until(a.port, c0, (ip) => ip !== held);
  const movedB = await until(b.port, c0, (ip) => ip !== held);
  t.not(movedA, held, 'moved off the IP marked down in etcd');
  t.equal(movedA, movedB, 'both replicas moved it to the same IP');
  t.equal(movedA, rendezvousOrder(c0, IPS).filter((ip) => ip !== held)[0], 'the next in its hash order');
  const afterA = await answers(a.port);
  t.same(await answers(b.port), afterA);

  await a.stop();
  const a2 = await startReplica(etcd.url, 'native', a.port);
  t.teardown(() => a2.stop());
  t.same(await answers(a2.port), afterA, 'a restarted replica answers every client as before');
});
