// CI run of the deterministic raft simulator over a fixed set of seeds, plus checks that the
// simulator itself replays exactly and really exercises crashes, membership and snapshots.
import t from 'tap';
import { Prng } from '../../lib/common/index.js';
import { MemoryStorage } from '../../lib/raft/index.js';
import { replayCommandFor, SimDisk, SimFailure, Simulation, type SimStats } from './simulator.js';

// The seed sweep is CPU-bound for tens of seconds: tap's default 30s budget is too small.
t.setTimeout(10 * 60_000);

const FIRST_SEED = 1;
const SEED_COUNT = 400;

t.test(`simulator: ${SEED_COUNT} seeds keep raft safe, linearizable and live`, async (t) => {
  const totals: Record<string, number> = {};
  let membershipSeeds = 0;
  let leaseSeeds = 0;
  for (let seed = FIRST_SEED; seed < FIRST_SEED + SEED_COUNT; seed++) {
    const sim = new Simulation({ seed });
    let stats: SimStats | undefined;
    try {
      stats = sim.run();
    } catch (e) {
      const msg = e instanceof SimFailure ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
      t.fail(`${msg}\n  replay: ${replayCommandFor(seed)}`);
      continue;
    }
    t.pass(`seed ${seed}`);
    for (const [k, v] of Object.entries(stats)) totals[k] = (totals[k] ?? 0) + v;
    if (sim.params.membership) membershipSeeds++;
    if (sim.params.leaseRead) leaseSeeds++;
  }
  t.comment(`totals over ${SEED_COUNT} seeds: ${JSON.stringify(totals)}; membership seeds ${membershipSeeds}, lease seeds ${leaseSeeds}`);
  // The faults the simulator claims to inject really happened somewhere in the sweep.
  t.ok((totals.crashes ?? 0) > 0, 'nodes crashed');
  t.ok((totals.partitions ?? 0) > 0, 'network partitioned');
  t.ok((totals.confChanges ?? 0) > 0, 'membership changed');
  t.ok((totals.snapshotsSent ?? 0) > 0, 'lagging nodes caught up by InstallSnapshot');
  t.ok((totals.snapshotResumes ?? 0) > 0, 'broken snapshot streams resumed');
  t.ok((totals.transfers ?? 0) > 0, 'leadership transferred');
  t.ok((totals.opsCompleted ?? 0) > SEED_COUNT * 100, 'clients completed operations');
  t.ok(membershipSeeds > 0 && leaseSeeds > 0, 'membership and lease-read seeds both ran');
});

t.test('simulator: one seed replays exactly', async (t) => {
  for (const seed of [3, 17]) {
    const a: string[] = [];
    const b: string[] = [];
    const sa = new Simulation({ seed, steps: 600, trace: (l) => a.push(l) }).run();
    const sb = new Simulation({ seed, steps: 600, trace: (l) => b.push(l) }).run();
    t.same(sb, sa, `seed ${seed}: same stats`);
    t.same(b, a, `seed ${seed}: same event trace`);
    t.ok(a.length > 0, 'the trace is not empty');
  }
  const other: string[] = [];
  new Simulation({ seed: 4, steps: 600, trace: (l) => other.push(l) }).run();
  const first: string[] = [];
  new Simulation({ seed: 3, steps: 600, trace: (l) => first.push(l) }).run();
  t.not(other.join('\n'), first.join('\n'), 'different seeds differ');
});

t.test('simulated disk: unsynced writes may be lost on crash, synced ones never', async (t) => {
  let lostSome = false;
  let keptSome = false;
  for (let seed = 1; seed <= 20; seed++) {
    const disk = new SimDisk(MemoryStorage.bootstrap([1]));
    const e = (index: number) => ({ term: 1, index, type: 'normal' as const, data: new Uint8Array([index]) });
    disk.write({ kind: 'append', entries: [e(2), e(3)] });
    disk.sync();
    disk.write({ kind: 'append', entries: [e(4)] });
    disk.write({ kind: 'append', entries: [e(5)] });
    disk.crash(new Prng(seed));
    const s = disk.load();
    t.ok(s.lastIndex() >= 3, 'synced entries survive');
    t.ok(s.lastIndex() <= 5);
    // Writes survive as a prefix: 5 never without 4.
    if (s.lastIndex() < 5) lostSome = true;
    if (s.lastIndex() > 3) keptSome = true;
  }
  t.ok(lostSome, 'some crash lost unsynced writes');
  t.ok(keptSome, 'some crash kept a prefix of unsynced writes');
});
