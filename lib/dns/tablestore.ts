// TableDnsStore: ContainerDNS records in a containerstack table (lib/table): the embedded
// single-member table by default, or a 3-member table cluster for HA. Every replica of the
// DNS server watches the same table, so health and records agree everywhere.
// Layout: dns/r/<name>\0<id> -> DnsRecord JSON, dns/h/<ip> -> IpHealth JSON.
import type { TableClient, TableEvent } from '../table/index.js';
import type { DnsRecord, DnsStore, IpHealth, RecordType, StoreEvent, StoreSnapshot, Watch } from './store.js';
import { StoreClosedError, StoreInvalidRecordError } from './errors.js';
import { validateRecord } from './records.js';

const R = 'dns/r/';
const H = 'dns/h/';
const PAGE = 1000;
/** Bounds a snapshot: more records than this is a configuration problem, not a cache. */
const MAX_SNAPSHOT_RECORDS = 2_000_000;

const norm = (n: string): string => n.toLowerCase().replace(/\.$/, '');
const recKey = (name: string, id: string): string => `${R}${norm(name)}\u0000${id}`;

export class TableDnsStore implements DnsStore {
  private closed = false;
  private readonly watches = new Set<{ cancel(): void }>();

  constructor(private readonly table: TableClient) {}

  private check(): void {
    if (this.closed) throw new StoreClosedError('table store is closed');
  }

  async snapshot(): Promise<StoreSnapshot> {
    this.check();
    const records: DnsRecord[] = [];
    const health: IpHealth[] = [];
    let revision = 0;
    for (const [prefix, sink] of [[R, 'r'], [H, 'h']] as const) {
      let start: Uint8Array | undefined;
      for (;;) {
        const page = await this.table.range({ prefix, limit: PAGE, ...(start ? { start } : {}) });
        revision = Math.max(revision, page.revision);
        for (const kv of page.kvs) {
          const v = JSON.parse(Buffer.from(kv.value).toString()) as DnsRecord & IpHealth;
          if (sink === 'r') records.push(v);
          else health.push(v);
        }
        if (records.length > MAX_SNAPSHOT_RECORDS) throw new StoreInvalidRecordError(`more than ${MAX_SNAPSHOT_RECORDS} records`);
        if (!page.next) break;
        start = page.next;
      }
    }
    return { records, health, revision };
  }

  async get(name: string, type?: RecordType): Promise<DnsRecord[]> {
    this.check();
    const r = await this.table.range({ prefix: `${R}${norm(name)}\u0000`, limit: PAGE });
    return r.kvs.map((kv) => JSON.parse(Buffer.from(kv.value).toString()) as DnsRecord).filter((x) => type === undefined || x.type === type);
  }

  async put(record: DnsRecord): Promise<number> {
    this.check();
    const problem = validateRecord(record);
    if (problem) throw new StoreInvalidRecordError(problem);
    const r = { ...record, name: norm(record.name) };
    return (await this.table.put(recKey(r.name, r.id), JSON.stringify(r))).revision;
  }

  async delete(name: string, id: string): Promise<boolean> {
    this.check();
    // A compare-and-delete, so "was there anything" is answered by the same atomic step.
    const out = await this.table.txn([{ key: recKey(name, id), exists: true }], [{ delete: recKey(name, id) }]);
    return out.succeeded;
  }

  async setHealth(health: IpHealth): Promise<number> {
    this.check();
    const key = `${H}${health.ip}`;
    const cur = await this.table.get(key);
    // Writing the same status again is not a change: watchers and caches are not disturbed.
    if (cur && (JSON.parse(Buffer.from(cur.value).toString()) as IpHealth).status === health.status) return cur.modRevision;
    return (await this.table.put(key, JSON.stringify(health))).revision;
  }

  watch(fromRevision: number, onEvent: (e: StoreEvent) => void): Watch {
    this.check();
    const toEvent = (e: TableEvent): StoreEvent | undefined => {
      const key = Buffer.from(e.kv.key).toString();
      if (key.startsWith(R)) {
        if (e.type === 'put') return { kind: 'put', record: JSON.parse(Buffer.from(e.kv.value).toString()) as DnsRecord, revision: e.revision };
        const [name, id] = key.slice(R.length).split('\u0000') as [string, string];
        return { kind: 'delete', name, id, revision: e.revision };
      }
      if (key.startsWith(H) && e.type === 'put') return { kind: 'health', health: JSON.parse(Buffer.from(e.kv.value).toString()) as IpHealth, revision: e.revision };
      return undefined;
    };
    const w = this.table.watch(
      'dns/',
      fromRevision + 1,
      (evs) => {
        for (const e of evs) {
          const se = toEvent(e);
          if (se) onEvent(se);
        }
      },
      // History no longer reaches back: the consumer re-lists.
      (err) => onEvent({ kind: 'reset', revision: (err as { compactRevision?: number }).compactRevision ?? 0 }),
    );
    this.watches.add(w);
    return {
      close: () => {
        w.cancel();
        this.watches.delete(w);
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.watches) w.cancel();
    this.watches.clear();
  }
}
