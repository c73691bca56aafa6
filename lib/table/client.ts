// TableClient: talks to a table cluster. It finds the leader (following TABLE_NOT_LEADER
// hints, trying the next endpoint when one is down), retries commands with the same
// (clientId, seq) so a retried write is applied once, and resumes watches from the last
// revision seen after a disconnect.
import { randomBytes } from 'node:crypto';
import { RpcPool, RpcRemoteError, RpcUnavailableError, RpcDeadlineError, type PoolOptions } from '../rpc/index.js';
import { containerstack } from '../../proto/gen/table.js';
import { tableService, Consistency } from './service.js';
import { fromPbEvent, fromPbKv, type KeyValue, type TableEvent } from './statemachine.js';
import { CommandFailedError, NoQuorumError, NotLeaderError, TableDeadlineError, WatchCompactedError } from './errors.js';

const pb = containerstack.table;
// Remote failures worth trying on another member with the same (clientId, seq): no quorum or
// deadline there, a member shutting down, or one that does not host the group yet (it was just
// assigned or restarted).
const RETRY_ELSEWHERE = new Set(['TABLE_DEADLINE_EXCEEDED', 'TABLE_NO_QUORUM', 'TABLE_CLOSED', 'TABLE_NO_SUCH_GROUP']);
export type ConsistencyLevel = 'linearizable' | 'lease' | 'stale';
const LEVEL: Record<ConsistencyLevel, number> = { linearizable: Consistency.Linearizable, lease: Consistency.Lease, stale: Consistency.Stale };

export interface TableClientOptions {
  /** `host:port` of every member (or a subset: hints lead to the rest). */
  endpoints: string[];
  groupId?: number;
  /** Total time one operation may take, across retries. */
  deadlineMs?: number;
  token?: string;
  /** Share a pool with other clients in the process; otherwise the client owns one. */
  pool?: RpcPool;
  poolOptions?: PoolOptions;
  clientId?: string;
}

export type TxnCompare =
  | { key: string | Uint8Array; value: string | Uint8Array }
  | { key: string | Uint8Array; exists: boolean }
  | { key: string | Uint8Array; modRevision: number }
  | { key: string | Uint8Array; version: number };
export type TxnOp = { put: string | Uint8Array; value: string | Uint8Array } | { delete: string | Uint8Array } | { deletePrefix: string | Uint8Array };

const bytes = (x: string | Uint8Array): Uint8Array => (typeof x === 'string' ? Buffer.from(x) : x);

function toOp(o: TxnOp): containerstack.table.Op.$Properties {
  if ('put' in o) return { kind: pb.Op.Kind.PUT, key: bytes(o.put), value: bytes(o.value) };
  if ('delete' in o) return { kind: pb.Op.Kind.DELETE, key: bytes(o.delete) };
  return { kind: pb.Op.Kind.DELETE_PREFIX, key: bytes(o.deletePrefix) };
}
function toCompare(c: TxnCompare): containerstack.table.Compare.$Properties {
  if ('value' in c) return { key: bytes(c.key), target: pb.Compare.Target.VALUE, value: bytes(c.value) };
  if ('exists' in c) return { key: bytes(c.key), target: pb.Compare.Target.EXISTS, exists: c.exists };
  if ('modRevision' in c) return { key: bytes(c.key), target: pb.Compare.Target.MOD_REVISION, modRevision: c.modRevision };
  return { key: bytes(c.key), target: pb.Compare.Target.VERSION, version: c.version };
}

export interface CommandOutcome {
  revision: number;
  succeeded: boolean;
  result: Uint8Array;
}

export class TableClient {
  readonly groupId: number;
  readonly clientId: string;
  private readonly pool: RpcPool;
  private readonly ownsPool: boolean;
  private readonly deadlineMs: number;
  private readonly endpoints: string[];
  private leader: string | undefined;
  private seq = 0;

  constructor(opts: TableClientOptions) {
    if (opts.endpoints.length === 0) throw new TypeError('table client: no endpoints');
    this.endpoints = [...opts.endpoints];
    this.groupId = opts.groupId ?? 1;
    this.deadlineMs = opts.deadlineMs ?? 5000;
    this.clientId = opts.clientId ?? `c-${randomBytes(8).toString('hex')}`;
    this.ownsPool = !opts.pool;
    this.pool = opts.pool ?? new RpcPool({ ...(opts.token ? { token: opts.token } : {}), backoffBaseMs: 50, backoffMaxMs: 1000, ...opts.poolOptions });
  }

  /**
   * Runs `fn` against the leader, following hints and trying other endpoints until the
   * deadline. Retrying is safe: commands carry a fixed (clientId, seq).
   */
  private async onLeader<T>(fn: (addr: string, leftMs: number) => Promise<T>, what: string): Promise<T> {
    const deadline = performance.now() + this.deadlineMs;
    let attempt = 0;
    let lastErr: unknown;
    let next = this.leader ?? this.endpoints[0] as string;
    while (performance.now() < deadline) {
      const left = Math.max(1, deadline - performance.now());
      try {
        const r = await fn(next, left);
        this.leader = next;
        return r;
      } catch (err) {
        lastErr = err;
        if (err instanceof RpcRemoteError && err.remoteCode === 'TABLE_NOT_LEADER') {
          const hint = err.details ? pb.LeaderHint.decode(err.details) : undefined;
          if (hint?.leaderAddress) {
            next = hint.leaderAddress;
            if (!this.endpoints.includes(next)) this.endpoints.push(next);
            continue;
          }
        } else if (!(err instanceof RpcUnavailableError || err instanceof RpcDeadlineError || (err instanceof RpcRemoteError && RETRY_ELSEWHERE.has(err.remoteCode)))) {
          throw mapRemote(err);
        }
        // No leader known there, or the member is down: try the next endpoint after a pause.
        this.leader = undefined;
        attempt++;
        next = this.endpoints[attempt % this.endpoints.length] as string;
        await new Promise((r) => setTimeout(r, Math.min(200, 10 * attempt)));
      }
    }
    if (lastErr instanceof RpcUnavailableError || lastErr instanceof RpcDeadlineError) {
      throw new NoQuorumError(`${what}: no member answered as leader within ${this.deadlineMs}ms (last: ${(lastErr as Error).message})`, { cause: lastErr });
    }
    throw new TableDeadlineError(`${what}: not done within ${this.deadlineMs}ms (last: ${(lastErr as Error | undefined)?.message ?? 'none'})`, { cause: lastErr });
  }

  private async command(cmd: containerstack.table.Command.$Properties, what: string): Promise<CommandOutcome> {
    const c = { ...cmd, clientId: this.clientId, seq: ++this.seq };
    const res = await this.onLeader((addr, left) => this.pool.get(addr).call(tableService.propose, { groupId: this.groupId, command: c }, { deadlineMs: left }), what);
    const r = res.result ?? {};
    if (r.errorCode) throw new CommandFailedError(r.errorCode, (r.errorMessage || r.errorCode).replace(/^table: /, ''));
    return { revision: r.revision ?? 0, succeeded: r.succeeded ?? false, result: r.domainResult ?? new Uint8Array(0) };
  }

  put(key: string | Uint8Array, value: string | Uint8Array): Promise<CommandOutcome> {
    return this.command({ ops: [{ kind: pb.Op.Kind.PUT, key: bytes(key), value: bytes(value) }] }, 'put');
  }

  delete(key: string | Uint8Array): Promise<CommandOutcome> {
    return this.command({ ops: [{ kind: pb.Op.Kind.DELETE, key: bytes(key) }] }, 'delete');
  }

  /** Atomic batch: every op or none, at one revision. */
  batch(ops: TxnOp[]): Promise<CommandOutcome> {
    return this.command({ ops: ops.map(toOp) }, 'batch');
  }

  /** Compare-and-set: `then` runs when every compare holds, else `otherwise`. */
  txn(compares: TxnCompare[], then: TxnOp[], otherwise: TxnOp[] = []): Promise<CommandOutcome> {
    return this.command({ compares: compares.map(toCompare), ops: then.map(toOp), failure: otherwise.map(toOp) }, 'txn');
  }

  /** Runs a registered domain command; resolves with its result bytes. */
  async domain(name: string, args: Uint8Array): Promise<Uint8Array> {
    return (await this.command({ domain: name, args }, `domain ${name}`)).result;
  }

  async get(key: string | Uint8Array, consistency: ConsistencyLevel = 'linearizable'): Promise<KeyValue | undefined> {
    const call = (addr: string, left: number) => this.pool.get(addr).call(tableService.get, { groupId: this.groupId, key: bytes(key), consistency: LEVEL[consistency] }, { deadlineMs: left });
    const r = consistency === 'stale' ? await this.anyMember(call, 'get') : await this.onLeader(call, 'get');
    return r.found && r.kv ? fromPbKv(r.kv) : undefined;
  }

  async range(opts: { prefix?: string | Uint8Array; start?: Uint8Array; end?: Uint8Array; limit?: number; keysOnly?: boolean; consistency?: ConsistencyLevel } = {}): Promise<{ kvs: KeyValue[]; next: Uint8Array | undefined; revision: number }> {
    const consistency = opts.consistency ?? 'linearizable';
    const req = {
      groupId: this.groupId, limit: opts.limit ?? 1000, keysOnly: opts.keysOnly ?? false, consistency: LEVEL[consistency],
      ...(opts.prefix !== undefined ? { prefix: bytes(opts.prefix) } : {}),
      ...(opts.start ? { start: opts.start } : {}),
      ...(opts.end ? { end: opts.end } : {}),
    };
    const call = (addr: string, left: number) => this.pool.get(addr).call(tableService.range, req, { deadlineMs: left });
    const r = consistency === 'stale' ? await this.anyMember(call, 'range') : await this.onLeader(call, 'range');
    return { kvs: (r.kvs ?? []).map(fromPbKv), next: r.next && r.next.length > 0 ? r.next : undefined, revision: r.revision ?? 0 };
  }

  /** Adds a member as a learner, waits for it to catch up, then makes it a voter. */
  async addMember(nodeId: number, address: string): Promise<{ voters: number[]; learners: number[] }> {
    await this.membership('addLearner', nodeId, address);
    return this.membership('promote', nodeId);
  }

  async removeMember(nodeId: number): Promise<{ voters: number[]; learners: number[] }> {
    return this.membership('remove', nodeId);
  }

  async membership(change: 'addLearner' | 'promote' | 'remove', nodeId: number, address = ''): Promise<{ voters: number[]; learners: number[] }> {
    const r = await this.onLeader((addr, left) => this.pool.get(addr).call(tableService.membership, { groupId: this.groupId, change, nodeId, address }, { deadlineMs: left }), `membership ${change}`);
    return { voters: [...(r.voters ?? [])], learners: [...(r.learners ?? [])] };
  }

  async transferLeader(nodeId: number): Promise<number> {
    const r = await this.onLeader((addr, left) => this.pool.get(addr).call(tableService.transferLeader, { groupId: this.groupId, nodeId }, { deadlineMs: left }), 'transfer leader');
    return r.leaderId ?? 0;
  }

  async status(endpoint?: string): Promise<containerstack.table.StatusResponse.$Properties> {
    const call = (addr: string, left: number) => this.pool.get(addr).call(tableService.status, { groupId: this.groupId }, { deadlineMs: left });
    return endpoint ? call(endpoint, this.deadlineMs) : this.anyMember(call, 'status');
  }

  private async anyMember<T>(fn: (addr: string, leftMs: number) => Promise<T>, what: string): Promise<T> {
    const deadline = performance.now() + this.deadlineMs;
    let lastErr: unknown;
    for (let i = 0; performance.now() < deadline; i++) {
      const addr = (i === 0 && this.leader) || (this.endpoints[i % this.endpoints.length] as string);
      try {
        return await fn(addr, Math.max(1, Math.min(deadline - performance.now(), 2000)));
      } catch (err) {
        lastErr = err;
        if (!(err instanceof RpcUnavailableError || err instanceof RpcDeadlineError)) throw mapRemote(err);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    throw new NoQuorumError(`${what}: no member reachable (last: ${(lastErr as Error | undefined)?.message ?? 'none'})`, { cause: lastErr });
  }

  /**
   * Watches keys with `prefix` from `fromRevision` (0: from now). Reconnects to any member and
   * resumes after the last revision delivered, so no event is lost or repeated. Stops on
   * WatchCompactedError (history no longer reaches back: re-list and watch again).
   */
  watch(prefix: string | Uint8Array, fromRevision: number, onEvents: (events: TableEvent[]) => void, onError?: (err: Error) => void): { cancel: () => void; ready: Promise<void> } {
    let cancelled = false;
    let current: { cancel(): void } | undefined;
    let next = fromRevision;
    let markReady!: () => void;
    const ready = new Promise<void>((r) => (markReady = r));
    const run = async (): Promise<void> => {
      if (next === 0) {
        // "From now" is pinned to a revision at once, so a reconnect resumes instead of skipping.
        try {
          next = ((await this.status()).revision ?? 0) + 1;
        } catch (err) {
          onError?.(err as Error);
          return;
        }
      }
      for (let attempt = 0; !cancelled; attempt++) {
        const addr = this.endpoints[attempt % this.endpoints.length] as string;
        try {
          const s = this.pool.get(addr).serverStream(tableService.watch, { groupId: this.groupId, prefix: bytes(prefix), fromRevision: next });
          current = s;
          for await (const msg of s) {
            if (msg.compactRevision) throw new WatchCompactedError(msg.compactRevision);
            markReady();
            attempt = -1;
            const evs = (msg.events ?? []).map(fromPbEvent).filter((e) => e.revision >= next);
            if (evs.length === 0) continue;
            next = (evs[evs.length - 1] as TableEvent).revision + 1;
            onEvents(evs);
          }
        } catch (err) {
          if (cancelled) return;
          if (err instanceof WatchCompactedError) {
            onError?.(err);
            return;
          }
          await new Promise((r) => setTimeout(r, Math.min(1000, 50 * (attempt + 1))));
        }
      }
    };
    void run();
    return {
      ready,
      cancel: () => {
        cancelled = true;
        current?.cancel();
      },
    };
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.close();
  }
}

function mapRemote(err: unknown): unknown {
  if (err instanceof RpcRemoteError && err.remoteCode === 'TABLE_NOT_LEADER') return new NotLeaderError(0, '', { cause: err });
  return err;
}
