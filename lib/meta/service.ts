// The metanode's read service: linearizable metadata reads (lookup, getattr, readdir, ...)
// answered in one round trip from the leader's state machine after a read barrier. Writes go
// through the table service's Propose as the "meta" domain command, so they share its
// idempotent retries. A non-leader answers TABLE_NOT_LEADER with the table's LeaderHint, so
// one leader-following loop in the client serves both paths.
import { ContainerStackError } from '../common/index.js';
import { protoCodec, unaryMethod, type RpcServer } from '../rpc/index.js';
import { NotLeaderError, type RaftHost, type TableGroup, type TableStateMachine } from '../table/index.js';
import { containerstack } from '../../proto/gen/meta.js';
import { containerstack as tablepb } from '../../proto/gen/table.js';
import { readMeta, READ_OPS, type Reader } from './partition.js';

const pb = containerstack.meta;

export const metaService = {
  read: unaryMethod('meta.Read', protoCodec<containerstack.meta.MetaRequest.$Properties>(pb.MetaRequest), protoCodec<containerstack.meta.MetaResponse.$Properties>(pb.MetaResponse)),
};

/** Reads a table state machine's committed state (the caller passed a read barrier). */
export function stateMachineReader(sm: TableStateMachine): Reader {
  return {
    get: (key) => sm.get(key)?.value,
    scan: async (prefix, limit, startAfter) => {
      const r = await sm.range({ prefix, limit, ...(startAfter ? { start: Buffer.concat([Buffer.from(startAfter), Buffer.from([0])]) } : {}) });
      return r.kvs.map((kv) => ({ key: kv.key, value: kv.value }));
    },
  };
}

class NotLeaderWire extends ContainerStackError {
  readonly details: Uint8Array;
  constructor(err: NotLeaderError, groupId: number) {
    super('table', err.code, err.message.replace(/^table: /, ''));
    this.details = tablepb.table.LeaderHint.encode({ groupId, leaderId: err.leaderId, leaderAddress: err.leaderAddress }).finish();
  }
}
class NoSuchPartitionError extends ContainerStackError {
  constructor(groupId: number) {
    super('table', 'TABLE_NO_SUCH_GROUP', `partition group ${groupId} is not hosted here`);
  }
}
/** A read failed with a POSIX error: it crosses the wire with the errno name as its code. */
class PosixWire extends ContainerStackError {
  constructor(code: string, message: string) {
    super('meta', code, message.replace(/^((table|meta): )+/, ''));
  }
}

/** Runs a read on a group this node hosts (after a linearizable read barrier). */
export async function readOnGroup(g: TableGroup, req: containerstack.meta.MetaRequest.$Properties, deadlineMs = 5000): Promise<containerstack.meta.MetaResponse.$Properties> {
  await g.readBarrier(deadlineMs);
  return readMeta(stateMachineReader(g.sm), req);
}

export function registerMetaService(rpc: RpcServer, host: RaftHost): void {
  rpc.unary(metaService.read, async (req, ctx) => {
    const gid = req.groupId ?? 0;
    const g = host.group(gid);
    if (!g) throw new NoSuchPartitionError(gid);
    if (!READ_OPS.has(req.op ?? '')) throw new PosixWire('EINVAL', `not a read: ${req.op}`);
    const deadline = ctx.deadlineAt === undefined ? 5000 : Math.max(1, ctx.deadlineAt - performance.now());
    try {
      return await readOnGroup(g, req, deadline);
    } catch (err) {
      if (err instanceof NotLeaderError) throw new NotLeaderWire(err, gid);
      const dc = (err as { domainCode?: string }).domainCode;
      if (dc) throw new PosixWire(dc, (err as Error).message);
      throw err;
    }
  });
}
