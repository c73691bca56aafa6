// Test helper: runs a real single-member etcd (Debian etcd-server) on loopback ports with a
// temporary data dir; restartable on the same ports and data, killed in teardown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { EtcdGateway } from '../../lib/dns/etcd/gateway.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../lib/procs.js';

export { freePort };

/** n distinct free loopback ports (freePort never answers the same port twice). */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort());
  return ports;
}

export class EtcdProcess {
  private child: ChildProcess | undefined;
  readonly dataDir = mkdtempSync(join(tmpdir(), 'cs-etcd-'));
  private log = '';
  private constructor(
    readonly clientPort: number,
    readonly peerPort: number,
    /** With TLS the client URL is https and clients must present a cert signed by `ca`. */
    readonly tls?: EtcdTls,
    readonly extraArgs: string[] = [],
  ) {}

  static async start(tls?: EtcdTls, extraArgs: string[] = []): Promise<EtcdProcess> {
    // Ports freed by the kernel can be handed out again before etcd binds them: retry.
    let lastErr: unknown;
    for (let i = 0; i < 5; i++) {
      const [c, p] = await freePorts(2);
      const e = new EtcdProcess(c!, p!, tls, extraArgs);
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
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.clientPort}`;
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
        ...this.extraArgs,
        ...(this.tls ? ['--cert-file', this.tls.certFile, '--key-file', this.tls.keyFile, '--client-cert-auth', '--trusted-ca-file', this.tls.caFile] : []),
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
        if (this.tls) {
          const gw = new EtcdGateway({
            endpoints: [this.url], timeoutMs: 1000,
            ca: readFileSync(this.tls.caFile), cert: readFileSync(this.tls.clientCertFile), key: readFileSync(this.tls.clientKeyFile),
          });
          try {
            await gw.range('\0', undefined, 1);
            return;
          } finally {
            gw.close();
          }
        }
        const r = await fetch(`${this.url}/v3/kv/range`, { method: 'POST', body: '{"key":"AA=="}' });
        // With auth enabled an anonymous read is refused, which still means etcd is serving.
        if (r.ok || /user name is empty/.test(await r.text())) return;
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

  /** Stops etcd and deletes its data: the next start is a brand-new cluster (revision 1). */
  async wipe(): Promise<void> {
    await this.stopProcess();
    rmSync(this.dataDir, { recursive: true, force: true });
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

export interface EtcdTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

/** A throwaway CA, a server cert for 127.0.0.1 and a client cert (openssl CLI); undefined without openssl. */
export function makeTestPki(dir: string): EtcdTls | undefined {
  const run = (args: string[]): boolean => spawnSync('openssl', args, { stdio: 'ignore' }).status === 0;
  const f = (n: string): string => join(dir, n);
  writeFileSync(f('srv.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  writeFileSync(f('cli.ext'), 'extendedKeyUsage=clientAuth\n');
  const ok =
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=containerstack-test-ca']) &&
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('srv.key'), '-out', f('srv.csr'), '-subj', '/CN=127.0.0.1']) &&
    run(['x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('srv.pem'), '-days', '1', '-extfile', f('srv.ext')]) &&
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('cli.key'), '-out', f('cli.csr'), '-subj', '/CN=client']) &&
    run(['x509', '-req', '-in', f('cli.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('cli.pem'), '-days', '1', '-extfile', f('cli.ext')]);
  return ok ? { caFile: f('ca.pem'), certFile: f('srv.pem'), keyFile: f('srv.key'), clientCertFile: f('cli.pem'), clientKeyFile: f('cli.key') } : undefined;
}
