// RaftHost: real sockets between hosts in one process. Election, replication to every
// replica, redirects, linearizable reads, leader failure, membership change with snapshot
// catch-up, and many groups coalesced over one connection per peer.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { containerstack } from '../../proto/gen/table.js';
import { NotLeaderError, CommandFailedError, LearnerNotReadyError } from '../../lib/table/errors.js';
import { DomainError } from '../../lib/table/errors.js';
import { addGroupEverywhere, leaderOf, startCluster, stopNode, waitFor, type TestNode } from './cluster.js';

const pb = containerstack.table;
const b = (s: string): Buffer => Buffer.from(s);
const put = (k: string, v: string) => ({ ops: [{ kind: pb.Op.Kind.PUT, key: b(k), value: b(v) }] });

t.test('three replicas: elect, replicate, redirect, read', async (t) => {
  const c = await startCluster([1, 2, 3]);
  t.teardown(() => c.close());
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3], {
    domains: {
      fail: () => {
        throw new DomainError('EPERM', 'nope');
      },
    },
  });
  const leader = await waitFor(() => leaderOf(groups), 'a leader');
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => leader.propose(put(`k${i}`, `v${i}`))));
  t.equal(results.length, 200);
  t.ok(results.every((r) => r.errorCode === '' || r.errorCode === undefined), 'all applied');
  await waitFor(() => [...groups.values()].every((g) => g.sm.appliedIndex >= leader.sm.appliedIndex), 'followers to apply');
  for (const g of groups.values()) t.equal(Buffer.from(g.sm.get(b('k199'))!.value).toString(), 'v199', `replica ${g.host.nodeId} has the data`);
  const follower = [...groups.values()].find((g) => g !== leader)!;
  const err = await follower.propose(put('x', 'y')).catch((e: unknown) => e);
  t.ok(err instanceof NotLeaderError, 'follower refuses with NotLeaderError');
  t.equal((err as NotLeaderError).leaderId, leader.host.nodeId, 'and names the leader');
  t.equal((err as NotLeaderError).leaderAddress, c.peers.get(leader.host.nodeId));
  await leader.readBarrier();
  t.equal(Buffer.from(leader.sm.get(b('k0'))!.value).toString(), 'v0');
  const ferr = await leader.propose({ domain: 'fail' }).catch((e: unknown) => e);
  t.ok(ferr instanceof CommandFailedError && ferr.domainCode === 'EPERM', 'domain failure returns its code');
});

t.test('the only voter of a group leads at once, without an election timeout', async (t) => {
  // An hour per tick: no tick (so no election timeout) happens during the test.
  const c = await startCluster([1], { tickMs: 3_600_000 });
  t.teardown(() => c.close());
  const groups = await addGroupEverywhere(c.nodes, 7, [1]);
  const g = groups.get(1)!;
  await waitFor(() => g.isLeader, 'the sole voter to lead');
  const r = await g.propose(put('solo', '1'));
  t.notOk(r.errorCode, 'a proposal commits with a quorum of one');
  t.equal(Buffer.from(g.sm.get(b('solo'))!.value).toString(), '1');
  // A group of three waits for its election timeout like any other: no member campaigns early.
  const c3 = await startCluster([1, 2, 3], { tickMs: 3_600_000 });
  t.teardown(() => c3.close());
  const three = await addGroupEverywhere(c3.nodes, 8, [1, 2, 3]);
  await new Promise((r) => setTimeout(r, 300));
  t.notOk([...three.values()].some((x) => x.isLeader), 'no leader among three without ticks');
});

t.test('leader stops: a new leader takes over and nothing acknowledged is lost', async (t) => {
  const c = await startCluster([1, 2, 3]);
  t.teardown(() => c.close());
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3]);
  const leader = await waitFor(() => leaderOf(groups), 'a leader');
  for (let i = 0; i < 50; i++) await leader.propose(put(`a${i}`, String(i)));
  const oldId = leader.host.nodeId;
  await stopNode(c.nodes.get(oldId) as TestNode);
  c.nodes.delete(oldId);
  groups.delete(oldId);
  const next = await waitFor(() => leaderOf(groups), 'a new leader', 15_000);
  t.not(next.host.nodeId, oldId);
  await next.propose(put('after', 'failover'));
  await next.readBarrier();
  for (let i = 0; i < 50; i++) t.equal(Buffer.from(next.sm.get(b(`a${i}`))?.value ?? []).toString(), String(i), `a${i} survived`);
});

t.test('add a learner that catches up by snapshot, then promote it', async (t) => {
  const c = await startCluster([1, 2, 3], { compactAfterEntries: 100 });
  t.teardown(() => c.close());
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3]);
  const leader = await waitFor(() => leaderOf(groups), 'a leader');
  for (let i = 0; i < 400; i++) await leader.propose(put(`s${i}`, 'x'.repeat(100)));
  t.ok(leader.glog.firstIndex() > 2, `leader compacted its log (first index ${leader.glog.firstIndex()})`);
  const n4 = await c.addNode(4);
  const g4 = await n4.host.addGroup(1, {});
  await t.rejects(leader.changeMembership({ type: 'addNode', nodeId: 4 }), LearnerNotReadyError, 'cannot become a voter without being a learner first');
  await leader.changeMembership({ type: 'addLearner', nodeId: 4 });
  await waitFor(() => g4.sm.appliedIndex >= leader.sm.appliedIndex - 1, 'learner to catch up', 20_000);
  t.equal(Buffer.from(g4.sm.get(b('s399'))!.value).toString(), 'x'.repeat(100), 'learner has data from before compaction');
  await leader.changeMembership({ type: 'addNode', nodeId: 4 });
  t.ok(leader.node.confState().voters.includes(4), 'promoted to voter');
  await leader.propose(put('after-join', '1'));
  await waitFor(() => g4.sm.get(b('after-join')), 'new voter applies new writes');
  t.pass('new voter replicates');
});

t.test('apply writes gathered for a long delay: compaction lands them first, a learner catches up by snapshot', async (t) => {
  const c = await startCluster([1, 2, 3], { compactAfterEntries: 100 });
  t.teardown(() => c.close());
  // Nothing but compaction, snapshots and close make these groups write their applies to level.
  const go = { stateMachine: { historyRevisions: 0, applyBatchDelayMs: 600_000 }, commitBroadcast: 'heartbeat' as const };
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3], go);
  const leader = await waitFor(() => leaderOf(groups), 'a leader');
  for (let i = 0; i < 250; i++) await leader.propose(put(`s${i}`, String(i)));
  t.ok(leader.glog.firstIndex() > 2, `leader compacted its log (first index ${leader.glog.firstIndex()})`);
  for (const [id, g] of groups) {
    const raw = c.nodes.get(id)!.db.getSync(g.sm.keys.appliedKey);
    const landed = raw ? Number(Buffer.from(raw).readBigUInt64BE(0)) : 0;
    const snap = g.glog.snapshot().metadata.index;
    t.ok(landed >= snap, `node ${id}: level holds the state through ${landed}, at or past the log's snapshot at ${snap}`);
  }
  t.equal(Buffer.from(leader.sm.get(b('s249'))!.value).toString(), '249', 'the last write is readable before it lands');
  const n4 = await c.addNode(4);
  const g4 = await n4.host.addGroup(1, go);
  await leader.changeMembership({ type: 'addLearner', nodeId: 4 });
  await waitFor(() => g4.sm.appliedIndex >= leader.sm.appliedIndex - 1, 'learner to catch up', 20_000);
  for (let i = 0; i < 250; i += 49) t.equal(Buffer.from(g4.sm.get(b(`s${i}`))?.value ?? []).toString(), String(i), `learner has s${i}`);
});

t.test('many groups share one connection per peer', async (t) => {
  const c = await startCluster([1, 2, 3], { tickMs: 50 });
  t.teardown(() => c.close());
  const all: Awaited<ReturnType<typeof addGroupEverywhere>>[] = [];
  for (let gid = 1; gid <= 100; gid++) all.push(await addGroupEverywhere(c.nodes, gid, [1, 2, 3]));
  await waitFor(() => all.every((gs) => leaderOf(gs)), '100 leaders', 20_000);
  await Promise.all(all.map((gs, i) => leaderOf(gs)!.propose(put('g', String(i + 1)))));
  for (const [i, gs] of all.entries()) {
    const l = leaderOf(gs)!;
    if (Buffer.from(l.sm.get(b('g'))!.value).toString() !== String(i + 1)) t.fail(`group ${i + 1} wrong`);
  }
  for (const n of c.nodes.values()) t.ok(n.rpc.connectionCount <= 2, `node ${n.id}: ${n.rpc.connectionCount} inbound connections for 100 groups`);
});

t.test('leadership transfer and lease reads', async (t) => {
  const c = await startCluster([1, 2, 3]);
  t.teardown(() => c.close());
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3]);
  const leader = await waitFor(() => leaderOf(groups), 'a leader');
  await leader.propose(put('x', '1'));
  const target = [...groups.keys()].find((id) => id !== leader.host.nodeId)!;
  await waitFor(() => groups.get(target)!.status().applied >= leader.status().commit, 'target caught up');
  leader.transferLeader(target);
  const next = await waitFor(() => (groups.get(target)!.isLeader ? groups.get(target) : undefined), `node ${target} to lead`);
  t.equal(next.host.nodeId, target, 'leadership moved to the chosen node');
  await next.propose(put('x', '2'));
  await next.readBarrier();
  t.equal(Buffer.from(next.sm.get(b('x'))!.value).toString(), '2');
  const old = groups.get(leader.host.nodeId)!;
  const e = await old.readBarrier().catch((x: unknown) => x);
  t.ok(e instanceof NotLeaderError, 'the old leader refuses linearizable reads');
});

t.test('lease reads: served by a leader with a valid lease, refused elsewhere', async (t) => {
  const c = await startCluster([1, 2, 3], { leaseReads: true });
  t.teardown(() => c.close());
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3]);
  const leader = await waitFor(() => leaderOf(groups), 'a leader');
  await leader.propose(put('k', 'v'));
  await waitFor(() => leader.node.hasValidLease(), 'a valid lease', 5000);
  await leader.readBarrier();
  t.equal(Buffer.from(leader.sm.get(b('k'))!.value).toString(), 'v');
  // Cut the leader off: its lease runs out and it steps down (check-quorum), so it stops serving.
  for (const [id, n] of c.nodes) if (id !== leader.host.nodeId) await stopNode(n);
  await waitFor(() => !leader.node.hasValidLease(), 'lease expiry', 10_000);
  const e = await leader.readBarrier(500).catch((x: unknown) => x);
  t.ok(e instanceof Error, `an isolated former leader does not serve reads (${(e as Error).name})`);
  for (const id of [...c.nodes.keys()]) if (id !== leader.host.nodeId) c.nodes.delete(id);
});

t.test('a snapshot transfer broken half way resumes from what the follower holds', async (t) => {
  const attempts: { offset: number; attempt: number; identity: string }[] = [];
  const c = await startCluster([1, 2, 3], {
    compactAfterEntries: 100,
    host: {
      snapshotChunkBytes: 2048,
      snapshotFault: (index, attempt) => attempt === 0 && index === 5,
      onSnapshotAttempt: (a) => attempts.push(a),
    },
  });
  t.teardown(() => c.close());
  const groups = await addGroupEverywhere(c.nodes, 1, [1, 2, 3]);
  const leader = await waitFor(() => leaderOf(groups), 'a leader');
  for (let i = 0; i < 300; i++) await leader.propose(put(`r${i}`, 'y'.repeat(200)));
  const n4 = await c.addNode(4);
  const g4 = await n4.host.addGroup(1, {});
  await leader.changeMembership({ type: 'addLearner', nodeId: 4 });
  await waitFor(() => g4.sm.appliedIndex >= leader.sm.appliedIndex - 1, 'learner to catch up', 30_000);
  t.ok(attempts.length >= 2, `${attempts.length} attempts`);
  t.equal(attempts[0]!.offset, 0, 'first attempt from the start');
  t.ok(attempts[1]!.offset > 0, `second attempt resumed at byte ${attempts[1]!.offset}`);
  t.equal(attempts[1]!.identity, attempts[0]!.identity, 'same image');
  t.equal(Buffer.from(g4.sm.get(b('r299'))!.value).toString(), 'y'.repeat(200), 'the learner has every row');
  let rows = 0;
  let start: Uint8Array | undefined;
  for (;;) {
    const r = await g4.sm.range({ prefix: b('r'), limit: 1000, ...(start ? { start } : {}) });
    rows += r.kvs.length;
    if (!r.next) break;
    start = r.next;
  }
  t.equal(rows, 300, 'no row lost or duplicated by the resume');
  // The hosts keep their images in default directories of their own under the temp dir: close()
  // removes them (test runs once left one per host behind).
  const snapDirs = (): string[] => readdirSync(tmpdir()).filter((n) => new RegExp(`^containerstack-snap-\\d+-${process.pid}(-|$)`).test(n));
  t.ok(snapDirs().length > 0, 'the leader made its snapshot directory');
  await c.close();
  t.same(snapDirs(), [], 'closing the hosts removed their snapshot directories');
});
