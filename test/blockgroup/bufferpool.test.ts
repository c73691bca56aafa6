// BufferPool: classes, reuse, a cap on idle bytes, and a second release of one buffer ignored
// (pooling it twice would hand one buffer to two readers).
import t from 'tap';
import { BufferPool } from '../../lib/blockgroup/bufferpool.js';

t.test('take and release', async (t) => {
  const p = new BufferPool(1024, 64 * 1024, 128 * 1024);
  const a = p.take(1000);
  t.equal(a.length, 1024, 'rounded up to the class');
  t.equal(p.take(1025).length, 2048);
  p.release(a);
  t.equal(p.idleBytes, 1024);
  t.equal(p.take(10), a, 'reused');
  t.equal(p.idleBytes, 0);
  p.release(a);
  p.release(a);
  t.equal(p.idleBytes, 1024, 'released twice, pooled once');
  const b = p.take(1000);
  const c = p.take(1000);
  t.not(b, c, 'two takes never share a buffer');
  const huge = p.take(100_000);
  t.equal(huge.length, 100_000, 'past the largest class: exact and unpooled');
  p.release(huge);
  t.equal(p.idleBytes, 0);
  p.release(Buffer.alloc(1024));
  t.equal(p.idleBytes, 0, 'a foreign buffer is not pooled');
  const many = Array.from({ length: 4 }, () => p.take(64 * 1024));
  for (const m of many) p.release(m);
  t.equal(p.idleBytes, 128 * 1024, 'idle bytes capped');
});
