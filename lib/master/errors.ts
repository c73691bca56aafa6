// Errors of lib/master: one class per failure with a stable code. The master's domain command
// fails with POSIX-like codes (ENOENT, EEXIST, ENOSPC, EINVAL) inside apply; the client turns
// them into these.
import { defineError } from '../common/index.js';

export class MasterNotFoundError extends defineError('master', 'MASTER_NOT_FOUND') {}
export class MasterExistsError extends defineError('master', 'MASTER_EXISTS') {}
/** Not enough live nodes (or ids) to place what was asked. */
export class MasterNoCapacityError extends defineError('master', 'MASTER_NO_CAPACITY') {}
export class MasterBadRequestError extends defineError('master', 'MASTER_BAD_REQUEST') {}
/** No master answered as leader in time. */
export class MasterUnavailableError extends defineError('master', 'MASTER_UNAVAILABLE') {}
/** Creating a block group's replicas on its datanodes failed; the group was sealed. */
export class MasterPlacementError extends defineError('master', 'MASTER_PLACEMENT_FAILED') {}
