// Shared by the blockgroup tests: real `containerfs data` processes on loopback, each with its
// own data directory, started, SIGKILLed and restarted by the tests; every process started here
// is killed in teardown.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { freePort } from '../lib/procs.js';

export const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerfs.js');

export { freePort };

export interface Node {
  port: number;
  adminPort: number;
  address: string;
  dir: string;
  child?: ChildProcess;
  out: string;
  extraArgs: string[];
  /** Set once it has listened: from then on its address is known to peers and stays. */
  started?: boolean;
}

const all = new Set<Node>();
const ownDirs = new Set<string>();
// A test file that ends without its teardown (a timeout, an uncaught error) must not leave
// datanodes running: kill them on the way out, synchronously.
process.on('exit', () => {
  for (const n of all) if (n.child && n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
});

export async function makeNode(extraArgs: string[] = [], dir?: string): Promise<Node> {
  const port = await freePort();
  const adminPort = await freePort();
  const own = dir === undefined ? mkdtempSync(join(tmpdir(), 'bg-node-')) : undefined;
  if (own) ownDirs.add(own);
  const n: Node = { port, adminPort, address: `127.0.0.1:${port}`, dir: dir ?? (own as string), out: '', extraArgs };
  all.add(n);
  return n;
}

/**
 * Starts the node's process and waits until it is ready. A port picked free can be taken by
 * another process before the daemon binds it (test files run in parallel): a node that never
 * listened yet gets new ports and another try, up to three.
 */
export async function start(n: Node): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await startOnce(n);
      n.started = true;
      return;
    } catch (err) {
      if (n.started || attempt >= 3 || !/EADDRINUSE/.test((err as Error).message)) throw err;
      n.port = await freePort();
      n.adminPort = await freePort();
      n.address = `127.0.0.1:${n.port}`;
    }
  }
}

async function startOnce(n: Node): Promise<void> {
  const args = [bin, 'data', '--listen', n.address, '--data-dir', n.dir, '--admin-listen', `127.0.0.1:${n.adminPort}`, '--log-level', 'warn', '--recovery-interval', '200ms', ...n.extraArgs];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  n.child = child;
  n.out = '';
  const keep = (d: Buffer): void => {
    n.out = (n.out + d.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  // Ready when /ready answers.
  const until = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`datanode exited early (${child.exitCode}): ${n.out}`);
    try {
      const r = await fetch(`http://127.0.0.1:${n.adminPort}/ready`);
      if (r.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`datanode did not become ready: ${n.out}`);
    await sleep(50);
  }
}

export function kill(n: Node, sig: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
  const c = n.child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve(c?.exitCode ?? null);
  const done = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
  c.kill(sig);
  return done;
}

/** Kills every node this file started and removes the data directories it made. */
export async function killAll(): Promise<void> {
  await Promise.all([...all].map((n) => kill(n, 'SIGKILL')));
  for (const d of ownDirs) rmSync(d, { recursive: true, force: true });
  ownDirs.clear();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls until fn answers true (bounded). */
export async function eventually(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/** A payload whose bytes name its writer and sequence, so interleaving is detectable. */
export function payload(writer: number, seq: number, size: number): Buffer {
  const b = randomBytes(size);
  const tag = Buffer.from(`w${writer}s${seq}:`);
  for (let i = 0; i + tag.length <= size; i += 64) tag.copy(b, i);
  return b;
}

let nextGroup = 1 + (process.pid % 1000) * 1000;
export function groupId(): number {
  return nextGroup++;
}
