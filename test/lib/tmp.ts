// Temporary directories for tests (the helpers live in bench/lib/tmp.ts, shared with benches).
import { tempDir, removeTempDir } from '../../bench/lib/tmp.js';

export { tempDir, removeTempDir, TempDirMountedError } from '../../bench/lib/tmp.js';

/**
 * A fresh temporary directory removed in `t`'s teardown. tap runs teardowns last registered
 * first, so make the directory before registering the teardown that stops what runs in it: the
 * directory then goes after its processes, also when the test fails.
 */
export function tempDirFor(t: { teardown(fn: () => unknown): void }, prefix: string): string {
  const dir = tempDir(prefix);
  t.teardown(() => removeTempDir(dir));
  return dir;
}
