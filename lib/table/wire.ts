// Raft messages to and from their protobuf form (proto/raft.proto). Snapshot data never rides
// in a Message: it is streamed separately (see host.ts), so a Message stays small.
import type { containerstack } from '../../proto/gen/raft.js';
import type { Entry, Message, MessageType } from '../raft/index.js';

// Wire numbers of message types; append only, never reorder.
const TYPES: readonly MessageType[] = [
  'hup', 'beat', 'checkQuorum', 'prop', 'app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'snap',
  'snapStatus', 'unreachable', 'heartbeat', 'heartbeatResp', 'transferLeader', 'timeoutNow', 'readIndex', 'readIndexResp',
];
const TYPE_NUM = new Map<MessageType, number>(TYPES.map((t, i) => [t, i]));

export function toPbMessage(m: Message): containerstack.raft.Message.$Properties {
  const out: containerstack.raft.Message.$Properties = {
    type: TYPE_NUM.get(m.type) ?? 0,
    groupId: m.groupId,
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
  };
  if (m.entries.length > 0) out.entries = m.entries.map((e) => ({ term: e.term, index: e.index, confChange: e.type === 'confChange', data: e.data }));
  if (m.snapshot) {
    const md = m.snapshot.metadata;
    out.snapshot = { index: md.index, term: md.term, confState: { voters: md.confState.voters, learners: md.confState.learners } };
  }
  if (m.context !== undefined) {
    out.context = m.context;
    out.hasContext = true;
  }
  if (m.leaseTick !== undefined) {
    out.leaseTick = m.leaseTick;
    out.hasLeaseTick = true;
  }
  return out;
}

/** Throws RangeError on a message type this version does not know. */
export function fromPbMessage(p: containerstack.raft.Message.$Properties, snapshotData?: Uint8Array): Message {
  const type = TYPES[p.type ?? -1];
  if (!type) throw new RangeError(`raft wire: unknown message type ${p.type}`);
  const m: Message = {
    type,
    groupId: p.groupId ?? 0,
    from: p.from ?? 0,
    to: p.to ?? 0,
    term: p.term ?? 0,
    logTerm: p.logTerm ?? 0,
    index: p.index ?? 0,
    entries: (p.entries ?? []).map((e): Entry => ({ term: e.term ?? 0, index: e.index ?? 0, type: e.confChange ? 'confChange' : 'normal', data: e.data ?? new Uint8Array(0) })),
    commit: p.commit ?? 0,
    reject: p.reject ?? false,
    rejectHint: p.rejectHint ?? 0,
  };
  if (p.snapshot) {
    const cs = p.snapshot.confState ?? {};
    m.snapshot = {
      metadata: { index: p.snapshot.index ?? 0, term: p.snapshot.term ?? 0, confState: { voters: [...(cs.voters ?? [])], learners: [...(cs.learners ?? [])] } },
      data: snapshotData ?? new Uint8Array(0),
    };
  }
  if (p.hasContext) m.context = p.context ?? '';
  if (p.hasLeaseTick) m.leaseTick = p.leaseTick ?? 0;
  return m;
}
