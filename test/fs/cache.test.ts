// The client's data cache against a real cluster: a file just written is read back from
// memory, an overwrite by another client is seen after a reopen (new bytes are new addresses),
// and with every datanode killed (SIGKILL) cached files still read byte for byte while uncached
// ones fail: proof that the bytes come from the cache, and only those it has.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { startVolumeCluster } from './cluster.js';

const MB = 1024 * 1024;
const { cluster, open } = await startVolumeCluster((fn) => t.teardown(fn));

t.test('cacheWrites false: a write fills nothing, the first read fills the cache', async (t) => {
  const c = await open({ readCacheBytes: 64 * MB, cacheWrites: false });
  const data = randomBytes(2 * MB + 99);
  await c.writeFile('/nowrite', data);
  t.equal(c.dataCacheStats!.blocks, 0, 'nothing cached by the write');
  t.ok(((await c.readFile('/nowrite')) as Buffer).equals(data));
  const afterFirst = c.dataCacheStats!;
  t.ok(afterFirst.misses > 0 && afterFirst.blocks > 0, 'the first read missed and filled');
  t.ok(((await c.readFile('/nowrite')) as Buffer).equals(data));
  t.ok(c.dataCacheStats!.hits > afterFirst.hits, 'the second read hit');
});

t.test('written bytes are read from the cache; an overwrite elsewhere is seen after reopen', async (t) => {
  const a = await open({ readCacheBytes: 64 * MB });
  const b = await open({ readCacheBytes: 0 });
  const one = randomBytes(6 * MB + 12345);
  await a.writeFile('/big', one);
  const before = a.dataCacheStats!;
  t.ok(((await a.readFile('/big')) as Buffer).equals(one), 'read back right after the write');
  const after = a.dataCacheStats!;
  t.ok(after.hits > before.hits, `served from the cache (${after.hits - before.hits} hits)`);
  t.equal(after.misses, before.misses, 'no miss: every byte was written by this client');

  // Another client (no cache) overwrites a range in the middle.
  const patch = randomBytes(MB);
  const h = await b.open('/big', 'r+');
  await h.write(patch, 0, patch.length, 2 * MB + 7);
  await h.close();
  patch.copy(one, 2 * MB + 7);
  t.ok(((await a.readFile('/big')) as Buffer).equals(one), 'the reopen sees the other client\'s bytes');
  t.equal(b.dataCacheStats, undefined, 'a client with readCacheBytes 0 has no cache');

  // A file this client only read (written by b) is cached by the read.
  const two = randomBytes(3 * MB);
  await b.writeFile('/other', two);
  t.ok(((await a.readFile('/other')) as Buffer).equals(two));
  const three = randomBytes(2 * MB);
  await b.writeFile('/never-read', three);

  for (const n of cluster.nodes.filter((x) => x.kind === 'data')) await cluster.kill(n);
  t.ok(((await a.readFile('/big')) as Buffer).equals(one), 'with every datanode dead: the written-then-overwritten file, from the cache');
  t.ok(((await a.readFile('/other')) as Buffer).equals(two), 'with every datanode dead: the file read once, from the cache');
  await t.rejects(a.readFile('/never-read'), 'a file never cached needs a datanode');
});
