// The store seen from a cluster worker. The primary process owns the real store (in-memory or
// etcd; the API and prober write to it there); each worker talks to it over the cluster IPC
// channel with this DnsStore, so every worker builds its own index from one source of truth.
import type { DnsRecord, DnsStore, IpHealth, RecordType, StoreEvent, StoreSnapshot, Watch } from './store.js';
import { IpcStoreError } from './errors.js';

/** What both `process` (in a worker) and a cluster `Worker` (in the primary) provide. */
export interface IpcChannel {
  send(msg: unknown): unknown;
  on(event: 'message', fn: (msg: unknown) => void): unknown;
  off(event: 'message', fn: (msg: unknown) => void): unknown;
}

type Req = { t: 'dns-store-req'; id: number; op: 'snapshot' | 'get' | 'put' | 'delete' | 'setHealth'; args: unknown[] };
type Res = { t: 'dns-store-res'; id: number; ok: boolean; value?: unknown; error?: string };
type WatchReq = { t: 'dns-store-watch'; id: number; from: number };
type Unwatch = { t: 'dns-store-unwatch'; id: number };
type Ev = { t: 'dns-store-ev'; id: number; e: StoreEvent };

const PENDING_MAX = 4096;

/** Primary side: answers one worker's store calls and streams its watches. Returns a stop function. */
export function serveStoreOverIpc(store: DnsStore, ch: IpcChannel): () => void {
  const watches = new Map<number, Watch>();
  const onMsg = (raw: unknown): void => {
    const m = raw as Req | WatchReq | Unwatch;
    if (m === null || typeof m !== 'object') return;
    if (m.t === 'dns-store-req') {
      const run = async (): Promise<unknown> => {
        switch (m.op) {
          case 'snapshot': return store.snapshot();
          // IPC is JSON: an absent type arrives as null.
          case 'get': return store.get(m.args[0] as string, (m.args[1] ?? undefined) as RecordType | undefined);
          case 'put': return store.put(m.args[0] as DnsRecord);
          case 'delete': return store.delete(m.args[0] as string, m.args[1] as string);
          case 'setHealth': return store.setHealth(m.args[0] as IpHealth);
        }
      };
      run().then(
        (value) => safeSend(ch, { t: 'dns-store-res', id: m.id, ok: true, value } satisfies Res),
        (err: unknown) => safeSend(ch, { t: 'dns-store-res', id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies Res),
      );
    } else if (m.t === 'dns-store-watch') {
      if (watches.size >= 64) return;
      watches.set(m.id, store.watch(m.from, (e) => safeSend(ch, { t: 'dns-store-ev', id: m.id, e } satisfies Ev)));
    } else if (m.t === 'dns-store-unwatch') {
      watches.get(m.id)?.close();
      watches.delete(m.id);
    }
  };
  ch.on('message', onMsg);
  return () => {
    ch.off('message', onMsg);
    for (const w of watches.values()) w.close();
    watches.clear();
  };
}

function safeSend(ch: IpcChannel, m: unknown): void {
  try {
    ch.send(m);
  } catch {
    // The worker is gone; its exit is handled by the primary.
  }
}

/** Worker side. */
export class IpcDnsStore implements DnsStore {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly watchers = new Map<number, (e: StoreEvent) => void>();
  private readonly onMsg = (raw: unknown): void => {
    const m = raw as Res | Ev;
    if (m === null || typeof m !== 'object') return;
    if (m.t === 'dns-store-res') {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.ok) p.resolve(m.value);
      else p.reject(new IpcStoreError(m.error ?? 'store call failed'));
    } else if (m.t === 'dns-store-ev') {
      this.watchers.get(m.id)?.(m.e);
    }
  };

  constructor(private readonly ch: IpcChannel, private readonly timeoutMs = 10_000) {
    ch.on('message', this.onMsg);
  }

  private call<T>(op: Req['op'], args: unknown[]): Promise<T> {
    if (this.pending.size >= PENDING_MAX) return Promise.reject(new IpcStoreError(`${PENDING_MAX} store calls pending`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new IpcStoreError(`store call ${op} timed out after ${this.timeoutMs}ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.ch.send({ t: 'dns-store-req', id, op, args } satisfies Req);
    });
  }

  snapshot(): Promise<StoreSnapshot> {
    return this.call('snapshot', []);
  }
  get(name: string, type?: RecordType): Promise<DnsRecord[]> {
    return this.call('get', [name, type]);
  }
  put(record: DnsRecord): Promise<number> {
    return this.call('put', [record]);
  }
  delete(name: string, id: string): Promise<boolean> {
    return this.call('delete', [name, id]);
  }
  setHealth(health: IpHealth): Promise<number> {
    return this.call('setHealth', [health]);
  }
  watch(fromRevision: number, onEvent: (e: StoreEvent) => void): Watch {
    const id = this.nextId++;
    this.watchers.set(id, onEvent);
    this.ch.send({ t: 'dns-store-watch', id, from: fromRevision } satisfies WatchReq);
    return {
      close: () => {
        this.watchers.delete(id);
        try {
          this.ch.send({ t: 'dns-store-unwatch', id } satisfies Unwatch);
        } catch {
          // channel closed during shutdown
        }
      },
    };
  }
  async close(): Promise<void> {
    this.ch.off('message', this.onMsg);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new IpcStoreError('store closed'));
    }
    this.pending.clear();
    this.watchers.clear();
  }
}
