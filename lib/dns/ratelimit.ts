// Response-rate limiting per client IP, so the server cannot be turned into an amplifier by
// spoofed sources. A token bucket per client; past the limit, every `slip`-th query gets an
// empty truncated answer (TC) so a real client retries over TCP (which cannot be spoofed), and
// the rest are dropped, as in bind's RRL.
import { LruMap, systemClock, type Clock } from '../common/index.js';

export interface RateLimitOptions {
  /** Responses per second per client; 0 disables limiting. */
  perSecond: number;
  /** Bucket depth in responses. */
  burst: number;
  /** Every slip-th limited query gets a TC answer; 0 never. */
  slip: number;
  /** Clients tracked (least recently seen forgotten first). */
  clientsMax: number;
  clock?: Clock;
}

export const enum RateDecision {
  ALLOW = 0,
  DROP = 1,
  SLIP = 2,
}

interface Bucket {
  tokens: number;
  lastMs: number;
  limited: number;
}

export class RateLimiter {
  limited = 0;
  private readonly buckets: LruMap<string, Bucket>;
  private readonly clock: Clock;

  constructor(readonly opts: RateLimitOptions) {
    this.buckets = new LruMap(Math.max(1, opts.clientsMax));
    this.clock = opts.clock ?? systemClock;
  }

  get enabled(): boolean {
    return this.opts.perSecond > 0;
  }

  check(client: string): RateDecision {
    if (this.opts.perSecond <= 0) return RateDecision.ALLOW;
    const now = this.clock.monotonicMs();
    let b = this.buckets.get(client);
    if (b === undefined) {
      b = { tokens: this.opts.burst, lastMs: now, limited: 0 };
      this.buckets.set(client, b);
    } else {
      b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.lastMs) * this.opts.perSecond) / 1000);
      b.lastMs = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return RateDecision.ALLOW;
    }
    this.limited++;
    b.limited++;
    return this.opts.slip > 0 && b.limited % this.opts.slip === 0 ? RateDecision.SLIP : RateDecision.DROP;
  }
}
