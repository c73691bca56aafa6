// Process helpers for benches: free loopback ports, spawning a daemon and waiting until it
// answers, and killing what was started.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** Ports this process handed out, so two calls never answer the same one (bounded). */
const given = new Set<number>();

/**
 * A loopback port free to listen on now, picked at random below the kernel's ephemeral range
 * (32768-60999 here). A port from listen(0) lies inside that range, and between its close and the
 * daemon's bind any outgoing connection on the machine may take it as its source port, which
 * parallel test files did. Another listener can still take it first: callers that start daemons
 * retry on new ports.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  if (given.size > 10_000) given.clear();
  for (let i = 0; i < 64; i++) {
    const p = 20_000 + Math.floor(Math.random() * 12_000);
    if (given.has(p) || !(await canListen(p, host))) continue;
    given.add(p);
    return p;
  }
  return listenOn(0, host) as Promise<number>;
}

function canListen(port: number, host: string): Promise<boolean> {
  return listenOn(port, host).then(() => true, () => false);
}

function listenOn(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, host, () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

export function startProcess(cmd: string, args: string[], name: string): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  child.once('exit', (code, sig) => {
    if (code !== 0 && sig !== 'SIGKILL' && sig !== 'SIGTERM') console.error(`${name} exited (${code ?? sig}): ${err}`);
  });
  return child;
}

export async function waitUntil(fn: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      if (await fn()) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function killAll(children: ChildProcess[]): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/**
 * SIGKILLs every child still running and resolves once all of them have exited (SIGKILL cannot be
 * ignored, so this cannot hang on a live child; one that never spawned has no pid and is skipped).
 */
export async function killAndWait(children: Iterable<ChildProcess>): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const c of children) {
    if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) continue;
    waits.push(new Promise((r) => c.once('exit', r)));
    c.kill('SIGKILL');
  }
  await Promise.all(waits);
}
