// Bench helper process: mounts fuse/'s PassthroughVolume of <backing> at <mountpoint> (our FUSE
// adapter with no ContainerFS behind it), prints `mounted`, unmounts on SIGTERM.
import { loadFuse, mountVolume, PassthroughVolume } from '../../fuse/index.js';

const [backing, mountpoint] = process.argv.slice(2) as [string, string];
const loaded = loadFuse();
if (loaded.kind !== 'ok') throw new Error('bench: system libfuse needed');
const h = await mountVolume(loaded.Fuse, new PassthroughVolume(backing), mountpoint, {});
console.log('mounted');
process.on('SIGTERM', () => void h.unmount().then(() => process.exit(0), () => process.exit(1)));
