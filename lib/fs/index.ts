// Public API of containerstack/fs: a ContainerFS volume as an fs.promises-shaped Volume, and the
// bridge that serves it through FUSE.
export { Volume, VolumeFileHandle, VolumeStats, VolumeDirent, parseFlags, PATH_MAX, SYMLOOP_MAX } from './volume.js';
export type { VolumeOptions, VolumeOpenOptions, Owner } from './volume.js';
export { VolumeFuse } from './fusevolume.js';
export { freeExtents } from './file.js';
export { ExtentCache } from './cache.js';
export type { ExtentCacheStats } from './cache.js';
export type { VolumeFuseOptions } from './fusevolume.js';
export { FsPosixError, FsVolumeNotFoundError, FsClosedError, FsLimitError, FsDataError, toFsError } from './errors.js';
