// Errors to errnos: shared by both FUSE engines (adapter.ts over fuse-native, kernel/ over
// /dev/fuse). Node-style errors carry their code; anything else becomes EIO and is logged (a
// filesystem must answer every request, or the kernel blocks the caller).
import { constants as osConstants } from 'node:os';
import type { Logger } from '../lib/common/index.js';

const ERRNO = osConstants.errno as Record<string, number>;

/** The negative errno for `err` (what fuse-native's callbacks and the kernel's out header take). */
export function toErrno(err: unknown, log: Logger, op: string): number {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && ERRNO[code] !== undefined) return -(ERRNO[code] as number);
  const errno = (err as { errno?: unknown } | null)?.errno;
  if (typeof errno === 'number' && errno !== 0) return errno < 0 ? errno : -errno;
  log.error({ err, op }, 'fuse: operation failed with a non-POSIX error; answering EIO');
  return -(ERRNO.EIO as number);
}
