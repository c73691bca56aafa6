// Which replica a read starts at: the same for all reads of one 256 MiB stripe of an extent (a
// sequential reader reads each replica's file sequentially), different stripes spread over
// the chain, and every replica is in the order exactly once (the rest are fallbacks).
import t from 'tap';
import { BlockGroupClient, type ExtentKey } from '../../lib/blockgroup/index.js';

t.test('read order by stripe', async (t) => {
  const replicas = ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3'];
  const c = new BlockGroupClient({ groups: [{ groupId: 7, replicas }] });
  t.teardown(() => c.close());
  const key = (offset: number): ExtentKey => ({ groupId: 7, extentId: 0, offset, length: 1 << 20, crc: 0 });
  const MiB = 1 << 20;
  const firsts = new Set<string>();
  for (let s = 0; s < 6; s++) {
    const inStripe = await Promise.all([0, 5, 255].map((m) => c.readOrder(key(s * 256 * MiB + m * MiB))));
    t.same(inStripe[1], inStripe[0], `stripe ${s}: one order`);
    t.same(inStripe[2], inStripe[0], `stripe ${s}: one order`);
    t.same([...(inStripe[0] as string[])].sort(), replicas, 'every replica once');
    firsts.add((inStripe[0] as string[])[0] as string);
  }
  t.equal(firsts.size, 3, 'stripes start at every replica');
  t.same(await c.readOrder(key(0), 300 * MiB), await c.readOrder(key(300 * MiB)), 'the offset inside the extent counts');
  t.not((await c.readOrder(key(0)))[0], (await c.readOrder(key(300 * MiB)))[0], 'the next stripe starts elsewhere');
});
