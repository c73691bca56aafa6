// Temporary directories for benches and tests: made under os.tmpdir() (so TMPDIR moves them) and
// removed once the processes that used them are dead. Runs that left theirs behind once filled a
// developer's / (a 2 GB bench-fuse-* per bench run, ~200 entries per CI run).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { defineError } from '../../lib/common/errors.js';

/** A mount that would not detach is still under the directory: nothing was removed. */
export class TempDirMountedError extends defineError('tmp', 'TMP_DIR_MOUNTED') {}

/** A fresh directory under os.tmpdir() whose name starts with `prefix`. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Mount points at or under `dir`, deepest first (/proc/mounts, its octal escapes decoded). */
export function mountsUnder(dir: string): string[] {
  const root = resolve(dir);
  let text: string;
  try {
    text = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[1];
    if (field === undefined) continue;
    const p = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === root || p.startsWith(root + sep)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Detaches every mount at or under `dir`, deepest first, lazily (fusermount -u -z; umount -l
 * where fusermount is missing): a lazy detach takes the mount out of the tree at once, even while
 * its FUSE process still runs. Answers the mount points still there.
 */
function detachMountsUnder(dir: string): string[] {
  const mounted = mountsUnder(dir);
  for (const m of mounted) {
    const r = spawnSync('fusermount', ['-u', '-z', m], { stdio: 'ignore' });
    if (r.error !== undefined || r.status !== 0) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  }
  return mounted.length > 0 ? mountsUnder(dir) : [];
}

/**
 * Removes `dir` and everything in it; call it after the processes that used it are dead. A mount
 * still under it (its process was killed before it could unmount) is detached first. If one stays,
 * nothing is removed: rm -r through a live mount would delete the mounted volume's files, or hang
 * on a dead FUSE daemon.
 */
export async function removeTempDir(dir: string): Promise<void> {
  const left = detachMountsUnder(dir);
  if (left.length > 0) throw new TempDirMountedError(`not removing ${dir}: still mounted at ${left.join(', ')}`);
  // Retries: a daemon just killed may still have a file being closed (EBUSY, ENOTEMPTY).
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

/**
 * removeTempDir for a process 'exit' listener (nothing async runs there); it never throws, since
 * the process is ending anyway, and leaves the directory if a mount would not detach.
 */
export function removeTempDirSync(dir: string): void {
  try {
    if (detachMountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
  } catch {
    // best effort on the way out
  }
}

let exitOnSignal = false;

/**
 * A bench script's temporary directory, also removed when the script ends by a thrown error,
 * Ctrl-C or SIGTERM (made to exit, so that 'exit' listeners run): on exit, `kill` (synchronous:
 * SIGKILL what runs in the directory) and then removeTempDirSync. The normal path stops its
 * processes and calls removeTempDir itself; the listener then finds nothing left to do.
 */
export function benchTempDir(prefix: string, kill: () => void): string {
  const dir = tempDir(prefix);
  process.on('exit', () => {
    kill();
    removeTempDirSync(dir);
  });
  if (!exitOnSignal) {
    exitOnSignal = true;
    process.once('SIGINT', () => process.exit(130));
    process.once('SIGTERM', () => process.exit(143));
  }
  return dir;
}
