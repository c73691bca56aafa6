// The FUSE layer: load the binding (with the bundled-libfuse fallback), mount a FuseVolume.
export { loadFuse, fuseCallerReader, FuseUnavailableError } from './load.js';
export type { FuseNative, LoadResult, CallerReader } from './load.js';
export { mountVolume, toErrno } from './adapter.js';
export type { MountOptions, MountHandle } from './adapter.js';
export { PassthroughVolume } from './passthrough.js';
export type { FuseVolume, FuseStat, FuseStatfs, FuseCaller, FuseTime } from './types.js';
