// The table's client-facing RPC service, served by every member of a table cluster. Writes
// and linearizable reads go to the leader (others answer TABLE_NOT_LEADER with a LeaderHint in
// the error details); stale reads and watches are served by any member.
import { ContainerStackError } from '../common/index.js';
import { protoCodec, unaryMethod, serverStreamMethod, type RpcServer } from '../rpc/index.js';
import { containerstack } from '../../proto/gen/table.js';
import type { RaftHost, TableGroup } from './host.js';
import { CommandFailedError, NotLeaderError, WatchCompactedError } from './errors.js';
import { toPbEvent, toPbKv, type TableEvent } from './statemachine.js';

const pb = containerstack.table;

const codec = <T>(t: { encode(m: T): { finish(): Uint8Array }; decode(b: Uint8Array): T }) => protoCodec<T>(t);

export const tableService = {
  propose: unaryMethod('table.Propose', codec<containerstack.table.ProposeRequest.$Properties>(pb.ProposeRequest), codec<containerstack.table.ProposeResponse.$Properties>(pb.ProposeResponse)),
  get: unaryMethod('table.Get', codec<containerstack.table.GetRequest.$Properties>(pb.GetRequest), codec<containerstack.table.GetResponse.$Properties>(pb.GetResponse)),
  range: unaryMethod('table.Range', codec<containerstack.table.RangeRequest.$Properties>(pb.RangeRequest), codec<containerstack.table.RangeResponse.$Properties>(pb.RangeResponse)),
  watch: serverStreamMethod('table.Watch', codec<containerstack.table.WatchRequest.$Properties>(pb.WatchRequest), codec<containerstack.table.WatchResponse.$Properties>(pb.WatchResponse)),
  membership: unaryMethod('table.Membership', codec<containerstack.table.MembershipRequest.$Properties>(pb.MembershipRequest), codec<containerstack.table.MembershipResponse.$Properties>(pb.MembershipResponse)),
  transferLeader: unaryMethod('table.TransferLeader', codec<containerstack.table.TransferLeaderRequest.$Properties>(pb.TransferLeaderRequest), codec<containerstack.table.TransferLeaderResponse.$Properties>(pb.TransferLeaderResponse)),
  status: unaryMethod('table.Status', codec<containerstack.table.StatusRequest.$Properties>(pb.StatusRequest), codec<containerstack.table.StatusResponse.$Properties>(pb.StatusResponse)),
};


export const enum Consistency {
  Linearizable = 0,
  Lease = 1,
  Stale = 2,
}

/** A ContainerStackError carrying a LeaderHint as RPC error details (services built on a table group throw it too). */
export class NotLeaderWire extends ContainerStackError {
  readonly details: Uint8Array;
  constructor(err: NotLeaderError, groupId: number) {
    super('table', err.code, err.message.replace(/^table: /, ''));
    this.details = pb.LeaderHint.encode({ groupId, leaderId: err.leaderId, leaderAddress: err.leaderAddress }).finish();
  }
}

/** Turns a NotLeaderError into the wire form with the leader hint; other errors pass through. */
export function toWireError(err: unknown, groupId: number): unknown {
  return err instanceof NotLeaderError ? new NotLeaderWire(err, groupId) : err;
}

class BadMembershipError extends ContainerStackError {
  constructor(message: string) {
    super('table', 'TABLE_BAD_MEMBERSHIP', message);
  }
}

class NoSuchGroupError extends ContainerStackError {
  constructor(groupId: number) {
    super('table', 'TABLE_NO_SUCH_GROUP', `group ${groupId} is not hosted here`);
  }
}

export function registerTableService(rpc: RpcServer, host: RaftHost, opts: { watchBatchMax?: number; watchQueueMax?: number } = {}): void {
  const groupOf = (id: number | null | undefined): TableGroup => {
    const g = host.group(id || 1);
    if (!g) throw new NoSuchGroupError(id || 1);
    return g;
  };
  const barrier = async (g: TableGroup, consistency: number | null | undefined, deadlineMs: number): Promise<void> => {
    if (consistency === Consistency.Stale) return;
    await g.readBarrier(deadlineMs);
  };
  const deadlineOf = (ctxDeadline: number | undefined): number => (ctxDeadline === undefined ? 5000 : Math.max(1, ctxDeadline - performance.now()));

  rpc.unary(tableService.propose, async (req, ctx) => {
    const g = groupOf(req.groupId);
    try {
      const r = await g.propose(req.command ?? {}, deadlineOf(ctx.deadlineAt));
      return { result: { revision: r.revision, succeeded: r.succeeded ?? true, domainResult: r.domainResult ?? new Uint8Array(0), errorCode: r.errorCode ?? '', errorMessage: r.errorMessage ?? '', index: r.index ?? 0 } };
    } catch (err) {
      // A deterministic command failure is a result, not a transport error: the client maps it.
      if (err instanceof CommandFailedError) return { result: { errorCode: err.domainCode, errorMessage: err.message.replace(/^table: /, '') } };
      throw toWireError(err, g.groupId);
    }
  });

  rpc.unary(tableService.get, async (req, ctx) => {
    const g = groupOf(req.groupId);
    try {
      await barrier(g, req.consistency, deadlineOf(ctx.deadlineAt));
    } catch (err) {
      throw toWireError(err, g.groupId);
    }
    const kv = g.sm.get(req.key ?? new Uint8Array(0));
    return kv ? { kv: toPbKv(kv), found: true, revision: g.sm.currentRevision } : { found: false, revision: g.sm.currentRevision };
  });

  rpc.unary(tableService.range, async (req, ctx) => {
    const g = groupOf(req.groupId);
    try {
      await barrier(g, req.consistency, deadlineOf(ctx.deadlineAt));
    } catch (err) {
      throw toWireError(err, g.groupId);
    }
    const r = await g.sm.range({
      limit: req.limit || 1000,
      ...(req.prefix && req.prefix.length > 0 ? { prefix: req.prefix } : {}),
      ...(req.start && req.start.length > 0 ? { start: req.start } : {}),
      ...(req.end && req.end.length > 0 ? { end: req.end } : {}),
      keysOnly: req.keysOnly ?? false,
    });
    return { kvs: r.kvs.map(toPbKv), next: r.next ?? new Uint8Array(0), revision: g.sm.currentRevision };
  });

  rpc.serverStream(tableService.watch, async (req, out, ctx) => {
    const g = groupOf(req.groupId);
    // Events are queued here between the state machine and the (flow-controlled) stream; a
    // watcher that falls this far behind is cut off rather than buffered without bound.
    const queueMax = opts.watchQueueMax ?? 100_000;
    const batchMax = opts.watchBatchMax ?? 1000;
    const queue: TableEvent[] = [];
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    const notify = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let cancel: () => void;
    try {
      cancel = await g.sm.watch(
        req.prefix ?? new Uint8Array(0),
        req.fromRevision ?? 0,
        (evs) => {
          queue.push(...evs);
          if (queue.length > queueMax) failure = new WatchCompactedError(evs[evs.length - 1]?.revision ?? 0);
          notify();
        },
        (err) => {
          failure = err;
          notify();
        },
      );
    } catch (err) {
      if (err instanceof WatchCompactedError) {
        await out.write({ compactRevision: err.compactRevision });
        return;
      }
      throw err;
    }
    const onAbort = (): void => {
      failure ??= new Error('watch cancelled');
      notify();
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      // Tell the client the watch is established (an empty batch), so it knows no event is missed.
      await out.write({ events: [] });
      for (;;) {
        while (queue.length > 0) {
          const batch = queue.splice(0, batchMax);
          await out.write({ events: batch.map(toPbEvent) });
        }
        if (failure) throw failure;
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      cancel();
      ctx.signal.removeEventListener('abort', onAbort);
    }
  });

  rpc.unary(tableService.membership, async (req) => {
    const g = groupOf(req.groupId);
    const id = req.nodeId ?? 0;
    if (!(id > 0)) throw new BadMembershipError('node id must be a positive integer');
    try {
      switch (req.change) {
        case 'addLearner':
          if (!req.address) throw new BadMembershipError('addLearner needs the new member\'s address');
          host.setPeerAddress(id, req.address);
          await g.changeMembership({ type: 'addLearner', nodeId: id });
          break;
        case 'promote':
          await g.changeMembership({ type: 'addNode', nodeId: id });
          break;
        case 'remove':
          await g.changeMembership({ type: 'removeNode', nodeId: id });
          break;
        default:
          throw new BadMembershipError(`unknown change ${JSON.stringify(req.change)} (addLearner, promote, remove)`);
      }
    } catch (err) {
      throw toWireError(err, g.groupId);
    }
    const cs = g.node.confState();
    return { voters: cs.voters, learners: cs.learners };
  });

  rpc.unary(tableService.transferLeader, async (req) => {
    const g = groupOf(req.groupId);
    if (!g.isLeader) throw toWireError(new NotLeaderError(g.leaderId, host.peers.get(g.leaderId) ?? ''), g.groupId);
    const to = req.nodeId ?? 0;
    if (!g.node.confState().voters.includes(to)) throw new BadMembershipError(`node ${to} is not a voter`);
    g.transferLeader(to);
    for (let i = 0; i < 200 && g.leaderId !== to; i++) await new Promise((r) => setTimeout(r, 25));
    return { leaderId: g.leaderId };
  });

  rpc.unary(tableService.status, (req) => {
    const g = groupOf(req.groupId);
    const st = g.status();
    const cs = g.node.confState();
    return {
      id: host.nodeId,
      leaderId: st.lead,
      leaderAddress: host.peers.get(st.lead) ?? '',
      term: st.term,
      commit: st.commit,
      applied: g.sm.appliedIndex,
      role: st.role,
      revision: g.sm.currentRevision,
      voters: cs.voters,
      learners: cs.learners,
    };
  });
}
