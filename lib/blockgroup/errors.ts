// Errors of lib/blockgroup: one class per failure, each with a stable code. On the wire they
// cross as RpcRemoteError with `remoteCode` = the code here; `fromRemote` turns them back.
import { defineError } from '../common/index.js';
import { RpcRemoteError } from '../rpc/index.js';

export class BlockGroupNotFoundError extends defineError('blockgroup', 'BLOCKGROUP_NOT_FOUND') {}
export class BlockGroupExistsError extends defineError('blockgroup', 'BLOCKGROUP_EXISTS') {}
/** The group is read-only (a replica failed, or it filled up); write to another group. */
export class BlockGroupSealedError extends defineError('blockgroup', 'BLOCKGROUP_SEALED') {}
export class BlockGroupNotPrimaryError extends defineError('blockgroup', 'BLOCKGROUP_NOT_PRIMARY') {}
/** A request field is out of range or inconsistent (hostile or buggy caller). */
export class BlockGroupBadRequestError extends defineError('blockgroup', 'BLOCKGROUP_BAD_REQUEST') {}
/** A stored block does not match its checksum. */
export class BlockGroupChecksumError extends defineError('blockgroup', 'BLOCKGROUP_CHECKSUM') {}
/** The range is past what this replica holds durably (it is behind, or the key is bogus). */
export class BlockGroupOutOfRangeError extends defineError('blockgroup', 'BLOCKGROUP_OUT_OF_RANGE') {}
/** A forwarded append does not fit this replica's sequence or length: the chain diverged. */
export class BlockGroupOutOfOrderError extends defineError('blockgroup', 'BLOCKGROUP_OUT_OF_ORDER') {}
/**
 * The disk is full. The code is exactly `ENOSPC` (not BLOCKGROUP_...) on purpose: callers and
 * the FUSE layer map it straight to the errno, as they would a Node fs error.
 */
export class BlockGroupNoSpaceError extends defineError('blockgroup', 'ENOSPC') {}
/** A local disk operation failed for another reason (EIO, EROFS, ...). */
export class BlockGroupIoError extends defineError('blockgroup', 'BLOCKGROUP_IO') {}
/** Every replica of a group failed the read. */
export class BlockGroupUnavailableError extends defineError('blockgroup', 'BLOCKGROUP_UNAVAILABLE') {}
/** The client ran out of groups to write to (no newGroup callback, or it failed). */
export class BlockGroupNoWritableGroupError extends defineError('blockgroup', 'BLOCKGROUP_NO_WRITABLE_GROUP') {}
export class BlockGroupLimitError extends defineError('blockgroup', 'BLOCKGROUP_LIMIT') {}

const BY_CODE: Record<string, new (message: string) => Error> = {
  BLOCKGROUP_NOT_FOUND: BlockGroupNotFoundError,
  BLOCKGROUP_EXISTS: BlockGroupExistsError,
  BLOCKGROUP_SEALED: BlockGroupSealedError,
  BLOCKGROUP_NOT_PRIMARY: BlockGroupNotPrimaryError,
  BLOCKGROUP_BAD_REQUEST: BlockGroupBadRequestError,
  BLOCKGROUP_CHECKSUM: BlockGroupChecksumError,
  BLOCKGROUP_OUT_OF_RANGE: BlockGroupOutOfRangeError,
  BLOCKGROUP_OUT_OF_ORDER: BlockGroupOutOfOrderError,
  ENOSPC: BlockGroupNoSpaceError,
  BLOCKGROUP_IO: BlockGroupIoError,
  BLOCKGROUP_LIMIT: BlockGroupLimitError,
};

/** A datanode's typed error as the local class (message keeps the remote text); else as is. */
export function fromRemote(err: unknown): unknown {
  if (err instanceof RpcRemoteError) {
    const Local = BY_CODE[err.remoteCode];
    if (Local) return new Local(`remote: ${err.remoteMessage.replace(/^blockgroup: /, '')}`);
  }
  return err;
}

/** Maps a Node fs error to our typed error (ENOSPC keeps its code). */
export function fromFsError(err: unknown, what: string): Error {
  const code = (err as { code?: unknown }).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new BlockGroupNoSpaceError(`${what}: no space left on device`, { cause: err });
  return new BlockGroupIoError(`${what}: ${(err as Error).message ?? String(err)}`, { cause: err });
}
