// Choosing among the healthy IPs of a name. Session persistence has two layers: a sticky
// (client, name) -> IP table (bounded, idle expiry) that keeps a client where it is when IPs are
// added, and under it rendezvous (highest-random-weight) hashing of the client over the healthy
// IPs. The hash needs no shared state, so every worker, replica and restart agrees, and when the
// held IP goes down the client moves to the next IP in its own hash order while everyone else
// stays put.
import { LruMap, type Clock, systemClock } from '../common/index.js';
import { hashString, type PickSet } from './zoneindex.js';

export type PickMode = 'all' | 'one' | 'sticky';
export type AllDownPolicy = 'all' | 'servfail';

/** Answer every (healthy) address, shuffled. */
export const PICK_ALL = '*';
/** Every address is down and the policy says SERVFAIL. */
export const PICK_SERVFAIL = '!';

export interface PickerOptions {
  mode: PickMode;
  allDown: AllDownPolicy;
  stickyMax: number;
  stickyIdleMs: number;
  clock?: Clock;
  random?: () => number;
}

/** Counts by outcome, read by the metrics plugin. */
export interface PickCounts {
  stickyHit: number;
  hashed: number;
  random: number;
  all: number;
  allDown: number;
}

interface StickyEntry {
  ip: string;
  lastMs: number;
}

/**
 * One client's sticky entries, by terminal name, per address family. Keyed by client first so a
 * lookup needs no concatenated (client, name) string: V8 would flatten and hash it per query.
 */
interface ClientSessions {
  v4: Map<string, StickyEntry>;
  v6: Map<string, StickyEntry>;
  lastTouchMs: number;
}

/** Names remembered per client; past it the oldest is forgotten (hashing still applies). */
const NAMES_PER_CLIENT_MAX = 1024;

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Rendezvous weight of one (client, ip) pair. */
export function rendezvousScore(clientHash: number, ipHash: number): number {
  return fmix32((clientHash ^ Math.imul(ipHash, 0x9e3779b1)) >>> 0);
}

/** Index into set.healthy of the highest-weight IP for this client; -1 when none is healthy. */
export function rendezvousIndex(clientHash: number, set: PickSet): number {
  let best = -1;
  let bestScore = -1;
  const hs = set.healthyHashes;
  for (let i = 0; i < hs.length; i++) {
    const s = rendezvousScore(clientHash, hs[i]!);
    // Ties (vanishingly rare) break on the sorted position so all processes agree.
    if (s > bestScore) {
      bestScore = s;
      best = i;
    }
  }
  return best;
}

/** Every IP of the set in this client's hash order, best first (for tests and tools). */
export function rendezvousOrder(client: string, ips: readonly string[]): string[] {
  const ch = hashString(client);
  return [...ips].sort((a, b) => rendezvousScore(ch, hashString(b)) - rendezvousScore(ch, hashString(a)) || (a < b ? -1 : 1));
}

export class Picker {
  readonly counts: PickCounts = { stickyHit: 0, hashed: 0, random: 0, all: 0, allDown: 0 };
  // invariant: sticky.size <= stickyMax clients, each with <= NAMES_PER_CLIENT_MAX names per family
  private readonly sticky: LruMap<string, ClientSessions>;
  private readonly clock: Clock;
  private readonly random: () => number;

  constructor(readonly opts: PickerOptions) {
    this.sticky = new LruMap(Math.max(1, opts.stickyMax));
    this.clock = opts.clock ?? systemClock;
    this.random = opts.random ?? Math.random;
  }

  get stickySize(): number {
    return this.sticky.size;
  }

  /** An IP of the set, or PICK_ALL / PICK_SERVFAIL. `client` is the normalized client IP. */
  choose(client: string, set: PickSet, nowMs?: number): string {
    const healthy = set.healthy;
    if (healthy.length === 0) {
      this.counts.allDown++;
      return this.opts.allDown === 'all' ? PICK_ALL : PICK_SERVFAIL;
    }
    switch (this.opts.mode) {
      case 'all':
        this.counts.all++;
        return PICK_ALL;
      case 'one':
        this.counts.random++;
        return healthy[Math.floor(this.random() * healthy.length)]!;
      case 'sticky':
        return this.sticky_(client, set, nowMs ?? this.clock.monotonicMs());
    }
  }

  private sticky_(client: string, set: PickSet, now: number): string {
    // peek, not get: refreshing LRU order is a Map delete+insert, too dear for every query;
    // the order is refreshed when the client was last refreshed over a second ago.
    let sess = this.sticky.peek(client);
    if (sess === undefined) {
      sess = { v4: new Map(), v6: new Map(), lastTouchMs: now };
      this.sticky.set(client, sess);
    } else if (now - sess.lastTouchMs > 1000) {
      this.sticky.get(client);
      sess.lastTouchMs = now;
    }
    const byName = set.family === 6 ? sess.v6 : sess.v4;
    const e = byName.get(set.name);
    if (e !== undefined && now - e.lastMs <= this.opts.stickyIdleMs && set.healthy.includes(e.ip)) {
      e.lastMs = now;
      this.counts.stickyHit++;
      return e.ip;
    }
    const ip = set.healthy[rendezvousIndex(hashString(client), set)]!;
    this.counts.hashed++;
    if (e !== undefined) {
      e.ip = ip;
      e.lastMs = now;
    } else {
      if (byName.size >= NAMES_PER_CLIENT_MAX) {
        const oldest = byName.keys().next();
        if (!oldest.done) byName.delete(oldest.value);
      }
      byName.set(set.name, { ip, lastMs: now });
    }
    return ip;
  }

  clearSticky(): void {
    this.sticky.clear();
  }
}
