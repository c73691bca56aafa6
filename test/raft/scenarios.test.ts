// Scripted raft scenarios, one per feature, on the synchronous in-memory cluster of harness.ts.
import t from 'tap';
import {
  ConfChangePendingError, InvalidMessageError, MemoryStorage, NotLeaderError, ProposalDroppedError, makeMessage,
  type Message,
} from '../../lib/raft/index.js';
import { Cluster } from './harness.js';

const isApp = (from: number, to: number) => (m: Message) => m.type === 'app' && m.from === from && m.to === to && m.entries.length > 0;

t.test('election: a campaign wins, everyone follows, terms move once', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  t.equal(c.leader(), 1);
  for (const id of [1, 2, 3]) {
    t.equal(c.node(id).raw.raft.term, 2, `node ${id} term (bootstrap 1, pre-vote does not bump, vote does)`);
    t.equal(c.node(id).raw.raft.lead, 1);
  }
  // The no-op of the new term is committed everywhere.
  t.equal(c.node(2).raw.raft.log.committed, 2);
});

t.test('election by ticking: exactly one leader emerges', async (t) => {
  const c = new Cluster([1, 2, 3, 4, 5]);
  c.tickAll(40);
  const leaders = [...c.nodes.values()].filter((n) => n.raw.raft.role === 'leader');
  t.equal(leaders.length, 1);
  const term = leaders[0]?.raw.raft.term;
  for (const n of c.nodes.values()) t.equal(n.raw.raft.term, term, `node ${n.id} in the leader's term`);
});

t.test('election: a candidate with a shorter log loses', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.isolate(3);
  c.propose(1, 'x');
  c.recover();
  c.isolate(1);
  // Node 3 lacks 'x' (committed by 1 and 2): node 2 must refuse it.
  c.node(3).raw.campaign();
  c.stabilize();
  t.not(c.node(3).raw.raft.role, 'leader');
  c.node(2).raw.campaign();
  c.stabilize();
  t.equal(c.leader(), 2);
});

t.test('pre-vote: a partitioned node does not disrupt the leader when it returns', async (t) => {
  const c = new Cluster([1, 2, 3], { preVote: true, checkQuorum: false });
  c.node(1).raw.campaign();
  c.stabilize();
  const term = c.node(1).raw.raft.term;
  c.isolate(3);
  c.tick(3, 100);
  t.equal(c.node(3).raw.raft.term, term, 'pre-candidate did not inflate its term');
  t.equal(c.node(3).raw.raft.role, 'preCandidate');
  c.recover();
  c.tickAll(3);
  t.equal(c.leader(), 1, 'leader unchanged');
  t.equal(c.node(1).raw.raft.term, term, 'term unchanged');
  t.equal(c.node(3).raw.raft.lead, 1, 'returning node follows the leader');
});

t.test('without pre-vote the same partition disrupts the leader (contrast)', async (t) => {
  const c = new Cluster([1, 2, 3], { preVote: false, checkQuorum: false });
  c.node(1).raw.campaign();
  c.stabilize();
  const term = c.node(1).raw.raft.term;
  c.isolate(3);
  c.tick(3, 100);
  t.ok(c.node(3).raw.raft.term > term, 'isolated candidate inflated its term');
  c.recover();
  c.tickAll(30);
  t.ok(c.node(1).raw.raft.term > term, 'the cluster had to move to a new term');
});

t.test('check-quorum: an isolated leader steps down', async (t) => {
  const c = new Cluster([1, 2, 3], { checkQuorum: true });
  c.node(1).raw.campaign();
  c.stabilize();
  c.isolate(1);
  c.tick(1, 9);
  t.equal(c.node(1).raw.raft.role, 'leader', 'still leader within one election timeout');
  c.tick(1, 12);
  t.equal(c.node(1).raw.raft.role, 'follower', 'stepped down without hearing from a quorum');
  t.throws(() => c.node(1).raw.propose(new Uint8Array([1])), NotLeaderError);
});

t.test('check-quorum leases: followers ignore a disruptive vote while they hear from a leader', async (t) => {
  const c = new Cluster([1, 2, 3], { checkQuorum: true, preVote: false });
  c.node(1).raw.campaign();
  c.stabilize();
  const term = c.node(1).raw.raft.term;
  // Node 3 campaigns without waiting (forced hup): 1 and 2 are in lease and ignore it.
  c.cutLink(1, 3);
  c.node(3).raw.campaign();
  c.stabilize();
  t.equal(c.node(1).raw.raft.role, 'leader');
  t.equal(c.node(1).raw.raft.term, term);
  t.equal(c.node(2).raw.raft.term, term, 'node 2 did not adopt the candidate term');
});

t.test('log repair: a divergent follower is truncated to the leader log', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.propose(1, 'a');
  // Node 1 appends entries only it has, then loses leadership.
  c.isolate(1);
  for (const x of ['lost1', 'lost2', 'lost3']) c.propose(1, x);
  // 2 and 3 first wait out the leader's lease (check-quorum), then elect one of them.
  c.tickAll(40);
  const l = c.leader();
  t.ok(l === 2 || l === 3, `new leader ${l}`);
  c.propose(l, 'b');
  c.propose(l, 'c');
  const before = c.logTerms(1);
  c.recover();
  c.trace = [];
  c.tickAll(2);
  // The new leader probes at its own last index from its election (3, term 2), which matches:
  // node 1 then finds the conflict at 4 itself and truncates its term-2 suffix.
  t.ok(c.countTrace(isApp(l, 1)) > 0, 'leader sent the missing entries');
  t.same(c.logTerms(1), c.logTerms(l), 'logs identical after repair');
  t.not(before.join(','), c.logTerms(1).join(','), 'node 1 log changed');
  t.same(c.appliedText(1), ['a', 'b', 'c'], 'divergent entries were never applied');
  t.same(c.appliedText(3), ['a', 'b', 'c']);
});

t.test('in-flight limit: at most maxInflightMsgs appends outstanding to a silent follower', async (t) => {
  const c = new Cluster([1, 2, 3], { maxInflightMsgs: 2 });
  c.node(1).raw.campaign();
  c.stabilize();
  c.propose(1, 'warm');
  t.equal(c.node(1).raw.status().progress?.get(2)?.state, 'replicate');
  // Node 2 receives but its answers are lost: the leader must stop at 2 messages.
  c.dropIf = (m) => m.from === 2 && m.to === 1;
  c.trace = [];
  for (let i = 0; i < 10; i++) c.propose(1, `p${i}`);
  t.equal(c.countTrace(isApp(1, 2)), 2, 'two appends to node 2');
  t.equal(c.countTrace(isApp(1, 3)), 10, 'node 3 answers, so it gets one append per proposal');
  t.equal(c.node(1).raw.status().progress?.get(2)?.inflight, 2);
  c.recover();
  c.tickAll(3);
  t.equal(c.node(2).raw.raft.log.lastIndex(), c.node(1).raw.raft.log.lastIndex(), 'node 2 caught up after recovery');
});

t.test('batching: one append carries many entries, bounded by maxSizePerMsgBytes', async (t) => {
  const c = new Cluster([1, 2], { maxSizePerMsgBytes: 200, maxInflightMsgs: 64 });
  c.node(1).raw.campaign();
  c.stabilize();
  c.isolate(2);
  for (let i = 0; i < 20; i++) c.node(1).raw.propose(new Uint8Array(40));
  c.stabilize();
  c.recover();
  c.trace = [];
  c.tickAll(3);
  const apps = c.trace.filter(isApp(1, 2));
  t.ok(apps.length > 1 && apps.length < 20, `batched into ${apps.length} messages`);
  for (const m of apps) t.ok(m.entries.length === 1 || m.entries.reduce((s, e) => s + e.data.byteLength + 24, 0) <= 200, 'within size');
  t.equal(c.node(2).raw.raft.log.lastIndex(), c.node(1).raw.raft.log.lastIndex());
});

t.test('uncommitted size limit: a leader without a quorum refuses more proposals', async (t) => {
  const c = new Cluster([1, 2, 3], { maxUncommittedEntriesSizeBytes: 100 });
  c.node(1).raw.campaign();
  c.stabilize();
  c.isolate(1);
  c.node(1).raw.propose(new Uint8Array(60));
  c.node(1).raw.propose(new Uint8Array(30));
  t.throws(() => c.node(1).raw.propose(new Uint8Array(30)), ProposalDroppedError);
  try {
    c.node(1).raw.propose(new Uint8Array(30));
  } catch (e) {
    t.equal((e as ProposalDroppedError).code, 'RAFT_PROPOSAL_DROPPED');
  }
});

t.test('snapshot: a lagging follower is caught up by InstallSnapshot after compaction', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.isolate(3);
  for (let i = 0; i < 20; i++) c.propose(1, `e${i}`);
  const leader = c.node(1);
  const applied = leader.raw.raft.log.applied;
  leader.storage.createSnapshot(applied, leader.raw.confState(), new TextEncoder().encode('image'));
  leader.storage.compact(applied);
  c.recover();
  c.trace = [];
  c.tickAll(5);
  const snaps = c.trace.filter((m) => m.type === 'snap' && m.to === 3);
  t.equal(snaps.length, 1, 'one snapshot sent');
  t.equal(snaps[0]?.snapshot?.metadata.index, applied);
  t.same(snaps[0]?.snapshot?.metadata.confState.voters, [1, 2, 3], 'membership travels with the snapshot');
  t.equal(new TextDecoder().decode(c.node(3).storage.snapshot().data), 'image');
  t.equal(c.node(3).raw.raft.log.committed, c.node(1).raw.raft.log.committed);
  c.propose(1, 'after');
  t.same(c.appliedText(3), ['after'], 'node 3 applies new entries after the snapshot');
  t.equal(c.node(1).raw.status().progress?.get(3)?.state, 'replicate');
});

t.test('learner: catches up without voting, then is promoted', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.propose(1, 'x');
  c.add(4);
  c.node(1).raw.proposeConfChange({ type: 'addLearner', nodeId: 4 });
  c.stabilize();
  c.tickAll(3);
  t.same(c.node(1).raw.confState(), { voters: [1, 2, 3], learners: [4] });
  t.equal(c.node(4).raw.raft.log.lastIndex(), c.node(1).raw.raft.log.lastIndex(), 'learner caught up');
  t.same(c.node(4).raw.confState().learners, [4], 'learner knows it is a learner');
  // A learner never campaigns, and the quorum is still 2 of {1,2,3}.
  c.isolate(1);
  c.tick(4, 100);
  t.equal(c.node(4).raw.raft.role, 'follower');
  c.recover();
  c.isolate(4);
  c.propose(1, 'y');
  t.equal(c.appliedText(2).at(-1), 'y', 'commits without the learner');
  c.recover();
  c.tickAll(2);
  c.node(1).raw.proposeConfChange({ type: 'addNode', nodeId: 4 });
  c.stabilize();
  t.same(c.node(1).raw.confState(), { voters: [1, 2, 3, 4], learners: [] });
  // With 4 voters the quorum is 3: two nodes down means no commit.
  c.isolate(3);
  c.isolate(4);
  c.propose(1, 'z');
  t.not(c.appliedText(1).at(-1), 'z', 'needs 3 of 4 now');
});

t.test('membership: one change at a time, and only after an entry of the leader term applies', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.dropIf = (m) => m.type === 'appResp';
  c.node(1).raw.campaign();
  c.stabilize();
  t.equal(c.node(1).raw.raft.role, 'leader');
  // The leader's no-op is not committed, let alone applied: changes must wait.
  t.throws(() => c.node(1).raw.proposeConfChange({ type: 'addLearner', nodeId: 4 }), ConfChangePendingError);
  c.recover();
  c.tickAll(2);
  c.isolate(2);
  c.isolate(3);
  c.node(1).raw.proposeConfChange({ type: 'addLearner', nodeId: 4 });
  c.stabilize();
  t.throws(() => c.node(1).raw.proposeConfChange({ type: 'addLearner', nodeId: 5 }), ConfChangePendingError, 'second change refused while first is unapplied');
  t.throws(() => c.node(1).raw.proposeConfChange({ type: 'removeNode', nodeId: 9 }), ConfChangePendingError);
  c.recover();
  c.stabilize();
  c.tickAll(2);
  t.throws(() => c.node(1).raw.proposeConfChange({ type: 'removeNode', nodeId: 9 }), ProposalDroppedError, 'removing a non-member is refused');
});

t.test('remove the leader: it steps down once the change applies, the rest elect a leader', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.node(1).raw.proposeConfChange({ type: 'removeNode', nodeId: 1 });
  c.stabilize();
  t.equal(c.node(1).raw.raft.role, 'follower', 'old leader stepped down');
  t.same(c.node(2).raw.confState().voters, [2, 3]);
  c.isolate(1);
  c.tickAll(40);
  const l = c.leader();
  t.ok(l === 2 || l === 3, `new leader ${l} among the remaining members`);
  c.propose(l, 'after-removal');
  t.equal(c.appliedText(2).at(-1), 'after-removal');
  t.equal(c.appliedText(3).at(-1), 'after-removal');
  t.equal(c.node(1).raw.raft.role, 'follower', 'removed node never campaigns');
});

t.test('leadership transfer: TimeoutNow after the target catches up', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.isolate(3);
  for (let i = 0; i < 5; i++) c.propose(1, `e${i}`);
  c.recover();
  c.trace = [];
  const term = c.node(1).raw.raft.term;
  c.node(1).raw.transferLeader(3);
  c.stabilize();
  t.equal(c.countTrace((m) => m.type === 'timeoutNow' && m.to === 3), 1);
  t.equal(c.leader(), 3, 'lagging target caught up and took over');
  t.equal(c.node(3).raw.raft.term, term + 1);
  t.same(c.appliedText(3).slice(-1), ['e4']);
  // Proposals during a transfer are refused at the old leader.
  c.isolate(2);
  c.node(3).raw.transferLeader(2);
  t.throws(() => c.node(3).raw.propose(new Uint8Array([1])), ProposalDroppedError);
  c.tick(3, 11);
  t.equal(c.node(3).raw.raft.leadTransferee, 0, 'transfer abandoned after an election timeout');
});

t.test('ReadIndex: a quorum round confirms leadership before answering', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.propose(1, 'w');
  c.trace = [];
  c.node(1).raw.readIndex('r1');
  c.stabilize();
  t.same(c.node(1).readStates, [{ index: c.node(1).raw.raft.log.committed, context: 'r1' }]);
  t.ok(c.countTrace((m) => m.type === 'heartbeat' && m.context === 'r1') > 0, 'heartbeat carried the read context');
  // From a follower: forwarded to the leader, answered with the leader's commit index.
  c.node(3).raw.readIndex('r2');
  c.stabilize();
  t.same(c.node(3).readStates, [{ index: c.node(1).raw.raft.log.committed, context: 'r2' }]);
  // An isolated leader cannot answer.
  c.isolate(1);
  c.node(1).raw.readIndex('r3');
  c.stabilize();
  t.equal(c.node(1).readStates.length, 1, 'no read state without a quorum');
  // A follower without a leader refuses.
  const lone = new Cluster([1, 2, 3]);
  t.throws(() => lone.node(2).raw.readIndex('x'), NotLeaderError);
});

t.test('ReadIndex: a new leader waits for its own-term entry to commit', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.cutLink(2, 1);
  c.cutLink(3, 1);
  c.node(1).raw.campaign();
  c.stabilize();
  t.equal(c.node(1).raw.raft.role, 'preCandidate', 'cannot even pre-vote without answers');
  c.recover();
  c.node(1).raw.campaign();
  c.dropIf = (m) => m.type === 'appResp';
  c.stabilize();
  t.equal(c.node(1).raw.raft.role, 'leader');
  c.node(1).raw.readIndex('early');
  c.stabilize();
  t.equal(c.node(1).readStates.length, 0, 'no read before the no-op commits');
  c.dropIf = undefined;
  c.tickAll(2);
  t.equal(c.node(1).readStates.length, 1, 'answered once the leader committed in its term');
  t.equal(c.node(1).readStates[0]?.index, c.node(1).raw.raft.log.committed);
});

t.test('lease read: served locally while the lease holds, not after it lapses', async (t) => {
  const c = new Cluster([1, 2, 3], { readOnlyOption: 'leaseBased', checkQuorum: true });
  // With lease reads, fresh followers wait one election timeout before voting.
  c.tickAll(40);
  const l = c.leader();
  t.ok(l > 0, 'a leader');
  c.tickAll(2);
  t.ok(c.node(l).raw.hasValidLease());
  c.trace = [];
  c.node(l).raw.readIndex('lease1');
  c.stabilize();
  t.equal(c.node(l).readStates.length, 1, 'answered at once');
  t.equal(c.countTrace((m) => m.context === 'lease1'), 0, 'without a heartbeat round');
  c.isolate(l);
  let lapsedAt = -1;
  for (let i = 1; i <= 10 && lapsedAt < 0; i++) {
    c.tick(l, 1);
    if (!c.node(l).raw.hasValidLease()) lapsedAt = i;
  }
  t.ok(lapsedAt > 0 && lapsedAt < 10, `lease lapsed after ${lapsedAt} ticks, before an election timeout (10)`);
  t.equal(c.node(l).raw.raft.role, 'leader', 'while still leader');
  c.node(l).raw.readIndex('lease2');
  c.stabilize();
  t.equal(c.node(l).readStates.length, 1, 'no lease, no quorum: not answered');
});

t.test('lease read: a restarted follower waits an election timeout before voting', async (t) => {
  const c = new Cluster([1, 2, 3], { readOnlyOption: 'leaseBased', checkQuorum: true, preVote: false });
  c.tickAll(40);
  const l = c.leader();
  const [a, b] = [1, 2, 3].filter((x) => x !== l) as [number, number];
  // Restart node a from its storage: lead unknown, but it may have acked the leader's lease.
  const st = c.node(a).storage;
  c.nodes.delete(a);
  c.add(a, st);
  c.isolate(l);
  c.node(b).raw.campaign();
  c.stabilize();
  const termA = c.node(a).raw.raft.term;
  t.not(c.node(b).raw.raft.role, 'leader', 'restarted node did not vote inside the lease window');
  t.equal(c.node(a).raw.raft.term, termA, 'and did not even adopt the new term');
  c.tickAll(40);
  const l2 = c.leader();
  t.ok(l2 === a || l2 === b, 'after the window the two elect a leader');
});

t.test('messages: local types and other groups are refused from the network', async (t) => {
  const c = new Cluster([1, 2, 3]);
  t.throws(() => c.node(1).raw.step(makeMessage('hup', 1, 2, 1, 0)), InvalidMessageError);
  t.throws(() => c.node(1).raw.step(makeMessage('heartbeat', 99, 2, 1, 5)), InvalidMessageError);
  const bad = makeMessage('app', 1, 2, 1, 5);
  bad.index = 1.5;
  t.throws(() => c.node(1).raw.step(bad), InvalidMessageError);
  t.equal(c.node(1).raw.raft.term, 1, 'nothing changed');
});

t.test('heartbeats carry the group id, so a host can coalesce them per peer', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.trace = [];
  c.tickAll(1);
  const hb = c.trace.filter((m) => m.type === 'heartbeat');
  t.ok(hb.length >= 2);
  for (const m of hb) t.equal(m.groupId, 1);
});

t.test('restart: state survives in storage, applied index is respected', async (t) => {
  const c = new Cluster([1, 2, 3]);
  c.node(1).raw.campaign();
  c.stabilize();
  c.propose(1, 'a');
  c.propose(1, 'b');
  const st: MemoryStorage = c.node(2).storage;
  const term = c.node(2).raw.raft.term;
  c.nodes.delete(2);
  const n2 = c.add(2, st);
  t.equal(n2.raw.raft.term, term);
  t.equal(n2.raw.raft.log.committed, st.hardStateNow().commit);
  c.tickAll(2);
  t.same(c.appliedText(2), ['a', 'b'], 'a restarted node with applied=snapshot index re-applies from there');
});

t.test('log repair: rejection hints skip a divergent term in one round trip', async (t) => {
  const ent = (index: number, term: number) => ({ term, index, type: 'normal' as const, data: new Uint8Array([index, term]) });
  const storage = (terms: number[], term: number) => {
    const s = MemoryStorage.bootstrap([1, 2, 3]);
    s.append(terms.map((tm, i) => ent(i + 2, tm)));
    s.setHardState({ term, vote: 0, commit: 1 });
    return s;
  };
  // Leader-to-be 1 and node 3: term 2 at 2..4, term 5 at 5..8. Node 2: a longer term-3 suffix.
  const c = new Cluster([]);
  c.add(1, storage([2, 2, 2, 5, 5, 5, 5], 5));
  c.add(2, storage([2, 2, 2, 3, 3, 3, 3, 3, 3], 5));
  c.add(3, storage([2, 2, 2, 5, 5, 5, 5], 5));
  c.node(1).raw.campaign();
  c.stabilize();
  t.equal(c.leader(), 1);
  const rejects = c.countTrace((m) => m.type === 'appResp' && m.from === 2 && m.reject);
  t.equal(rejects, 1, 'one rejection, then the leader jumps to the last common term');
  t.same(c.logTerms(2), c.logTerms(1), 'node 2 repaired');
  t.equal(c.node(2).raw.raft.log.committed, c.node(1).raw.raft.log.committed);
});

t.test('Figure 8: a leader never commits an old-term entry by counting replicas', async (t) => {
  // Raft paper, Figure 8: S1 (term 4) brings its term-2 entry at index 2 to a majority; if it
  // committed that by counting and then crashed, S5 (with a term-3 entry at index 2) could
  // still be elected and overwrite a committed entry.
  const ent = (index: number, term: number, text: string) => ({ term, index, type: 'normal' as const, data: new TextEncoder().encode(text) });
  const storage = (ents: ReturnType<typeof ent>[]) => {
    const s = MemoryStorage.bootstrap([1, 2, 3, 4, 5]);
    s.append(ents);
    s.setHardState({ term: 3, vote: 0, commit: 1 });
    return s;
  };
  // One entry per append message, so a follower can hold index 2 without index 3.
  const c = new Cluster([], { maxSizePerMsgBytes: 1, checkQuorum: false });
  c.add(1, storage([ent(2, 2, 'old')]));
  c.add(2, storage([ent(2, 2, 'old')]));
  c.add(3, storage([]));
  c.add(4, storage([]));
  c.add(5, storage([ent(2, 3, 'new')]));
  c.isolate(5);
  // Node 3 gets index 2 but never index 3 (the leader's no-op); node 4 gets no entries.
  const s3HasIndex2 = () => c.node(3).raw.raft.log.lastIndex() >= 2;
  c.dropIf = (m) => m.type === 'app' && ((m.to === 3 && s3HasIndex2() && m.entries.some((e) => e.index === 3)) || m.to === 4);
  c.node(1).raw.campaign();
  c.stabilize();
  t.equal(c.leader(), 1, 'S1 leads term 4');
  t.equal(c.node(3).raw.raft.log.term(2), 2, 'the old entry reached a majority (S1, S2, S3)');
  t.equal(c.node(1).raw.raft.log.committed, 1, 'but it is not committed: no entry of term 4 is on a majority');
  // S1 crashes; S5 wins with S3 and S4 and overwrites index 2.
  c.recover();
  c.isolate(1);
  // The first (pre-)campaign only teaches S5 the current term 4; the second wins.
  for (let i = 0; i < 2 && c.leader() !== 5; i++) {
    c.node(5).raw.campaign();
    c.stabilize();
  }
  t.equal(c.leader(), 5);
  t.equal(c.node(3).raw.raft.log.term(2), 3, 'index 2 overwritten on S3');
  // State machine safety: nobody applied something else at an index another node applied.
  const byIndex = new Map<number, string>();
  for (const n of c.nodes.values()) {
    for (const e of n.applied) {
      const text = new TextDecoder().decode(e.data);
      const prev = byIndex.get(e.index);
      if (prev !== undefined) t.equal(text, prev, `node ${n.id} applied the same entry at ${e.index}`);
      byIndex.set(e.index, text);
    }
  }
  t.equal(byIndex.get(2), 'new');
});

t.test("commitBroadcast 'heartbeat': no empty append for a commit; followers learn it with the next heartbeat", async (t) => {
  for (const mode of ['eager', 'heartbeat'] as const) {
    const c = new Cluster([1, 2, 3], { commitBroadcast: mode });
    c.node(1).raw.campaign();
    c.stabilize();
    c.trace = [];
    c.propose(1, 'x');
    const idx = c.node(1).raw.raft.log.lastIndex();
    t.equal(c.node(1).raw.raft.log.committed, idx, `${mode}: committed on the leader at once`);
    const emptyApps = c.trace.filter((m) => m.type === 'app' && m.from === 1 && m.entries.length === 0).length;
    if (mode === 'eager') {
      t.equal(emptyApps, 2, 'eager: an empty append to each follower carries the commit');
      t.equal(c.node(2).raw.raft.log.committed, idx, 'eager: followers know the commit at once');
    } else {
      t.equal(emptyApps, 0, 'heartbeat: no empty append');
      t.ok(c.node(2).raw.raft.log.committed < idx, 'heartbeat: followers do not know it yet');
      c.tick(1, 1); // heartbeatTicks is 1
      c.stabilize();
      t.equal(c.node(2).raw.raft.log.committed, idx, 'heartbeat: follower 2 learns it from the heartbeat');
      t.equal(c.node(3).raw.raft.log.committed, idx, 'heartbeat: follower 3 too');
      t.ok(c.node(2).applied.some((e) => Buffer.from(e.data).toString() === 'x'), 'and applies it');
    }
  }
});
