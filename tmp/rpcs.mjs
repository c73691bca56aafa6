import { startTestCluster } from '../dist/test/fs/cluster.js';
import { Volume, VolumeFuse } from '../dist/lib/fs/index.js';
import { RemotePartition } from '../dist/lib/meta/index.js';
const counts = new Map();
const wrap = (k) => { const o = RemotePartition.prototype[k]; RemotePartition.prototype[k] = function (req) { counts.set(`${k}:${req.op}`, (counts.get(`${k}:${req.op}`) ?? 0) + 1); return o.call(this, req); }; };
wrap('exec'); wrap('read');
const { cluster, volume } = await startTestCluster();
const show = (label, n) => { console.log(label, JSON.stringify(Object.fromEntries([...counts].map(([k, v]) => [k, +(v / n).toFixed(2)])))); counts.clear(); };
try {
  const v = await Volume.open({ master: cluster.master, volume });
  const f = new VolumeFuse(v);
  const code = (p) => p.then(() => 'ok', (e) => e.code);
  await f.mkdir('/d', 0o755); await f.getattr('/d');
  counts.clear();
  const N = 50;
  for (let i = 0; i < N; i++) {
    await code(f.getattr(`/d/f${i}`)); const fh = await f.create(`/d/f${i}`, 0o644); await f.getattr(`/d/f${i}`); await f.flush('', fh); await f.release('', fh);
  }
  show('create (LOOKUP, CREATE, GETATTR, FLUSH, RELEASE):', N);
  await new Promise((r) => setTimeout(r, 1100));
  for (let i = 0; i < N; i++) { await f.getattr(`/d/f${i}`); }
  show('stat after cache TTL (LOOKUP):', N);
  for (let i = 0; i < N; i++) { await f.getattr(`/d/f${i}`); }
  show('stat within TTL:', N);
  const fh = await f.open('/d/f0', 2);
  show('open existing (OPEN):', 1);
  const buf = Buffer.alloc(128 * 1024, 1);
  for (let i = 0; i < 64; i++) { await code(f.getxattr('/d/f0', 'security.capability')); await f.write('/d/f0', fh, buf, buf.length, i * buf.length); }
  await f.flush('', fh);
  show('8 MiB in 128 KiB writes (GETXATTR+WRITE each), per write:', 64);
  await f.release('', fh);
  await new Promise((r) => setTimeout(r, 1100));
  for (let i = 0; i < N; i++) { await code(f.getattr(`/d/f${i}`)); await f.unlink(`/d/f${i}`); }
  show('unlink (LOOKUP, UNLINK):', N);
  await v.close();
} finally { await cluster.stop(); }
