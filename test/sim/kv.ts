// The replicated key/value state machine the simulator runs on top of raft: put and
// compare-and-set on a few keys, with per-client sessions so a retried command (same client,
// same seq) is applied once and answered with its first result.

export type KvCommand =
  | { client: number; seq: number; op: 'put'; key: string; value: string }
  | { client: number; seq: number; op: 'cas'; key: string; expected: string | null; value: string };

export type KvResult = { kind: 'ok' } | { kind: 'cas'; swapped: boolean };

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeCommand(c: KvCommand): Uint8Array {
  return enc.encode(JSON.stringify(c));
}

export function decodeCommand(data: Uint8Array): KvCommand {
  return JSON.parse(dec.decode(data)) as KvCommand;
}

export class KvStateMachine {
  readonly data = new Map<string, string>();
  /** One session per client; a client has at most one command outstanding. Bounded by the client count. */
  readonly sessions = new Map<number, { seq: number; result: KvResult }>();
  /** invariant: every entry up to appliedIndex is reflected in data/sessions. */
  appliedIndex = 0;

  /** Applies a command; returns its result (the cached one for a duplicate), or undefined for a stale one. */
  apply(c: KvCommand): KvResult | undefined {
    const s = this.sessions.get(c.client);
    if (s !== undefined && s.seq === c.seq) return s.result;
    if (s !== undefined && s.seq > c.seq) return undefined;
    let result: KvResult;
    if (c.op === 'put') {
      this.data.set(c.key, c.value);
      result = { kind: 'ok' };
    } else {
      const cur = this.data.get(c.key) ?? null;
      const swapped = cur === c.expected;
      if (swapped) this.data.set(c.key, c.value);
      result = { kind: 'cas', swapped };
    }
    this.sessions.set(c.client, { seq: c.seq, result });
    return result;
  }

  get(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify({ data: [...this.data.entries()], sessions: [...this.sessions.entries()], appliedIndex: this.appliedIndex }));
  }

  static restore(bytes: Uint8Array): KvStateMachine {
    const sm = new KvStateMachine();
    if (bytes.byteLength === 0) return sm;
    const o = JSON.parse(dec.decode(bytes)) as {
      data: [string, string][];
      sessions: [number, { seq: number; result: KvResult }][];
      appliedIndex: number;
    };
    for (const [k, v] of o.data) sm.data.set(k, v);
    for (const [k, v] of o.sessions) sm.sessions.set(k, v);
    sm.appliedIndex = o.appliedIndex;
    return sm;
  }

  /** A canonical text of the state, to compare replicas. */
  fingerprint(): string {
    const d = [...this.data.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    return JSON.stringify(d);
  }
}
