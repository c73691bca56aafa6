// Errors of lib/fs. A filesystem failure is an FsPosixError shaped like Node's own fs errors
// (`code` is the errno name, `errno` its number, plus `syscall` and `path`), so code written for
// fs.promises handles a Volume unchanged and the FUSE adapter answers the right errno. Failures
// that are not POSIX outcomes are one class each with an FS_ code.
import { constants } from 'node:os';
import { ContainerStackError, defineError, type ErrorOptions } from '../common/index.js';

const ERRNO = constants.errno as Record<string, number>;

export class FsPosixError extends ContainerStackError {
  readonly errno: number;
  readonly syscall: string;
  readonly path: string | undefined;
  constructor(code: string, syscall: string, path: string | undefined, detail?: string, options?: ErrorOptions) {
    super('fs', code, `${code}: ${detail ?? code.toLowerCase()}, ${syscall}${path === undefined ? '' : ` '${path}'`}`, options);
    this.errno = -(ERRNO[code] ?? ERRNO.EIO ?? 5);
    this.syscall = syscall;
    this.path = path;
  }
}

/** The named volume does not exist in the cluster map. */
export class FsVolumeNotFoundError extends defineError('fs', 'FS_VOLUME_NOT_FOUND') {}
/** The Volume was closed; no further operations are accepted. */
export class FsClosedError extends defineError('fs', 'FS_CLOSED') {}
/** A bounded table of the client (open files) is full. */
export class FsLimitError extends defineError('fs', 'FS_LIMIT') {}
/** Data could not be written to or read from the block groups (the cause says why). */
export class FsDataError extends defineError('fs', 'FS_DATA') {}

/** POSIX names an operation may fail with; anything else from below becomes EIO. */
const POSIX = new Set(Object.keys(ERRNO));

/**
 * Maps a failure from lib/meta or lib/blockgroup onto what fs.promises would throw: a POSIX code
 * passes through with the syscall and path attached; an unavailable cluster is EIO (an
 * application sees a device error, as with a dead disk), and the original is the cause.
 */
export function toFsError(err: unknown, syscall: string, path?: string): Error {
  if (err instanceof FsPosixError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && POSIX.has(code) && code.startsWith('E')) {
    return new FsPosixError(code, syscall, path, (err as Error).message?.replace(/^(meta|fs): /, ''), { cause: err });
  }
  return new FsPosixError('EIO', syscall, path, `${(err as Error | null)?.message ?? String(err)}`, { cause: err });
}

export function posix(code: string, syscall: string, path?: string, detail?: string): FsPosixError {
  return new FsPosixError(code, syscall, path, detail);
}
