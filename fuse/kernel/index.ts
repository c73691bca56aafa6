// The kernel engine: a FuseVolume served straight from /dev/fuse (protocol.ts, session.ts),
// mounted with mount(8) (mount.ts). Why it exists and its limits: fuse/README.md.
import { silentLogger } from '../../lib/common/index.js';
import type { FuseVolume, MountHandle, MountOptions } from '../types.js';
import { kernelMount, kernelUnmount, mountedAt, setMountReadAhead } from './mount.js';
import { KernelSession } from './session.js';
import { FdTransport } from './transport.js';

export { KernelSession, type KernelSessionOptions, type Transport } from './session.js';
export { FdTransport, loadNativeReader, type FdTransportOptions } from './transport.js';
export { kernelMount, kernelUnmount, kernelMountSupport, KernelMountError, mountDevice, setMountReadAhead } from './mount.js';
export { NodeTable, ROOT_ID } from './nodes.js';
export * as protocol from './protocol.js';

const PAGE = 4096;

/** Mounts `vol` at `mountpoint` with the kernel engine. */
export async function mountKernel(vol: FuseVolume, mountpoint: string, opts: MountOptions = {}): Promise<MountHandle & { session: KernelSession; transport: FdTransport }> {
  const log = opts.logger ?? silentLogger;
  const maxWrite = Math.min(256 * PAGE, Math.max(PAGE, Math.ceil((opts.maxWriteBytes ?? 1024 * 1024) / PAGE) * PAGE));
  const fd = await kernelMount(mountpoint, {
    fsname: opts.fsname ?? 'containerfs', subtype: 'containerfs', allowOther: opts.allowOther ?? false,
    defaultPermissions: opts.defaultPermissions ?? true, mkdir: true,
  });
  let transport: FdTransport;
  try {
    transport = new FdTransport(fd, { bufferBytes: maxWrite + PAGE, reader: opts.reader ?? 'auto' });
  } catch (err) {
    await kernelUnmount(mountpoint, true).catch(() => undefined);
    throw err;
  }
  if (transport.nativeError) log.info({ reason: transport.nativeError }, 'fuse: native /dev/fuse reader unavailable; reading on the threadpool');
  const session = new KernelSession(vol, transport, {
    attrTimeoutS: opts.attrTimeoutS ?? 1, entryTimeoutS: opts.entryTimeoutS ?? 1, maxWriteBytes: maxWrite,
    ...(opts.dirAttrTimeoutS !== undefined ? { dirAttrTimeoutS: opts.dirAttrTimeoutS } : {}),
    writebackCache: opts.writebackCache ?? false, logger: log, ...(opts.maxInFlight !== undefined ? { maxInFlight: opts.maxInFlight } : {}),
  });
  session.start();
  const readAheadKb = opts.readAheadKb ?? 1024;
  if (readAheadKb > 0) {
    // The kernel sends INIT as soon as the mount exists; its reply sets the read-ahead (only
    // lowering it), so ours goes in after. A kernel that never sends INIT leaves the default.
    let timer: NodeJS.Timeout | undefined;
    const inited = await Promise.race([session.initialized.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5000)))]);
    clearTimeout(timer);
    const r = inited ? setMountReadAhead(mountpoint, readAheadKb) : { ok: false as const, reason: 'no INIT from the kernel within 5s' };
    if (r.ok) log.debug({ device: r.device, readAheadKb }, 'fuse: kernel read-ahead set');
    else log.info({ reason: r.reason, readAheadKb }, 'fuse: kernel read-ahead left at its default');
  }
  let closed: Promise<void> | undefined;
  const finish = (): Promise<void> => {
    closed ??= (async () => {
      transport.close();
      await vol.destroy?.();
    })();
    return closed;
  };
  // Unmounted from outside (umount, fusermount -u): the session ends; free what it held.
  const ended = session.done.then(finish);
  return {
    mountpoint, engine: 'kernel', session, transport, ended,
    opStats: () => session.opStats(),
    unmount: async () => {
      if (mountedAt(mountpoint)) await kernelUnmount(mountpoint);
      await ended;
    },
  };
}
