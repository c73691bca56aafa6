// The server's in-memory view of the store: records by name, IP health, which names exist
// (including empty non-terminals), generated reverse (PTR) names, and memoised pick sets.
// Built from snapshot() and kept current by watch(); every change bumps `gen` and notifies
// listeners (the answer caches), so the hot path never reads the store.
import type { DnsRecord, DnsStore, HealthStatus, IpHealth, StoreEvent, Watch } from './store.js';
import { reverseName } from './wire.js';
import { isIP } from 'node:net';
import { silentLogger, type Logger } from '../common/index.js';
import { ZoneConfigError } from './errors.js';
import { isValidName } from './wire.js';

export interface ZoneSpec {
  /** Zone apex, dotted lower-case (`cluster.local`). */
  name: string;
  /** Name servers for NS at the apex and SOA mname; default `ns.<zone>`. */
  nameservers: string[];
  /** SOA rname as a name (`hostmaster.cluster.local`). */
  hostmaster: string;
  /** Negative-caching TTL (SOA minimum), RFC 2308. */
  negativeTtl: number;
  /** TTL of records that carry none, and of SOA/NS. */
  defaultTtl: number;
  /** True for generated reverse zones (PTR from A/AAAA). */
  reverse: boolean;
}

export interface IndexOptions {
  zones: ZoneSpec[];
  logger?: Logger;
  /** Memoised pick sets kept (cleared on every change anyway). */
  pickMemoMax?: number;
}

/** The IPs a name resolves to for picking, with their precomputed hashes. */
export interface PickSet {
  /** Terminal name holding the addresses (after CNAMEs). */
  name: string;
  family: 4 | 6;
  /** All addresses, sorted. */
  all: string[];
  /** Healthy addresses (not down), sorted, and their hashes (same order). */
  healthy: string[];
  healthyHashes: Uint32Array;
}

const NO_PICK: PickSet = { name: '', family: 4, all: [], healthy: [], healthyHashes: new Uint32Array(0) };

/** FNV-1a over a string's UTF-16 units: cheap, stable across processes and restarts. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class ZoneIndex {
  /** Bumped on every applied change; caches compare against it. */
  gen = 0;
  revision = 0;
  ready = false;
  private readonly records = new Map<string, Map<string, DnsRecord>>();
  private readonly health = new Map<string, HealthStatus>();
  // invariant: nodeRefs[n] = number of records (incl. generated PTRs) at n or below n
  private readonly nodeRefs = new Map<string, number>();
  private readonly ptrs = new Map<string, Set<string>>();
  private zones: ZoneSpec[] = [];
  private readonly pickMemo = new Map<string, PickSet>();
  private readonly pickMemoMax: number;
  private readonly listeners = new Set<() => void>();
  private watch: Watch | null = null;
  private store: DnsStore | null = null;
  private readonly log: Logger;
  private resyncing = false;

  constructor(opts: IndexOptions) {
    this.setZones(opts.zones);
    this.log = opts.logger ?? silentLogger;
    this.pickMemoMax = opts.pickMemoMax ?? 65536;
  }

  setZones(zones: ZoneSpec[]): void {
    for (const z of zones) if (!isValidName(z.name)) throw new ZoneConfigError(`bad zone name ${JSON.stringify(z.name)}`);
    // Longest first so the most specific zone wins (a delegated sub-zone we also serve).
    this.zones = [...zones].sort((a, b) => b.name.length - a.name.length);
    this.changed();
  }

  get zoneList(): readonly ZoneSpec[] {
    return this.zones;
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Loads a snapshot and follows the store; resolves once the first snapshot is applied. */
  async attach(store: DnsStore): Promise<void> {
    this.store = store;
    await this.resync();
  }

  private async resync(): Promise<void> {
    if (!this.store || this.resyncing) return;
    this.resyncing = true;
    try {
      this.watch?.close();
      const snap = await this.store.snapshot();
      this.load(snap.records, snap.health, snap.revision);
      this.watch = this.store.watch(snap.revision, (e) => this.apply(e));
      this.ready = true;
    } finally {
      this.resyncing = false;
    }
  }

  detach(): void {
    this.watch?.close();
    this.watch = null;
    this.store = null;
  }

  load(records: DnsRecord[], health: IpHealth[], revision: number): void {
    this.records.clear();
    this.health.clear();
    this.nodeRefs.clear();
    this.ptrs.clear();
    for (const r of records) this.putRecord(r);
    for (const h of health) this.health.set(h.ip, h.status);
    this.revision = revision;
    this.changed();
  }

  apply(e: StoreEvent): void {
    if (e.revision <= this.revision && e.kind !== 'reset') return;
    switch (e.kind) {
      case 'put':
        this.putRecord(e.record);
        break;
      case 'delete':
        this.deleteRecord(e.name, e.id);
        break;
      case 'health':
        this.health.set(e.health.ip, e.health.status);
        break;
      case 'reset':
        this.resync().catch((err: unknown) => this.log.error({ err }, 'dns index: resync after reset failed'));
        return;
    }
    this.revision = e.revision;
    this.changed();
  }

  private changed(): void {
    this.gen++;
    this.pickMemo.clear();
    for (const fn of this.listeners) fn();
  }

  private putRecord(r: DnsRecord): void {
    let byId = this.records.get(r.name);
    if (!byId) {
      byId = new Map();
      this.records.set(r.name, byId);
    }
    const old = byId.get(r.id);
    if (old) this.unindex(old);
    byId.set(r.id, r);
    this.ref(r.name, 1);
    if (r.type === 'A' || r.type === 'AAAA') {
      const rev = reverseName(r.value);
      if (rev) {
        let set = this.ptrs.get(rev);
        if (!set) {
          set = new Set();
          this.ptrs.set(rev, set);
        }
        if (!set.has(r.name)) {
          set.add(r.name);
          this.ref(rev, 1);
        }
      }
    }
  }

  private deleteRecord(name: string, id: string): void {
    const byId = this.records.get(name);
    const old = byId?.get(id);
    if (!byId || !old) return;
    byId.delete(id);
    if (byId.size === 0) this.records.delete(name);
    this.unindex(old);
  }

  private unindex(r: DnsRecord): void {
    this.ref(r.name, -1);
    if (r.type === 'A' || r.type === 'AAAA') {
      const rev = reverseName(r.value);
      const set = rev ? this.ptrs.get(rev) : undefined;
      // Another A record of the same name may still hold this IP.
      const still = [...(this.records.get(r.name)?.values() ?? [])].some((x) => x.type === r.type && x.value === r.value);
      if (rev && set && !still && set.delete(r.name)) {
        if (set.size === 0) this.ptrs.delete(rev);
        this.ref(rev, -1);
      }
    }
  }

  private ref(name: string, delta: number): void {
    let n = name;
    for (;;) {
      const v = (this.nodeRefs.get(n) ?? 0) + delta;
      if (v <= 0) this.nodeRefs.delete(n);
      else this.nodeRefs.set(n, v);
      const dot = n.indexOf('.');
      if (dot < 0) break;
      n = n.slice(dot + 1);
    }
  }

  /** The most specific zone we are authoritative for that contains `name`. */
  zoneOf(name: string): ZoneSpec | null {
    for (const z of this.zones) {
      if (name === z.name || (name.length > z.name.length && name.endsWith(z.name) && name.charCodeAt(name.length - z.name.length - 1) === 0x2e)) return z;
      if (z.name === '') return z;
    }
    return null;
  }

  /** True when the name owns records or has descendants that do (empty non-terminal). */
  exists(name: string): boolean {
    return this.nodeRefs.has(name);
  }

  recordsAt(name: string): Iterable<DnsRecord> {
    return this.records.get(name)?.values() ?? [];
  }

  /**
   * Records answering for `name` in zone `z`: its own, or those of the wildcard that synthesizes
   * it (RFC 4592: only `*.<closest encloser>`, so a wildcard never covers names below an
   * existing, even empty, node); null when the name does not exist.
   */
  nodeRecords(z: ZoneSpec, name: string): DnsRecord[] | null {
    const recs = [...this.recordsAt(name)];
    if (recs.length > 0 || this.exists(name) || name === z.name) return recs;
    let anc = name;
    while (anc !== z.name) {
      const dot = anc.indexOf('.');
      if (dot < 0) return null;
      anc = anc.slice(dot + 1);
      if (anc === z.name || this.exists(anc)) {
        const wild = [...this.recordsAt(`*.${anc}`)];
        return wild.length > 0 ? wild : null;
      }
    }
    return null;
  }

  /** Names whose A/AAAA give this reverse name (generated PTR targets). */
  ptrTargets(rev: string): Iterable<string> {
    return this.ptrs.get(rev) ?? [];
  }

  /** `unknown` counts as healthy: a new IP serves before the prober has seen it. */
  isHealthy(ip: string): boolean {
    return this.health.get(ip) !== 'down';
  }

  healthOf(ip: string): HealthStatus {
    return this.health.get(ip) ?? 'unknown';
  }

  /**
   * Addresses behind `name` for an A (family 4) or AAAA (6) question, after CNAMEs within our
   * zones; null when there is nothing to choose between (fewer than two addresses).
   * Memoised by `memoKey` (the lower-cased wire question) until the next change.
   */
  pickSet(memoKey: string, name: () => string, family: 4 | 6): PickSet | null {
    const memo = this.pickMemo.get(memoKey);
    if (memo !== undefined) return memo === NO_PICK ? null : memo;
    const set = this.computePickSet(name(), family);
    if (this.pickMemo.size >= this.pickMemoMax) this.pickMemo.clear();
    this.pickMemo.set(memoKey, set ?? NO_PICK);
    return set;
  }

  private computePickSet(qname: string, family: 4 | 6): PickSet | null {
    let name = qname;
    const type = family === 4 ? 'A' : 'AAAA';
    for (let hop = 0; hop < 8; hop++) {
      const z = this.zoneOf(name);
      if (!z) return null;
      // Wildcard-synthesized names pick too (per query name, as the zone answers them).
      const recs = this.nodeRecords(z, name);
      if (recs === null) return null;
      const cname = recs.find((r) => r.type === 'CNAME');
      if (cname) {
        name = cname.value;
        continue;
      }
      const ips = [...new Set(recs.filter((r) => r.type === type).map((r) => r.value))].sort();
      if (ips.length < 2) return null;
      const healthy = ips.filter((ip) => this.isHealthy(ip));
      const healthyHashes = new Uint32Array(healthy.length);
      healthy.forEach((ip, i) => (healthyHashes[i] = hashString(ip)));
      return { name, family, all: ips, healthy, healthyHashes };
    }
    return null;
  }
}

/** Builds zone specs from config lists (forward zones and reverse zones). */
export function makeZones(names: string[], reverseNames: string[], opts: { negativeTtl: number; defaultTtl: number; nameservers?: string[] }): ZoneSpec[] {
  const mk = (raw: string, reverse: boolean): ZoneSpec => {
    const name = raw.trim().toLowerCase().replace(/\.$/, '');
    if (!isValidName(name)) throw new ZoneConfigError(`bad zone name ${JSON.stringify(raw)}`);
    if (reverse && !/(^|\.)in-addr\.arpa$|(^|\.)ip6\.arpa$/.test(name)) throw new ZoneConfigError(`reverse zone ${raw} must be under in-addr.arpa or ip6.arpa`);
    const ns = opts.nameservers && opts.nameservers.length > 0 ? opts.nameservers.map((n) => n.toLowerCase().replace(/\.$/, '')) : [name === '' ? 'ns' : `ns.${name}`];
    return { name, nameservers: ns, hostmaster: name === '' ? 'hostmaster' : `hostmaster.${name}`, negativeTtl: opts.negativeTtl, defaultTtl: opts.defaultTtl, reverse };
  };
  return [...names.map((n) => mk(n, false)), ...reverseNames.map((n) => mk(n, true))];
}

/** True when ip is a literal of the given family. */
export function ipFamily(ip: string): 0 | 4 | 6 {
  return isIP(ip) as 0 | 4 | 6;
}
