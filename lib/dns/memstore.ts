// In-memory DnsStore: the single-process default and the store tests run against. Every change
// gets a revision; a bounded history of events lets a watcher resume from a revision, and a
// watcher further behind than the history gets `reset` (as etcd answers a compacted revision).
import type { DnsRecord, DnsStore, IpHealth, RecordType, StoreEvent, StoreSnapshot, Watch } from './store.js';
import { StoreClosedError, StoreInvalidRecordError } from './errors.js';
import { validateRecord } from './records.js';

export interface MemoryDnsStoreOptions {
  /** Events kept for watchers resuming from an older revision. */
  historyMax?: number;
  /** Records above this count are refused (a store is bounded like everything else). */
  recordsMax?: number;
  /** Watchers above this count are refused. */
  watchersMax?: number;
}

export class MemoryDnsStore implements DnsStore {
  // invariant: revision only increases; every event in history has revision <= this.revision
  private revision = 0;
  private readonly records = new Map<string, Map<string, DnsRecord>>();
  private recordCount = 0;
  private readonly health = new Map<string, IpHealth>();
  private readonly history: StoreEvent[] = [];
  private readonly watchers = new Set<(e: StoreEvent) => void>();
  private closed = false;
  private readonly historyMax: number;
  private readonly recordsMax: number;
  private readonly watchersMax: number;

  constructor(opts: MemoryDnsStoreOptions = {}) {
    this.historyMax = opts.historyMax ?? 10_000;
    this.recordsMax = opts.recordsMax ?? 1_000_000;
    this.watchersMax = opts.watchersMax ?? 1024;
  }

  get currentRevision(): number {
    return this.revision;
  }

  async snapshot(): Promise<StoreSnapshot> {
    this.check();
    const records: DnsRecord[] = [];
    for (const byId of this.records.values()) for (const r of byId.values()) records.push({ ...r });
    return { records, health: [...this.health.values()].map((h) => ({ ...h })), revision: this.revision };
  }

  async get(name: string, type?: RecordType): Promise<DnsRecord[]> {
    this.check();
    const byId = this.records.get(name.toLowerCase().replace(/\.$/, ''));
    if (!byId) return [];
    return [...byId.values()].filter((r) => type === undefined || r.type === type).map((r) => ({ ...r }));
  }

  async put(record: DnsRecord): Promise<number> {
    this.check();
    const problem = validateRecord(record);
    if (problem) throw new StoreInvalidRecordError(problem);
    const r: DnsRecord = { ...record, name: record.name.toLowerCase().replace(/\.$/, '') };
    let byId = this.records.get(r.name);
    if (!byId) {
      byId = new Map();
      this.records.set(r.name, byId);
    }
    if (!byId.has(r.id)) {
      if (this.recordCount >= this.recordsMax) throw new StoreInvalidRecordError(`store holds its limit of ${this.recordsMax} records`);
      this.recordCount++;
    }
    byId.set(r.id, r);
    return this.emit({ kind: 'put', record: { ...r }, revision: ++this.revision });
  }

  async delete(name: string, id: string): Promise<boolean> {
    this.check();
    const n = name.toLowerCase().replace(/\.$/, '');
    const byId = this.records.get(n);
    if (!byId || !byId.delete(id)) return false;
    this.recordCount--;
    if (byId.size === 0) this.records.delete(n);
    this.emit({ kind: 'delete', name: n, id, revision: ++this.revision });
    return true;
  }

  async setHealth(health: IpHealth): Promise<number> {
    this.check();
    const prev = this.health.get(health.ip);
    // Writing the same status again is not a change: watchers (and caches) are not disturbed.
    if (prev && prev.status === health.status) return this.revision;
    if (!prev && this.health.size >= this.recordsMax) throw new StoreInvalidRecordError('health table full');
    this.health.set(health.ip, { ...health });
    return this.emit({ kind: 'health', health: { ...health }, revision: ++this.revision });
  }

  watch(fromRevision: number, onEvent: (e: StoreEvent) => void): Watch {
    this.check();
    if (this.watchers.size >= this.watchersMax) throw new StoreInvalidRecordError(`too many watchers (limit ${this.watchersMax})`);
    const oldest = this.history.length > 0 ? this.history[0]!.revision : this.revision + 1;
    const backlog: StoreEvent[] = [];
    if (fromRevision < this.revision) {
      if (fromRevision + 1 < oldest) backlog.push({ kind: 'reset', revision: this.revision });
      else for (const e of this.history) if (e.revision > fromRevision) backlog.push(e);
    }
    let open = true;
    // Until the backlog is delivered, live events wait behind it so the order stays by revision.
    let held: StoreEvent[] | null = backlog.length > 0 ? [] : null;
    const fn = (e: StoreEvent): void => {
      if (!open) return;
      if (held !== null) held.push(e);
      else onEvent(e);
    };
    this.watchers.add(fn);
    // Deliver asynchronously, like a real store: callers may register before handling events.
    if (held !== null) {
      queueMicrotask(() => {
        const live = held ?? [];
        held = null;
        for (const e of [...backlog, ...live]) {
          if (!open) break;
          try {
            onEvent(e);
          } catch {
            // As in emit(): a throwing watcher is its own bug.
          }
        }
      });
    }
    return {
      close: () => {
        open = false;
        this.watchers.delete(fn);
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
  }

  /** Replaces the whole content with `records` (a records file reload): only differences emit. */
  async replaceAll(records: DnsRecord[], owner?: DnsRecord['owner']): Promise<void> {
    const want = new Map<string, DnsRecord>();
    for (const r of records) want.set(`${r.name.toLowerCase().replace(/\.$/, '')}\u0000${r.id}`, r);
    for (const [name, byId] of [...this.records.entries()]) {
      for (const [id, r] of [...byId.entries()]) {
        if (owner !== undefined && r.owner !== owner) continue;
        if (!want.has(`${name}\u0000${id}`)) await this.delete(name, id);
      }
    }
    for (const r of want.values()) {
      const cur = this.records.get(r.name.toLowerCase().replace(/\.$/, ''))?.get(r.id);
      if (!cur || JSON.stringify(cur) !== JSON.stringify({ ...r, name: r.name.toLowerCase().replace(/\.$/, '') })) await this.put(r);
    }
  }

  private emit(e: StoreEvent): number {
    this.history.push(e);
    if (this.history.length > this.historyMax) this.history.splice(0, this.history.length - this.historyMax);
    for (const w of this.watchers) {
      try {
        w(e);
      } catch {
        // A watcher that throws is its own bug; it must not stop delivery to the others.
      }
    }
    return e.revision;
  }

  private check(): void {
    if (this.closed) throw new StoreClosedError('store is closed');
  }
}
