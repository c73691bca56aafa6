// Bench helper process: mounts fuse/'s PassthroughVolume of <backing> at <mountpoint> (our FUSE
// adapter with no ContainerFS behind it) with engine [engine] (default auto: the kernel engine
// as root), prints `mounted <engine>`, unmounts on SIGTERM.
import { loadFuse, mountVolume, resolveEngine, PassthroughVolume, type FuseEngine } from '../../fuse/index.js';

const [backing, mountpoint, engineArg] = process.argv.slice(2) as [string, string, string | undefined];
const engine = resolveEngine((engineArg ?? 'auto') as FuseEngine).engine;
let Fuse;
if (engine === 'libfuse') {
  const loaded = loadFuse();
  if (loaded.kind !== 'ok') throw new Error('bench: system libfuse needed');
  Fuse = loaded.Fuse;
}
const h = await mountVolume(Fuse, new PassthroughVolume(backing), mountpoint, { engine });
console.log(`mounted ${h.engine}`);
process.on('SIGTERM', () =>
  void h.unmount().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error('bench: unmount failed', err);
      process.exit(1);
    },
  ),
);
