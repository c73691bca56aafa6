// Test helper: runs a real single-member etcd (Debian etcd-server) on loopback ports with a
// temporary data dir; restartable on the same ports and data, killed in teardown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** n distinct free loopback ports (all held open at once so they differ). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<import('node:net').Server>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export class EtcdProcess {
  private child: ChildProcess | undefined;
  readonly dataDir = mkdtempSync(join(tmpdir(), 'cs-etcd-'));
  private log = '';
  private constructor(
    readonly clientPort: number,
    readonly peerPort: number,
  ) {}

  static async start(): Promise<EtcdProcess> {
    // Ports freed by the kernel can be handed out again before etcd binds them: retry.
    let lastErr: unknown;
    for (let i = 0; i < 5; i++) {
      const [c, p] = await freePorts(2);
      const e = new EtcdProcess(c!, p!);
      try {
        await e.startProcess();
        return e;
      } catch (err) {
        lastErr = err;
        await e.destroy();
      }
    }
    throw lastErr;
  }

  get url(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  async startProcess(): Promise<void> {
    const peer = `http://127.0.0.1:${this.peerPort}`;
    this.child = spawn(
      'etcd',
      [
        '--name', 'cs', '--data-dir', this.dataDir,
        '--listen-client-urls', this.url, '--advertise-client-urls', this.url,
        '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `cs=${peer}`, '--log-level', 'error',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (c: Buffer): void => {
      this.log = (this.log + c.toString()).slice(-20_000);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    // Ready when the gateway answers a range.
    for (let i = 0; i < 200; i++) {
      if (this.child.exitCode !== null) throw new Error(`etcd exited: ${this.log}`);
      try {
        const r = await fetch(`${this.url}/v3/kv/range`, { method: 'POST', body: '{"key":"AA=="}' });
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`etcd did not become ready: ${this.log}`);
  }

  async stopProcess(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
    this.child = undefined;
  }

  async destroy(): Promise<void> {
    await this.stopProcess();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Whether the etcd binary is installed (apt-get install etcd-server). */
export function etcdAvailable(): boolean {
  return spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
}
