// Tracked leases (MetaClient openScope/hold/unhold, the partition's orphan sweep): the race the
// witness exists for, step by step. Client A's open has read the inode when B unlinks it, and A
// renews before the open has made the inode held: the partition must keep the inode until a
// renewal of A vouches past the unlink. Also: listings make lease-held handles and drop them,
// expired leases stop blocking, a lease younger than the unlink never blocks, and an exempt
// unlink by the only live client deletes at once.
import t from 'tap';
import { ROOT_INO } from '../../lib/meta/index.js';
import { startMeta, codeOf } from './harness.js';

const h = await startMeta();
t.teardown(() => h.close());
let clock = 1_700_000_000_000;
const now = (): number => clock;
const a = h.client({ now, leaseMs: 30_000 });
const b = h.client({ now, leaseMs: 30_000 });
const renewBoth = async (): Promise<void> => {
  await a.renewLease();
  await b.renewLease();
};

t.test('an open in progress across the unlink and a renewal keeps the inode', async (t) => {
  const f = await b.create(ROOT_INO, 'race', 0o644);
  // B registers its lease like any opener (a scope that ends with nothing held).
  await b.openScope((s) => b.getattr(ROOT_INO, undefined, s));
  let resume: () => void = () => undefined;
  const gate = new Promise<void>((r) => (resume = r));
  const opening = a.openScope(async (s) => {
    const l = await a.lookup(ROOT_INO, 'race', s); // answered before the unlink
    await gate;
    a.hold(l.ino);
    return l.ino;
  });
  await new Promise((r) => setTimeout(r, 50)); // the lookup has been answered
  await b.unlink(ROOT_INO, 'race', f.ino);
  // A renews twice while its open is still in progress: the witness stays below the unlink.
  await renewBoth();
  await renewBoth();
  t.equal((await b.getattr(f.ino)).nlink, 0, 'kept: A may be opening it');
  resume();
  const ino = await opening;
  await renewBoth();
  await renewBoth();
  t.equal((await b.getattr(ino)).nlink, 0, 'kept: A lists it (a lease-held handle)');
  t.same(a.heldInos, [ino]);
  a.unhold(ino); // the last close: A renews at once, listing nothing
  for (let i = 0; i < 50 && (await codeOf(b.getattr(ino))) !== 'ENOENT'; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(await codeOf(b.getattr(ino)), 'ENOENT', 'deleted once A let go');
});

t.test('a lease younger than the unlink never blocks; an expired one stops blocking', async (t) => {
  const f = await b.create(ROOT_INO, 'young', 0o644);
  await b.unlink(ROOT_INO, 'young'); // no expectIno: B's own lease blocks until it vouches
  t.equal((await b.getattr(f.ino)).nlink, 0);
  const c = h.client({ now, leaseMs: 30_000 });
  await c.openScope((s) => c.getattr(ROOT_INO, undefined, s)); // registered after the unlink
  await renewBoth();
  await renewBoth();
  t.equal(await codeOf(b.getattr(f.ino)), 'ENOENT', 'C, registered after the unlink, did not block it');

  // D registers, then stops renewing (a crash): it blocks until its lease runs out.
  const d = h.client({ now, leaseMs: 5_000 });
  await d.openScope((s) => d.getattr(ROOT_INO, undefined, s));
  await d.close().catch(() => undefined);
  // close() ended D's lease; register a fresh one that will simply expire.
  const e = h.client({ now, leaseMs: 5_000 });
  await e.openScope((s) => e.getattr(ROOT_INO, undefined, s));
  const g = await b.create(ROOT_INO, 'crashed', 0o644);
  await b.unlink(ROOT_INO, 'crashed', g.ino);
  await renewBoth();
  await renewBoth();
  await c.renewLease();
  await c.renewLease();
  t.equal((await b.getattr(g.ino)).nlink, 0, "kept while E's lease is live");
  clock += 6_000;
  await b.reclaim(clock);
  t.equal(await codeOf(b.getattr(g.ino)), 'ENOENT', "reclaimed once E's lease expired");
  await c.close();
});

t.test('an exempt unlink by the only live client deletes in the same entry', async (t) => {
  await a.close();
  const f = await b.create(ROOT_INO, 'alone', 0o644);
  await b.unlink(ROOT_INO, 'alone', f.ino);
  t.equal(await codeOf(b.getattr(f.ino)), 'ENOENT');
  // Held by B itself: the exemption does not apply.
  const g = await b.create(ROOT_INO, 'mine', 0o644);
  b.hold(g.ino);
  await b.unlink(ROOT_INO, 'mine', g.ino);
  await b.renewLease();
  await b.renewLease();
  t.equal((await b.getattr(g.ino)).nlink, 0, 'kept while B holds it');
  b.unhold(g.ino);
  for (let i = 0; i < 50 && (await codeOf(b.getattr(g.ino))) !== 'ENOENT'; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(await codeOf(b.getattr(g.ino)), 'ENOENT');
  await b.close();
});
