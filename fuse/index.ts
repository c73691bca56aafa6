// The FUSE layer: mount a FuseVolume with the kernel engine (fuse/kernel: /dev/fuse spoken from
// Node) or through fuse-native (load the binding, with the bundled-libfuse fallback).
export { loadFuse, fuseCallerReader, FuseUnavailableError } from './load.js';
export type { FuseNative, LoadResult, CallerReader } from './load.js';
export { mountVolume, resolveEngine, toErrno } from './adapter.js';
export { mountKernel, kernelMountSupport, KernelMountError, KernelSession, FdTransport, loadNativeReader } from './kernel/index.js';
export type { MountOptions, MountHandle } from './adapter.js';
export { PassthroughVolume } from './passthrough.js';
export type { FuseVolume, FuseStat, FuseStatfs, FuseCaller, FuseTime, FuseEngine } from './types.js';
