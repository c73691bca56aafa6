// MasterClient: talks to the master replicas. Follows TABLE_NOT_LEADER hints to the leader and
// tries the next address when one is down, until its deadline. Used by metanodes (register,
// heartbeat), by lib/fs and MetaClient (the cluster view: partition routes, block groups), and
// by the volume/cluster commands.
import { RpcPool, RpcRemoteError, RpcUnavailableError, RpcDeadlineError, type MethodDef } from '../rpc/index.js';
import { containerstack } from '../../proto/gen/master.js';
import { containerstack as tablepb } from '../../proto/gen/table.js';
import { masterService } from './service.js';
import { MasterBadRequestError, MasterExistsError, MasterNoCapacityError, MasterNotFoundError, MasterPlacementError, MasterUnavailableError } from './errors.js';
import type { ClusterView, MasterResponse, NodeInfo, Volume, Partition } from './state.js';

export interface MasterClientOptions {
  endpoints: string[];
  pool?: RpcPool;
  deadlineMs?: number;
  token?: string;
}

/** Where a metadata partition lives (the shape MetaClient routes by). */
export interface PartitionRouteInfo {
  groupId: number;
  start: number;
  end: number;
  members: string[];
}

export type GroupRef = { groupId: number; replicas: string[]; state: string };

function mapError(err: unknown): unknown {
  if (!(err instanceof RpcRemoteError)) return err;
  const m = err.remoteMessage.replace(/^(master|table): /, '');
  switch (err.remoteCode) {
    case 'ENOENT':
      return new MasterNotFoundError(m, { cause: err });
    case 'EEXIST':
      return new MasterExistsError(m, { cause: err });
    case 'ENOSPC':
      return new MasterNoCapacityError(m, { cause: err });
    case 'EINVAL':
      return new MasterBadRequestError(m, { cause: err });
    case 'MASTER_PLACEMENT_FAILED':
      return new MasterPlacementError(m, { cause: err });
    default:
      return err;
  }
}

export class MasterClient {
  private readonly endpoints: string[];
  private readonly pool: RpcPool;
  private readonly ownsPool: boolean;
  private readonly deadlineMs: number;
  private leader: string | undefined;

  constructor(opts: MasterClientOptions) {
    if (opts.endpoints.length === 0) throw new TypeError('master client: no endpoints');
    this.endpoints = [...opts.endpoints];
    this.ownsPool = !opts.pool;
    this.pool = opts.pool ?? new RpcPool({ ...(opts.token ? { token: opts.token } : {}), backoffBaseMs: 50, backoffMaxMs: 1000 });
    this.deadlineMs = opts.deadlineMs ?? 10_000;
  }

  private async call<Req, Res>(method: MethodDef<Req, Res>, req: Req): Promise<Res> {
    const deadline = performance.now() + this.deadlineMs;
    let attempt = 0;
    let next = this.leader ?? (this.endpoints[0] as string);
    let lastErr: unknown;
    while (performance.now() < deadline) {
      try {
        const r = await this.pool.get(next).call(method, req, { deadlineMs: Math.max(1, deadline - performance.now()) });
        this.leader = next;
        return r;
      } catch (err) {
        lastErr = err;
        if (err instanceof RpcRemoteError && err.remoteCode === 'TABLE_NOT_LEADER') {
          const hint = err.details ? tablepb.table.LeaderHint.decode(err.details) : undefined;
          if (hint?.leaderAddress && hint.leaderAddress !== next) {
            next = hint.leaderAddress;
            if (!this.endpoints.includes(next) && this.endpoints.length < 16) this.endpoints.push(next);
            continue;
          }
        } else if (!(err instanceof RpcUnavailableError || err instanceof RpcDeadlineError || (err instanceof RpcRemoteError && ['TABLE_DEADLINE_EXCEEDED', 'TABLE_NO_QUORUM', 'TABLE_CLOSED'].includes(err.remoteCode)))) {
          throw mapError(err);
        }
        this.leader = undefined;
        attempt++;
        next = this.endpoints[attempt % this.endpoints.length] as string;
        await new Promise((r) => setTimeout(r, Math.min(200, 10 * attempt)));
      }
    }
    throw new MasterUnavailableError(`no master answered as leader within ${this.deadlineMs}ms (last: ${(lastErr as Error | undefined)?.message ?? 'none'})`, { cause: lastErr });
  }

  private command(req: containerstack.master.MasterRequest.$Properties): Promise<MasterResponse> {
    return this.call(masterService.command, req);
  }

  async view(volume = ''): Promise<ClusterView> {
    // Decoded messages carry every field (defaults filled), which is what the view type promises.
    return (await this.call(masterService.view, { volume })) as unknown as ClusterView;
  }

  async createVolume(name: string, opts: { quotaBytes?: number; replicas?: number; inoRange?: number } = {}): Promise<{ volume: Volume; partitions: Partition[] }> {
    const r = await this.command({ op: 'createVolume', volume: name, quotaBytes: opts.quotaBytes ?? 0, replicas: opts.replicas ?? 3, inoRange: opts.inoRange ?? 0 });
    return { volume: r.volume as Volume, partitions: (r.partitions ?? []) as Partition[] };
  }

  async deleteVolume(name: string): Promise<void> {
    await this.command({ op: 'deleteVolume', volume: name });
  }

  /** Changes a volume's capacity quota (0: unlimited). */
  async setCapacity(name: string, quotaBytes: number): Promise<Volume> {
    if (!Number.isSafeInteger(quotaBytes) || quotaBytes < 0) throw new MasterBadRequestError(`capacity ${quotaBytes} (a byte count, 0: unlimited)`);
    return (await this.command({ op: 'setCapacity', volume: name, quotaBytes })).volume as Volume;
  }

  async addPartition(volume: string): Promise<Partition> {
    return (await this.command({ op: 'addPartition', volume })).partitions?.[0] as Partition;
  }

  async volumes(): Promise<Volume[]> {
    return (await this.view()).volumes;
  }

  async volumeInfo(name: string): Promise<{ volume: Volume; partitions: Partition[]; view: ClusterView }> {
    const v = await this.view(name);
    const vol = v.volumes[0];
    if (!vol) throw new MasterNotFoundError(`no volume ${name}`);
    return { volume: vol, partitions: v.partitions, view: v };
  }

  async register(kind: 'meta' | 'data', address: string): Promise<NodeInfo> {
    return (await this.command({ op: 'register', kind, address })).node as NodeInfo;
  }

  metaHeartbeat(req: containerstack.master.MetaHeartbeatRequest.$Properties): Promise<containerstack.master.MetaHeartbeatResponse.$Properties> {
    return this.call(masterService.metaHeartbeat, req);
  }

  async allocateGroup(volume: string): Promise<GroupRef> {
    const r = await this.call(masterService.allocateGroup, { volume });
    return { groupId: r.groupId ?? 0, replicas: r.replicas ?? [], state: r.state ?? '' };
  }

  async locateGroup(groupId: number): Promise<GroupRef> {
    const r = await this.call(masterService.locateGroup, { groupId });
    return { groupId: r.groupId ?? 0, replicas: r.replicas ?? [], state: r.state ?? '' };
  }

  async sealGroup(groupId: number, reason: string): Promise<void> {
    await this.command({ op: 'sealGroup', groupId, reason });
  }

  /** The volume's partitions with member addresses: what MetaClient routes by. */
  async routes(volume: string): Promise<PartitionRouteInfo[]> {
    const v = await this.view(volume);
    if (v.volumes.length === 0) throw new MasterNotFoundError(`no volume ${volume}`);
    const byId = new Map(v.nodes.map((n) => [n.id, n.address]));
    return v.partitions.map((p) => {
      // The last known leader first, so the first call usually lands on it.
      const ids = p.leader && p.members.includes(p.leader) ? [p.leader, ...p.members.filter((m) => m !== p.leader)] : p.members;
      return { groupId: p.groupId, start: p.start, end: p.end, members: ids.map((id) => byId.get(id) ?? '').filter((a) => a !== '') };
    });
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.close();
  }
}
