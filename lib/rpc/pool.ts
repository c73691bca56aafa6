// RpcPool: one RpcClient per address, shared by everything in a process that talks to that
// peer, with a bound on how many addresses it keeps (least recently used are closed).
import { LruMap } from '../common/index.js';
import { RpcClient, type RpcClientOptions } from './client.js';

export type PoolOptions = Omit<RpcClientOptions, 'host' | 'port'> & { maxClients?: number };

export class RpcPool {
  private readonly clients: LruMap<string, RpcClient>;
  constructor(private readonly options: PoolOptions = {}) {
    this.clients = new LruMap(options.maxClients ?? 1024, (_addr, client) => {
      void client.close();
    });
  }

  /** `host:port` or `[v6]:port`. */
  get(address: string): RpcClient {
    let c = this.clients.get(address);
    if (!c) {
      const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
      if (!m) throw new TypeError(`rpc: bad address ${JSON.stringify(address)} (want host:port)`);
      const { maxClients: _unused, ...rest } = this.options;
      c = new RpcClient({ ...rest, host: m[1] as string, port: Number(m[2]) });
      this.clients.set(address, c);
    }
    return c;
  }

  get size(): number {
    return this.clients.size;
  }

  async close(): Promise<void> {
    const all = [...this.clients.entries()].map(([, c]) => c);
    this.clients.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}
