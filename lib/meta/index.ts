// Public API of containerstack/meta: ContainerFS metadata partitions (inodes, dentries,
// extents, ino allocation, xattrs, orphans, cross-partition intents) and the MetaClient.
export {
  metaDomains, readMeta, partitionInfo, nearlyFull, addExtent, firstExtentEndingAfter, truncateExtents, checkName, isDir, isReg, isLnk,
  META_DOMAIN, ROOT_INO, NAME_MAX, S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK,
  SETATTR_MODE, SETATTR_UID, SETATTR_GID, SETATTR_SIZE, SETATTR_ATIME, SETATTR_MTIME, SETATTR_ATIME_NOW, SETATTR_MTIME_NOW, SETATTR_CTIME, SETATTR_ATIME_ONLY,
  RENAME_NOREPLACE, RENAME_ANCESTORS_CHECKED, NEEDS_RENAME_LOCK, XATTR_CREATE, XATTR_REPLACE, INTENT_TIMEOUT_MS, READ_OPS,
} from './partition.js';
export type { Inode, ExtentKey, Timespec, MetaRequest, MetaResponse, PartitionInfo, Reader } from './partition.js';
export { MetaClient, LocalPartition, RemotePartition, mapError, timespecOf } from './client.js';
export type { PartitionRoute, PartitionBackend, MetaClientOptions, DirEntry, OpenScope } from './client.js';
export { metaService, registerMetaService, stateMachineReader, readOnGroup } from './service.js';
export { crossRename, crossLink, crossCreate, crossUnlink, crossLocalRename, recoverIntents } from './crosspart.js';
export type { CrossContext, Side } from './crosspart.js';
export { MetaPosixError, MetaNoPartitionError, MetaBadRequestError, MetaUnavailableError, MetaLimitError, isPosixCode } from './errors.js';
export type { PosixCode } from './errors.js';
export { MetaNode } from './node.js';
export type { MetaNodeOptions } from './node.js';
