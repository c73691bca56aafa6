// Shared by tests that start real processes: a free loopback port; killing children and waiting
// until they are gone (before their data directories are removed).
import { readFileSync } from 'node:fs';

export { freePort, killAndWait } from '../../bench/lib/procs.js';

/** Whether a process with this pid exists and its command line contains `cmd` (pids are reused). */
export function isAlive(pid: number, cmd?: string): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (cmd === undefined) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(cmd);
  } catch {
    return false;
  }
}

/** The daemons' pids in what `containerstack up` printed (its table has `(pid N)` per daemon). */
export const upDaemonPids = (out: string): number[] => [...out.matchAll(/pid (\d+)\)/g)].map((m) => Number(m[1]));

/**
 * Waits until processes that are not this process's children (so no 'exit' event comes) are gone:
 * up's daemons stop by themselves once up dies. After `graceMs` the ones left get SIGKILL; the
 * wait is bounded either way. Only a pid whose command line still contains `cmd` counts: pid_max
 * is small here, and a pid seen earlier may belong to someone else's process by now.
 */
export async function awaitGone(pids: number[], cmd: string, graceMs = 10_000): Promise<void> {
  const live = (): number[] => pids.filter((p) => isAlive(p, cmd));
  const wait = async (ms: number): Promise<void> => {
    for (let waited = 0; waited < ms && live().length > 0; waited += 25) await new Promise((r) => setTimeout(r, 25));
  };
  await wait(graceMs);
  for (const pid of live()) process.kill(pid, 'SIGKILL');
  await wait(5_000);
}
