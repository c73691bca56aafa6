// Errors of lib/meta. A namespace failure is a MetaPosixError whose `code` is the POSIX name a
// local filesystem would give ('ENOENT', 'EEXIST', ...) and whose `errno` is its number, so the
// FUSE layer returns it unchanged. Everything else is one class per failure with a META_ code.
import { constants } from 'node:os';
import { ContainerStackError, defineError, type ErrorOptions } from '../common/index.js';

export type PosixCode =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'ENAMETOOLONG' | 'EINVAL' | 'EPERM'
  | 'ENODATA' | 'ERANGE' | 'E2BIG' | 'ENOSPC' | 'ESTALE' | 'EXDEV' | 'EFBIG' | 'EMLINK' | 'EBADF' | 'EDQUOT' | 'EIO' | 'EAGAIN';

const POSIX = new Set<string>(['ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY', 'ENAMETOOLONG', 'EINVAL', 'EPERM', 'ENODATA', 'ERANGE', 'E2BIG', 'ENOSPC', 'ESTALE', 'EXDEV', 'EFBIG', 'EMLINK', 'EBADF', 'EDQUOT', 'EIO', 'EAGAIN']);
export function isPosixCode(c: string): c is PosixCode {
  return POSIX.has(c);
}

/** A namespace operation failed as a local filesystem would: `code` is the errno's name. */
export class MetaPosixError extends ContainerStackError {
  readonly errno: number;
  constructor(
    code: PosixCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super('meta', code, message, options);
    this.errno = (constants.errno as Record<string, number>)[code] ?? 0;
  }
}

/** No partition of the volume owns this ino (the partition map is stale or the ino is bogus). */
export class MetaNoPartitionError extends defineError('meta', 'META_NO_PARTITION') {}
/** A request or stored record could not be decoded. */
export class MetaBadRequestError extends defineError('meta', 'META_BAD_REQUEST') {}
/** The metadata service could not be reached in time. */
export class MetaUnavailableError extends defineError('meta', 'META_UNAVAILABLE') {}
/** A limit of the client (handles, cache) was reached. */
export class MetaLimitError extends defineError('meta', 'META_LIMIT') {}
