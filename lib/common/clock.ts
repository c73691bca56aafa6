// Time seam. Anything that reads time takes a Clock so that deterministic cores and the
// simulator can drive time by hand; daemons pass `systemClock`.

export interface Clock {
  /** Wall-clock milliseconds since the epoch (for timestamps shown to people and stored). */
  nowMs(): number;
  /** Monotonic milliseconds, for timeouts and intervals: never goes backwards. */
  monotonicMs(): number;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
};

/** A clock moved only by `advance`, for tests and simulation. */
export class ManualClock implements Clock {
  // invariant: monoMs only increases
  private monoMs = 0;
  constructor(private wallMs = 1_700_000_000_000) {}
  nowMs(): number {
    return this.wallMs;
  }
  monotonicMs(): number {
    return this.monoMs;
  }
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`clock: cannot advance by ${ms}`);
    this.monoMs += ms;
    this.wallMs += ms;
  }
}
