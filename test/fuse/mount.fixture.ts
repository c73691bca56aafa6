// A FUSE mount process for tests: mounts a PassthroughVolume of <backing> at <mountpoint> with
// engine [engine] (auto|kernel|libfuse; default auto) and, for the kernel engine, /dev/fuse
// reader [reader] (auto|poll|threads|threadpool) and [writeback] (the kernel's writeback cache); prints `mounted ...`, unmounts on SIGTERM. With
// fuse-native it re-executes itself when the bundled libfuse must be used (see fuse/load.ts).
import { spawn } from 'node:child_process';
import { loadFuse, mountVolume, resolveEngine, PassthroughVolume, type FuseEngine, type MountHandle } from '../../fuse/index.js';

const [backing, mountpoint, engineArg, readerArg, extra] = process.argv.slice(2) as [string, string, string | undefined, string | undefined, string | undefined];
const engine = resolveEngine((engineArg ?? 'auto') as FuseEngine).engine;
const opts = { allowOther: true, attrTimeoutS: 0, entryTimeoutS: 0, engine, reader: (readerArg ?? 'auto') as 'auto' | 'poll' | 'threads' | 'threadpool', writebackCache: extra === 'writeback' };

function serve(handle: MountHandle): void {
  process.on('SIGTERM', () => {
    handle.unmount().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error('unmount failed', err);
        process.exit(1);
      },
    );
  });
}

if (engine === 'kernel') {
  const handle = (await mountVolume(undefined, new PassthroughVolume(backing), mountpoint, opts)) as MountHandle & { transport?: { kind: string } };
  process.stdout.write(`mounted kernel engine reader ${handle.transport?.kind ?? '?'} pid ${process.pid}\n`);
  serve(handle);
} else {
  const loaded = loadFuse();
  if (loaded.kind === 'reexec') {
    const child = spawn(process.execPath, process.argv.slice(1), { env: loaded.env, stdio: 'inherit' });
    process.on('SIGTERM', () => child.kill('SIGTERM'));
    child.on('exit', (code) => process.exit(code ?? 1));
  } else {
    const handle = await mountVolume(loaded.Fuse, new PassthroughVolume(backing), mountpoint, opts);
    process.stdout.write(`mounted ${loaded.libfuse} binding ${loaded.binding} pid ${process.pid}\n`);
    serve(handle);
  }
}
