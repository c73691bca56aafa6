// Shared by the FUSE tests: start a mount process and wait until the kernel shows the mount.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeTempDir, tempDir } from '../lib/tmp.js';

/** mountpoint -> the temporary directory startPassthrough made for it (stopMount removes it). */
const bases = new Map<string, string>();

export function isMounted(mountpoint: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mountpoint);
}

export async function startPassthrough(env: NodeJS.ProcessEnv = process.env, engine = 'auto', reader = 'auto', extra = ''): Promise<{ child: ChildProcess; backing: string; mnt: string; out: () => string }> {
  const base = tempDir('fuse-pt-');
  const backing = join(base, 'backing');
  const mnt = join(base, 'mnt');
  bases.set(mnt, base);
  spawnSync('mkdir', ['-p', backing, mnt]);
  spawnSync('chmod', ['755', base, backing, mnt]);
  const fixture = join(dirname(fileURLToPath(import.meta.url)), 'mount.fixture.js');
  const child = spawn(process.execPath, [fixture, backing, mnt, engine, reader, extra], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 300 && !(/mounted/.test(out) && isMounted(mnt)); i++) await new Promise((r) => setTimeout(r, 20));
  if (!isMounted(mnt)) {
    await stopMount(child, mnt);
    throw new Error(`mount did not appear: ${out}`);
  }
  return { child, backing, mnt, out: () => out };
}

export async function stopMount(child: ChildProcess, mnt: string): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await done;
    }
  }
  if (isMounted(mnt)) spawnSync('fusermount', ['-u', '-z', mnt]);
  const base = bases.get(mnt);
  if (base !== undefined) {
    bases.delete(mnt);
    await removeTempDir(base);
  }
}
