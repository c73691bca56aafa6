// Shared by the e2e tests: `containerfs mount` as a real process over a test cluster, waiting
// until the kernel shows the mount; teardown stops it and clears the mountpoint.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const containerfsBin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'containerfs.js');

export function isMounted(mountpoint: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mountpoint);
}

export interface Mount {
  child: ChildProcess;
  mnt: string;
  out: () => string;
  stop: () => Promise<void>;
}

const all = new Set<Mount>();

export async function startMount(master: string, volume: string, mnt: string, extra: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<Mount> {
  mkdirSync(mnt, { recursive: true });
  const child = spawn(process.execPath, [containerfsBin, 'mount', volume, mnt, '--master', master, '--admin-listen', '127.0.0.1:0', '--allow-other', '--log-level', 'warn', ...extra], {
    // A test process that dies (crash, timeout kill) takes its mounts with it: the child stops
    // when the stdin pipe this process holds closes (cmd/fs/mount.ts).
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...env, CONTAINERFS_EXIT_WITH_PARENT: '1' },
  });
  let out = '';
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-50_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const m: Mount = { child, mnt, out: () => out, stop: () => stopMount(m) };
  all.add(m);
  for (let i = 0; i < 600 && !(/mounted volume/.test(out) && isMounted(mnt)); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!isMounted(mnt)) {
    await stopMount(m);
    throw new Error(`mount did not appear: ${out}`);
  }
  return m;
}

export async function stopMount(m: Mount): Promise<void> {
  const c = m.child;
  if (c.exitCode === null && c.signalCode === null) {
    const done = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    await Promise.race([done, new Promise((r) => setTimeout(r, 10_000))]);
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await done;
    }
  }
  if (isMounted(m.mnt)) spawnSync('fusermount', ['-u', '-z', m.mnt]);
  all.delete(m);
}

export async function stopAllMounts(): Promise<void> {
  for (const m of [...all]) await stopMount(m);
}

/** Runs a node script as another user (group `gid`, no supplementary groups); answers its stdout parsed as JSON. */
export function runAs(uid: number, script: string, gid = uid): unknown {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid, gid, encoding: 'utf8', timeout: 60_000, cwd: '/' });
  if (r.status !== 0) throw new Error(`script as uid ${uid} failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}
