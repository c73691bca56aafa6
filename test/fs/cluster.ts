// Shared by the lib/fs and e2e tests: a real cluster of `containerfs` processes on loopback (one
// master, three metanodes, three datanodes: every volume has 3 replicas of its metadata and of
// its block groups), on free ports kept across restarts. Every process is killed in teardown,
// then the cluster's temporary directory is removed.
import { LocalCluster, type LocalClusterOptions } from '../../cmd/fs/mount.js';
import { Volume } from '../../lib/fs/index.js';
import { freePort } from '../lib/procs.js';
import { removeTempDir, tempDir } from '../lib/tmp.js';

export { freePort };

const addr = async (): Promise<{ address: string; admin: string }> => ({ address: `127.0.0.1:${await freePort()}`, admin: `127.0.0.1:${await freePort()}` });

type Opts = { metas?: number; datas?: number; volume?: string };

/**
 * A LocalCluster whose data directory is a temporary one of its own: stop() removes it once every
 * process (and mount) it started is gone. A test cluster holds up to 140 MB; `containerstack up`
 * keeps its LocalCluster's data, so the removal lives here and not in LocalCluster.
 */
class TestCluster extends LocalCluster {
  constructor(o: LocalClusterOptions, private readonly tmp: string) {
    super(o);
  }

  override async stop(): Promise<void> {
    await super.stop();
    await removeTempDir(this.tmp);
  }
}

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
  const dir = tempDir('cfs-cluster-');
  try {
    const metas = [];
    for (let i = 0; i < (opts.metas ?? 3); i++) metas.push(await addr());
    const datas = [];
    for (let i = 0; i < (opts.datas ?? 3); i++) datas.push(await addr());
    const cluster = new TestCluster({ dataDir: dir, master: await addr(), metas, datas, fast: true, logLevel: 'warn' }, dir);
    try {
      await cluster.start();
      const volume = opts.volume ?? 'v1';
      await cluster.ensureVolume(volume, Math.min(3, opts.metas ?? 3, opts.datas ?? 3));
      return { cluster, dir, volume };
    } catch (err) {
      for (const n of cluster.nodes) await cluster.kill(n);
      throw err;
    }
  } catch (err) {
    // A failed attempt (the caller retries on new ports) leaves nothing behind: its processes
    // are dead by now.
    await removeTempDir(dir);
    throw err;
  }
}

/**
 * A test cluster and a way to open Volume clients on its volume; `teardown` (tap's t.teardown)
 * closes every client opened, then stops the cluster.
 */
export async function startVolumeCluster(teardown: (fn: () => Promise<void>) => void): Promise<{ cluster: LocalCluster; volume: string; open: (o?: Record<string, unknown>) => Promise<Volume>; vols: readonly Volume[] }> {
  const { cluster, volume } = await startTestCluster();
  const vols: Volume[] = [];
  const open = async (o: Record<string, unknown> = {}): Promise<Volume> => {
    const v = await Volume.open({ master: cluster.master, volume, ...o });
    vols.push(v);
    return v;
  };
  teardown(async () => {
    for (const v of vols) await v.close().catch(() => undefined);
    await cluster.stop();
  });
  return { cluster, volume, open, vols };
}
