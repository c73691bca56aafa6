// Shared by the lib/fs and e2e tests: a real cluster of `containerfs` processes on loopback (one
// master, three metanodes, three datanodes: every volume has 3 replicas of its metadata and of
// its block groups), on free ports kept across restarts. Every process is killed in teardown.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { LocalCluster } from '../../cmd/fs/mount.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const addr = async (): Promise<{ address: string; admin: string }> => ({ address: `127.0.0.1:${await freePort()}`, admin: `127.0.0.1:${await freePort()}` });

type Opts = { metas?: number; datas?: number; volume?: string };

/**
 * A free port found here can be taken by another process before the daemon binds it (tests run
 * in parallel): a start that fails is retried on new ports, up to three times, and the last
 * failure is thrown.
 */
export async function startTestCluster(opts: Opts = {}): Promise<{ cluster: LocalCluster; dir: string; volume: string }> {
  let last: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(opts);
    } catch (err) {
      last = err;
      console.error(`# test cluster start failed (attempt ${attempt + 1}): ${(err as Error).message.slice(0, 500)}`);
    }
  }
  throw last;
}

async function startOnce(opts: Opts): Promise<{ cluster: LocalCluster; dir: string; volume: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'cfs-cluster-'));
  const metas = [];
  for (let i = 0; i < (opts.metas ?? 3); i++) metas.push(await addr());
  const datas = [];
  for (let i = 0; i < (opts.datas ?? 3); i++) datas.push(await addr());
  const cluster = new LocalCluster({ dataDir: dir, master: await addr(), metas, datas, fast: true, logLevel: 'warn' });
  try {
    await cluster.start();
    const volume = opts.volume ?? 'v1';
    await cluster.ensureVolume(volume, Math.min(3, opts.metas ?? 3, opts.datas ?? 3));
    return { cluster, dir, volume };
  } catch (err) {
    for (const n of cluster.nodes) await cluster.kill(n);
    throw err;
  }
}
