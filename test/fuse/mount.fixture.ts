// A FUSE mount process for tests: mounts a PassthroughVolume of <backing> at <mountpoint>,
// prints `mounted <libfuse>`, unmounts on SIGTERM. Re-executes itself when the bundled libfuse
// must be used (see fuse/load.ts).
import { spawn } from 'node:child_process';
import { loadFuse, mountVolume, PassthroughVolume } from '../../fuse/index.js';

const [backing, mountpoint] = process.argv.slice(2) as [string, string];
const loaded = loadFuse();
if (loaded.kind === 'reexec') {
  const child = spawn(process.execPath, process.argv.slice(1), { env: loaded.env, stdio: 'inherit' });
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code) => process.exit(code ?? 1));
} else {
  const handle = await mountVolume(loaded.Fuse, new PassthroughVolume(backing), mountpoint, { allowOther: true, attrTimeoutS: 0, entryTimeoutS: 0 });
  process.stdout.write(`mounted ${loaded.libfuse} binding ${loaded.binding} pid ${process.pid}\n`);
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
