// The FUSE layer: load the binding (with the bundled-libfuse fallback), mount a FuseVolume.
export { loadFuse, FuseUnavailableError } from './load.js';
export type { FuseNative, LoadResult } from './load.js';
export { mountVolume, toErrno } from './adapter.js';
export type { MountOptions, MountHandle } from './adapter.js';
export { PassthroughVolume } from './passthrough.js';
export type { FuseVolume, FuseStat, FuseStatfs } from './types.js';
