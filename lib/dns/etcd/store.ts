// EtcdDnsStore: the DnsStore on a real etcd v3 cluster, in the ContainerDNS key layout (see
// layout.ts). One watch stream per consumer covers records and health (the health prefix lies
// inside the record prefix, as in ContainerDNS), resumes from the last seen revision after a
// disconnect, and turns compaction into a `reset` event.
import { defineError, errorMessage, jitteredBackoffMs, silentLogger, type Logger } from '../../common/index.js';
import type { DnsRecord, DnsStore, IpHealth, RecordType, StoreEvent, StoreSnapshot, Watch } from '../store.js';
import { StoreClosedError, StoreInvalidRecordError } from '../errors.js';
import { validateRecord } from '../records.js';
import { EtcdGateway, EtcdLimitError, prefixEnd, type EtcdGatewayOptions, type WatchEventRaw } from './gateway.js';
import {
  DEFAULT_HEALTH_PREFIX, DEFAULT_PREFIX, decodeHealth, decodeRecord, decodeRecordKey, encodeHealth, encodeRecord, healthKey,
  nameDir, recordKeys,
} from './layout.js';

/** A record handed to put() cannot be stored (bad id, name outside the layout). */
export class EtcdBadRecordError extends defineError('dns', 'DNS_ETCD_BAD_RECORD') {}

export interface EtcdDnsStoreOptions extends EtcdGatewayOptions {
  /** Record prefix, default `/containerdns` (SkyDNS deployments use `/skydns`). */
  prefix?: string;
  /** Health prefix, default `/containerdns/monitor/status/` (ContainerDNS's ip-monitor-path). */
  healthPrefix?: string;
  /** Most keys one snapshot() may hold; more is an EtcdLimitError, not unbounded memory. */
  maxKeys?: number;
  /** Watch reconnect backoff. */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /**
   * A watch stream with no message for this long is treated as dead and reopened from its
   * revision. etcd sends a progress notification every 10 minutes on idle watches (we ask for
   * them), so the default leaves room for one to be late; it catches half-open connections
   * that TCP keepalive would take much longer to notice.
   */
  watchStallMs?: number;
  logger?: Logger;
}

export class EtcdDnsStore implements DnsStore {
  readonly prefix: string;
  readonly healthPrefix: string;
  private readonly gw: EtcdGateway;
  private readonly maxKeys: number;
  private readonly log: Logger;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly watchStallMs: number;
  private readonly watches = new Set<EtcdWatch>();
  private closed = false;

  constructor(opts: EtcdDnsStoreOptions) {
    this.prefix = (opts.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, '');
    this.healthPrefix = opts.healthPrefix ?? DEFAULT_HEALTH_PREFIX;
    if (!this.prefix.startsWith('/') || !this.healthPrefix.endsWith('/')) {
      throw new EtcdBadRecordError(`prefix must start with / and healthPrefix end with / (got ${this.prefix}, ${this.healthPrefix})`);
    }
    this.gw = new EtcdGateway(opts);
    this.maxKeys = opts.maxKeys ?? 1_000_000;
    this.log = opts.logger ?? silentLogger;
    this.backoffBaseMs = opts.reconnectBaseMs ?? 100;
    this.backoffMaxMs = opts.reconnectMaxMs ?? 5000;
    this.watchStallMs = opts.watchStallMs ?? 15 * 60_000;
  }

  /** The gateway, for tools and tests (compaction, raw reads). */
  get gateway(): EtcdGateway {
    return this.gw;
  }

  /**
   * A record from etcd that another tool wrote badly (an A record whose host is no IPv4, an SRV
   * without a port) is skipped, as a put of it through this store would have been refused.
   */
  private decode(key: string, value: string): DnsRecord | undefined {
    const rec = decodeRecord(this.prefix, key, value);
    if (!rec) return undefined;
    const problem = validateRecord(rec);
    if (problem) {
      this.log.debug({ key, problem }, 'dns: skipping invalid record in etcd');
      return undefined;
    }
    return rec;
  }

  private check(): void {
    if (this.closed) throw new StoreClosedError('etcd store is closed');
  }

  private isHealthKey(key: string): boolean {
    return key.startsWith(this.healthPrefix);
  }

  async snapshot(): Promise<StoreSnapshot> {
    this.check();
    const start = this.prefix + '/';
    const r = await this.gw.range(start, prefixEnd(start), this.maxKeys + 1);
    if (r.kvs.length > this.maxKeys || r.more) throw new EtcdLimitError(`more than ${this.maxKeys} keys under ${start}`);
    const records: DnsRecord[] = [];
    const health: IpHealth[] = [];
    for (const kv of r.kvs) {
      if (this.isHealthKey(kv.key)) {
        const h = decodeHealth(this.healthPrefix, kv.key, kv.value);
        if (h) health.push(h);
        continue;
      }
      const rec = this.decode(kv.key, kv.value);
      if (rec) records.push(rec);
    }
    // The health prefix may also be configured outside the record prefix.
    if (!this.healthPrefix.startsWith(start)) {
      const hr = await this.gw.range(this.healthPrefix, prefixEnd(this.healthPrefix), this.maxKeys + 1);
      if (hr.kvs.length > this.maxKeys) throw new EtcdLimitError(`more than ${this.maxKeys} keys under ${this.healthPrefix}`);
      for (const kv of hr.kvs) {
        const h = decodeHealth(this.healthPrefix, kv.key, kv.value);
        if (h) health.push(h);
      }
    }
    return { records, health, revision: r.revision };
  }

  async get(name: string, type?: RecordType): Promise<DnsRecord[]> {
    this.check();
    const n = name.toLowerCase().replace(/\.$/, '');
    const dir = nameDir(this.prefix, n);
    // Includes the bare-name key written without a trailing slash (SkyDNS style).
    const r = await this.gw.range(dir.slice(0, -1), prefixEnd(dir), this.maxKeys + 1);
    if (r.kvs.length > this.maxKeys) throw new EtcdLimitError(`more than ${this.maxKeys} keys under ${dir}`);
    const out: DnsRecord[] = [];
    for (const kv of r.kvs) {
      if (this.isHealthKey(kv.key)) continue;
      const rec = this.decode(kv.key, kv.value);
      if (rec && rec.name === n && (type === undefined || rec.type === type)) out.push(rec);
    }
    return out;
  }

  async put(record: DnsRecord): Promise<number> {
    this.check();
    // The same rules as every other store, so a record is valid or not regardless of backend.
    const problem = validateRecord(record);
    if (problem) throw new StoreInvalidRecordError(problem);
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(record.id) || record.id.includes('/')) {
      throw new EtcdBadRecordError(`record id ${JSON.stringify(record.id)} must be 1-128 of [A-Za-z0-9_.-]`);
    }
    const name = record.name.toLowerCase().replace(/\.$/, '');
    if (name === '' || name.includes('/') || name.split('.').some((l) => l === '')) {
      throw new EtcdBadRecordError(`record name ${JSON.stringify(record.name)} is not a domain name`);
    }
    const [key, bare] = recordKeys(this.prefix, name, record.id) as [string, string];
    if (this.isHealthKey(key)) throw new EtcdBadRecordError(`record name ${name} collides with the health prefix`);
    // One transaction: write the canonical key and drop a slash-less twin, so (name, id) is one key.
    const r = await this.gw.batch([
      { kind: 'delete', key: bare },
      { kind: 'put', key, value: encodeRecord({ ...record, name }) },
    ]);
    return r.revision;
  }

  async delete(name: string, id: string): Promise<boolean> {
    this.check();
    const n = name.toLowerCase().replace(/\.$/, '');
    const ops = recordKeys(this.prefix, n, id).map((key) => ({ kind: 'delete' as const, key }));
    const r = await this.gw.batch(ops);
    return r.deleted > 0;
  }

  async setHealth(health: IpHealth): Promise<number> {
    this.check();
    const key = healthKey(this.healthPrefix, health.ip);
    const prev = await this.gw.range(key, undefined, 1);
    return this.gw.put(key, encodeHealth(health, prev.kvs[0]?.value));
  }

  watch(fromRevision: number, onEvent: (e: StoreEvent) => void): Watch {
    this.check();
    const w = new EtcdWatch(this, fromRevision, onEvent);
    this.watches.add(w);
    w.start();
    return {
      close: () => {
        w.close();
        this.watches.delete(w);
      },
    };
  }

  /** Internal: translates raw etcd events (shared by the watch). */
  translate(ev: WatchEventRaw): StoreEvent | undefined {
    const revision = ev.kv.modRevision;
    if (this.isHealthKey(ev.kv.key)) {
      const h = decodeHealth(this.healthPrefix, ev.kv.key, ev.type === 'put' ? ev.kv.value : undefined);
      if (!h) return undefined;
      if (ev.type === 'delete') h.changedAtMs = 0;
      return { kind: 'health', health: h, revision };
    }
    if (ev.type === 'put') {
      const rec = this.decode(ev.kv.key, ev.kv.value);
      if (rec) return { kind: 'put', record: rec, revision };
      // Overwritten with something unusable: to readers the record is gone, so say so.
      const raw = decodeRecord(this.prefix, ev.kv.key, ev.kv.value);
      const gone = raw ? { name: raw.name, id: raw.id } : decodeRecordKey(this.prefix, ev.kv.key);
      return gone ? { kind: 'delete', name: gone.name, id: gone.id, revision } : undefined;
    }
    const prev = ev.prevKv ? decodeRecord(this.prefix, ev.prevKv.key, ev.prevKv.value) : undefined;
    const ref = prev ? { name: prev.name, id: prev.id } : decodeRecordKey(this.prefix, ev.kv.key);
    return ref ? { kind: 'delete', name: ref.name, id: ref.id, revision } : undefined;
  }

  /** Internal, for EtcdWatch. */
  get internals(): { gw: EtcdGateway; log: Logger; baseMs: number; maxMs: number; stallMs: number; watchKey: string; watchEnd: string } {
    // Watch the common ancestor of records and health so one stream sees both in order.
    const start = this.healthPrefix.startsWith(this.prefix + '/') ? this.prefix + '/' : '/';
    return { gw: this.gw, log: this.log, baseMs: this.backoffBaseMs, maxMs: this.backoffMaxMs, stallMs: this.watchStallMs, watchKey: start, watchEnd: prefixEnd(start) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.close();
    this.watches.clear();
    this.gw.close();
  }
}

/**
 * One consumer's watch. Revisions: `next` is the first revision not yet delivered.
 * invariant: every delivered event has revision < next, and events arrive in revision order.
 */
class EtcdWatch {
  private next: number;
  private closed = false;
  private stream: { close(): void } | undefined;
  private endpoint = 0;
  private attempt = 0;
  private wake: (() => void) | undefined;

  constructor(
    private readonly store: EtcdDnsStore,
    fromRevision: number,
    private readonly onEvent: (e: StoreEvent) => void,
  ) {
    this.next = fromRevision + 1;
  }

  start(): void {
    void this.loop();
  }

  private emit(e: StoreEvent): void {
    // A consumer may close the watch from inside its callback (as it does on `reset`).
    if (this.closed) return;
    try {
      this.onEvent(e);
    } catch (err) {
      // A throwing consumer must not kill the watch loop; it is the consumer's bug.
      this.store.internals.log.error({ err }, 'dns: etcd watch consumer threw');
    }
  }

  private async loop(): Promise<void> {
    const { gw, log, baseMs, maxMs, stallMs, watchKey, watchEnd } = this.store.internals;
    while (!this.closed) {
      try {
        await gw.ensureAuth();
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'dns: etcd authentication for the watch failed');
        await this.pause(jitteredBackoffMs(this.attempt++, baseMs, maxMs));
        continue;
      }
      if (this.closed) return;
      let compactedTo = 0;
      let gotCreated = false;
      let stallTimer: NodeJS.Timeout | undefined;
      let stalled = false;
      const armStall = (): void => {
        if (stallTimer) clearTimeout(stallTimer);
        stallTimer = setTimeout(() => {
          stalled = true;
          s.close();
        }, stallMs);
      };
      const s = gw.watch(this.endpoint, watchKey, watchEnd, this.next, (m) => {
        if (this.closed) return;
        armStall();
        switch (m.kind) {
          case 'created':
            gotCreated = true;
            this.attempt = 0;
            // An etcd whose revision went backwards (restored or rebuilt) cannot replay what we
            // missed: re-list.
            if (m.revision > 0 && m.revision + 1 < this.next) {
              log.warn({ revision: m.revision, next: this.next }, 'dns: etcd revision went backwards; resetting');
              this.next = m.revision + 1;
              this.emit({ kind: 'reset', revision: m.revision });
            }
            return;
          case 'events': {
            // One of our transactions can touch both spellings of a key (with and without the
            // trailing slash): consumers that skip events at an already-seen revision must get
            // one event per (name, id) and revision, and a put must not be undone by the delete
            // of its twin in the same revision.
            const outs: StoreEvent[] = [];
            for (const ev of m.events) {
              if (ev.kv.modRevision < this.next) continue; // already delivered before a reconnect
              const out = this.store.translate(ev);
              if (out) outs.push(out);
            }
            const ref = (e: StoreEvent): string =>
              e.kind === 'put' ? `${e.revision}\0${e.record.name}\0${e.record.id}` : e.kind === 'delete' ? `${e.revision}\0${e.name}\0${e.id}` : '';
            const putRefs = new Set(outs.filter((e) => e.kind === 'put').map(ref));
            const seenDeletes = new Set<string>();
            for (const out of outs) {
              if (out.kind === 'delete') {
                const k = ref(out);
                if (putRefs.has(k) || seenDeletes.has(k)) continue;
                seenDeletes.add(k);
              }
              this.emit(out);
            }
            this.next = Math.max(this.next, (m.events[m.events.length - 1]?.kv.modRevision ?? 0) + 1);
            return;
          }
          case 'progress':
            return;
          case 'compacted':
            compactedTo = m.compactRevision;
            return;
          case 'canceled':
            log.warn({ reason: m.reason }, 'dns: etcd watch canceled');
            // An expired token: get a new one before reopening.
            if (/auth token|user name is empty/i.test(m.reason)) gw.invalidateAuth();
            return;
        }
      });
      this.stream = s;
      armStall();
      await s.done;
      if (stallTimer) clearTimeout(stallTimer);
      this.stream = undefined;
      if (this.closed) return;
      if (stalled) log.warn({ stallMs, next: this.next }, 'dns: etcd watch silent too long; reopening');
      if (compactedTo > 0) {
        // History before compactedTo is gone: tell the consumer to re-list, then follow from
        // the current revision. A consumer calling snapshot() may see a few events again; they
        // are idempotent puts/deletes.
        try {
          const r = await gw.range(watchKey, watchEnd, 1);
          if (this.closed) return;
          log.info({ compactedTo, revision: r.revision }, 'dns: etcd watch compacted; resetting');
          this.next = r.revision + 1;
          this.emit({ kind: 'reset', revision: r.revision });
          continue;
        } catch (err) {
          log.warn({ err }, 'dns: etcd unreachable after compaction');
        }
      }
      if (!gotCreated) this.endpoint = (this.endpoint + 1) % gw.endpointCount;
      const delay = jitteredBackoffMs(this.attempt++, baseMs, maxMs);
      log.debug({ delay, next: this.next }, 'dns: etcd watch reconnecting');
      await this.pause(delay);
    }
  }

  /** Sleeps, cut short by close(). */
  private async pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.wake = undefined;
  }

  close(): void {
    this.closed = true;
    this.stream?.close();
    this.wake?.();
  }
}
