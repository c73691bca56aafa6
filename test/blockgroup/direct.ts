// Shared by the O_DIRECT tests (directread, directwrite): what this process holds open O_DIRECT,
// and whether the temp filesystem takes O_DIRECT at all (ext4 and xfs do; some do not).
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const O_DIRECT = 0o40000;

/** Flags of this process's descriptors of `path` that are open O_DIRECT (fdinfo flags are octal). */
export function directFlags(path: string): number[] {
  const out: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== path) continue;
    const m = /flags:\s+([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    const flags = m ? parseInt(m[1] as string, 8) : 0;
    if ((flags & O_DIRECT) !== 0) out.push(flags);
  }
  return out;
}

/** Whether files in a fresh temp directory can be opened O_DIRECT. */
export function tempTakesDirect(): boolean {
  const dir = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'bg-direct-probe-'));
  try {
    closeSync(openSync(join(dir, 'probe'), 'w'));
    closeSync(openSync(join(dir, 'probe'), O_DIRECT));
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
