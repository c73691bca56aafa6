// Temporary directories for benches and tests: made under os.tmpdir() (so TMPDIR moves them) and
// removed once the processes that used them are dead. Runs that left theirs behind once filled a
// developer's / (a 2 GB bench-fuse-* per bench run, ~200 entries per CI run).
import { mkdtempSync, readFileSync } from 'node:fs';
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
 * Removes `dir` and everything in it; call it after the processes that used it are dead. A mount
 * still under it (its process was killed before it could unmount) is detached lazily first, which
 * takes it out of the tree at once. If one stays, nothing is removed: rm -r through a live mount
 * would delete the mounted volume's files, or hang on a dead FUSE daemon.
 */
export async function removeTempDir(dir: string): Promise<void> {
  const mounted = mountsUnder(dir);
  if (mounted.length > 0) {
    // Imported only here: cmd/fs/mount.js pulls in the whole client stack.
    const { fusermountU } = await import('../../cmd/fs/mount.js');
    for (const m of mounted) fusermountU(m, true);
    const left = mountsUnder(dir);
    if (left.length > 0) throw new TempDirMountedError(`not removing ${dir}: still mounted at ${left.join(', ')}`);
  }
  // Retries: a daemon just killed may still have a file being closed (EBUSY, ENOTEMPTY).
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}

/**
 * Runs `fn` with a fresh temporary directory and removes it afterwards, also when `fn` throws;
 * `fn` must have stopped whatever it started in the directory before it returns.
 */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = tempDir(prefix);
  try {
    return await fn(dir);
  } finally {
    await removeTempDir(dir);
  }
}
