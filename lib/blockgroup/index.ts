// Public API of containerstack/blockgroup: append-only, chain-replicated block groups with a
// crc32c per block. DataNode is the server side (`containerfs data` wires it); BlockGroupClient
// appends and reads extents; Heartbeater reports a datanode to the master.
export { DataNode, DATA_PATH_NODE_FLAGS } from './datanode.js';
export type { DataNodeOptions } from './datanode.js';
export { BlockGroupClient } from './client.js';
export type { BlockGroupClientOptions, CreateGroupOptions, ExtentKey, GroupRef, PooledRead } from './client.js';
export { Heartbeater } from './heartbeat.js';
export type { HeartbeaterOptions } from './heartbeat.js';
export { blockGroupService, masterHeartbeatMethod } from './service.js';
export type { HeartbeatMsg, GroupStatus } from './service.js';
export { sealGroup } from './seal.js';
export { crc32c, crc32cCombine, crc32cTs, crc32cNative, crc32cImplementation, useCrc32c } from './crc32c.js';
export { ExtentFile, setDirectReads, setDirectWrites, setDropBehindWrites, writePathBytes } from './extentfile.js';
export { dropFromPageCache, pageCacheDropSupport } from './pagecache.js';
export {
  BlockGroupNotFoundError, BlockGroupExistsError, BlockGroupSealedError, BlockGroupNotPrimaryError, BlockGroupBadRequestError,
  BlockGroupChecksumError, BlockGroupOutOfRangeError, BlockGroupOutOfOrderError, BlockGroupNoSpaceError, BlockGroupIoError,
  BlockGroupUnavailableError, BlockGroupNoWritableGroupError, BlockGroupLimitError, fromRemote,
} from './errors.js';
