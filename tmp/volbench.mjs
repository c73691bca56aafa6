import { startTestCluster } from '../dist/test/fs/cluster.js';
import { Volume } from '../dist/lib/fs/index.js';
const { cluster, volume } = await startTestCluster();
try {
  const ra = Number(process.argv[2] ?? 4) * 1024 * 1024;
  const v = await Volume.open({ master: cluster.master, volume, readAheadBytes: ra, maxDirtyBytes: Number(process.argv[3] ?? 16) * 1048576, flushBytes: Number(process.argv[4] ?? 4) * 1048576, maxAppendBytes: Number(process.argv[4] ?? 4) * 1048576 });
  const size = 128 * 1024 * 1024;
  const chunk = Buffer.alloc(128 * 1024, 7);
  let t0 = performance.now();
  const h = await v.open('/big', 'w');
  for (let off = 0; off < size; off += chunk.length) await h.write(chunk, 0, chunk.length, off);
  await h.sync();
  await h.close();
  console.log('write MiB/s', (128 / ((performance.now() - t0) / 1000)).toFixed(1));
  t0 = performance.now();
  const r = await v.open('/big', 'r');
  const buf = Buffer.alloc(128 * 1024);
  for (let off = 0; off < size; off += buf.length) await r.read(buf, 0, buf.length, off);
  await r.close();
  console.log('read MiB/s (128K sequential, one at a time)', (128 / ((performance.now() - t0) / 1000)).toFixed(1));
  t0 = performance.now();
  const r2 = await v.open('/big', 'r');
  const b2 = Buffer.alloc(4 * 1024 * 1024);
  for (let off = 0; off < size; off += b2.length) await r2.read(b2, 0, b2.length, off);
  await r2.close();
  console.log('read MiB/s (4M)', (128 / ((performance.now() - t0) / 1000)).toFixed(1));
  t0 = performance.now();
  for (let i = 0; i < 300; i++) { const x = await v.open(`/c${i}`, 'wx'); await x.close(); }
  console.log('creates/s (Volume)', (300 / ((performance.now() - t0) / 1000)).toFixed(0));
  t0 = performance.now();
  for (let i = 0; i < 300; i++) await v.meta.getattr(1);
  console.log('getattr reads/s', (300 / ((performance.now() - t0) / 1000)).toFixed(0));
  await v.close();
} finally { await cluster.stop(); }
