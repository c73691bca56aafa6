// A small etcd v3 client over etcd's JSON gateway (`/v3/kv/*`, `/v3/watch`), used by
// EtcdDnsStore. Why the gateway and not the `etcd3` npm package: the gateway is part of every
// etcd since 3.3 (Debian's 3.4 included), it needs no gRPC stack or extra dependency, and owning
// the watch stream lets us decide exactly what happens on compaction, disconnects and endpoint
// failover (etcd3's watcher reconnects on its own and hides compaction behind its own events).
// Keys and values are bytes (base64 in JSON); 64-bit integers arrive as decimal strings.
import { request as httpRequest, Agent as HttpAgent, type IncomingMessage, type ClientRequest } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { defineError } from '../../common/index.js';

/** etcd could not be reached, answered with an error, or answered with something unreadable. */
export class EtcdUnavailableError extends defineError('dns', 'DNS_ETCD_UNAVAILABLE') {}
/** A response or range went past a configured bound (too many keys, too large a body). */
export class EtcdLimitError extends defineError('dns', 'DNS_ETCD_LIMIT') {}

export interface EtcdGatewayOptions {
  /** `http://127.0.0.1:2379` style URLs; tried in order, the last one that worked first. */
  endpoints: string[];
  timeoutMs?: number;
  /** Largest response body read for one call (ranges of big prefixes). */
  maxResponseBytes?: number;
  /** PEM CA / client cert / key for https endpoints. */
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** etcd user and password, when the cluster has auth enabled (`etcdctl auth enable`). */
  username?: string;
  password?: string;
}

/** etcd refused our credentials or the user lacks permission on the prefix. */
export class EtcdAuthError extends defineError('dns', 'DNS_ETCD_AUTH') {}

/** Errors etcd gives for a missing or expired auth token; a fresh token fixes them. */
const AUTH_TOKEN_RE = /invalid auth token|user name is empty|auth token is expired|token expired/i;

export interface EtcdKv {
  key: string;
  value: string;
  modRevision: number;
  createRevision: number;
}

export interface RangeResult {
  kvs: EtcdKv[];
  revision: number;
  more: boolean;
}

export type EtcdOp =
  | { kind: 'put'; key: string; value: string }
  | { kind: 'delete'; key: string; rangeEnd?: string };

export interface WatchEventRaw {
  type: 'put' | 'delete';
  kv: EtcdKv;
  prevKv?: EtcdKv;
}

/** What one watch stream message means; `compacted` ends the stream. */
export type WatchMessage =
  | { kind: 'created'; revision: number }
  | { kind: 'events'; revision: number; events: WatchEventRaw[] }
  | { kind: 'progress'; revision: number }
  | { kind: 'compacted'; compactRevision: number }
  | { kind: 'canceled'; reason: string };

export interface WatchStream {
  /** Resolves when the stream ends for any reason (closed, error, server end). */
  readonly done: Promise<void>;
  close(): void;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: unknown): string => (typeof s === 'string' ? Buffer.from(s, 'base64').toString('utf8') : '');
const num = (v: unknown): number => {
  const n = typeof v === 'string' ? Number(v) : typeof v === 'number' ? v : 0;
  return Number.isSafeInteger(n) ? n : 0;
};

/**
 * The smallest key greater than every key starting with `prefix` (etcd's range_end for a
 * prefix). Our prefixes are ASCII and end in `/`, so bumping the last character suffices.
 */
export function prefixEnd(prefix: string): string {
  const last = prefix.charCodeAt(prefix.length - 1);
  if (prefix === '' || !(last < 0x7f)) throw new EtcdLimitError(`cannot range over prefix ${JSON.stringify(prefix)}`);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

function parseKv(raw: unknown): EtcdKv {
  const o = (raw ?? {}) as Record<string, unknown>;
  return { key: unb64(o.key), value: unb64(o.value), modRevision: num(o.mod_revision), createRevision: num(o.create_revision) };
}

export class EtcdGateway {
  private readonly endpoints: URL[];
  // invariant: 0 <= current < endpoints.length; the endpoint that answered last.
  private current = 0;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  private readonly httpsAgent: HttpsAgent;
  private readonly tls: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  private authToken: string | undefined;
  private authing: Promise<void> | undefined;

  constructor(private readonly opts: EtcdGatewayOptions) {
    if (opts.endpoints.length === 0) throw new EtcdUnavailableError('no etcd endpoints configured');
    this.endpoints = opts.endpoints.map((e) => new URL(e));
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.maxResponseBytes = opts.maxResponseBytes ?? 64 * 1024 * 1024;
    this.tls = { ...(opts.ca ? { ca: opts.ca } : {}), ...(opts.cert ? { cert: opts.cert } : {}), ...(opts.key ? { key: opts.key } : {}) };
    this.httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 16, ...this.tls });
  }

  /**
   * `stream`: a long-lived watch gets its own connection (agent: false). Sharing the pooled
   * agent would let enough open watches take every pooled socket and queue unary calls forever.
   */
  private open(url: URL, path: string, body: string, timeoutMs: number | undefined, stream = false, token: string | null = this.authToken ?? null): ClientRequest {
    const https = url.protocol === 'https:';
    const req = (https ? httpsRequest : httpRequest)({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port === '' ? (https ? 443 : 80) : Number(url.port),
      method: 'POST',
      path: url.pathname.replace(/\/$/, '') + path,
      agent: stream ? false : https ? this.httpsAgent : this.httpAgent,
      ...(stream && https ? this.tls : {}),
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        ...(token !== null ? { authorization: token } : {}),
      },
      timeout: timeoutMs,
    });
    req.end(body);
    return req;
  }

  /**
   * Gets an auth token when a user is configured and we hold none (simple tokens expire, so a
   * call that fails with an auth-token error drops the token and comes back here once).
   */
  async ensureAuth(): Promise<void> {
    if (this.opts.username === undefined || this.authToken !== undefined) return;
    this.authing ??= (async () => {
      try {
        const out = await this.callRaw('/v3/auth/authenticate', JSON.stringify({ name: this.opts.username, password: this.opts.password ?? '' }), null);
        if (typeof out.token !== 'string' || out.token === '') throw new EtcdAuthError('etcd returned no auth token');
        this.authToken = out.token;
      } catch (e) {
        if (e instanceof EtcdUnavailableError && /etcd answered/.test(e.message)) throw new EtcdAuthError(`authentication as ${this.opts.username} failed: ${e.message}`, { cause: e });
        throw e;
      } finally {
        this.authing = undefined;
      }
    })();
    await this.authing;
  }

  /** Forgets the token (it expired or was refused); the next call authenticates again. */
  invalidateAuth(): void {
    this.authToken = undefined;
  }

  /** One unary gateway call, authenticated when configured, failing over across endpoints. */
  async call(path: string, payload: unknown): Promise<Record<string, unknown>> {
    const body = JSON.stringify(payload);
    await this.ensureAuth();
    try {
      return await this.callRaw(path, body, this.authToken ?? null);
    } catch (e) {
      if (this.opts.username === undefined || !(e instanceof EtcdUnavailableError) || !AUTH_TOKEN_RE.test(e.message)) throw e;
      this.invalidateAuth();
      await this.ensureAuth();
      return this.callRaw(path, body, this.authToken ?? null);
    }
  }

  private async callRaw(path: string, body: string, token: string | null): Promise<Record<string, unknown>> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < this.endpoints.length; attempt++) {
      const idx = (this.current + attempt) % this.endpoints.length;
      const url = this.endpoints[idx]!;
      try {
        const out = await this.callOne(url, path, body, token);
        this.current = idx;
        return out;
      } catch (e) {
        // An error etcd itself reported (bad request, compacted) is not fixed by another member.
        if (e instanceof EtcdLimitError || (e instanceof EtcdUnavailableError && /etcd answered/.test(e.message))) throw e;
        lastErr = e;
      }
    }
    throw new EtcdUnavailableError(`no etcd endpoint answered ${path}: ${(lastErr as Error)?.message ?? lastErr}`, { cause: lastErr });
  }

  private callOne(url: URL, path: string, body: string, token: string | null): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const req = this.open(url, path, body, this.timeoutMs, false, token);
      req.on('timeout', () => req.destroy(new EtcdUnavailableError(`${url.host}${path} timed out after ${this.timeoutMs}ms`)));
      req.on('error', reject);
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > this.maxResponseBytes) {
            req.destroy(new EtcdLimitError(`response to ${path} exceeds ${this.maxResponseBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            reject(new EtcdUnavailableError(`etcd answered ${path} with non-JSON (HTTP ${res.statusCode}): ${text.slice(0, 200)}`));
            return;
          }
          const o = (parsed ?? {}) as Record<string, unknown>;
          if (res.statusCode !== 200 || 'error' in o) {
            const msg = typeof o.message === 'string' ? o.message : typeof o.error === 'string' ? o.error : text.slice(0, 200);
            reject(new EtcdUnavailableError(`etcd answered ${path} with HTTP ${res.statusCode}: ${msg}`));
            return;
          }
          resolve(o);
        });
      });
    });
  }

  async range(key: string, rangeEnd: string | undefined, limit: number): Promise<RangeResult> {
    const payload: Record<string, unknown> = { key: b64(key), limit: String(limit) };
    if (rangeEnd !== undefined) payload.range_end = b64(rangeEnd);
    const out = await this.call('/v3/kv/range', payload);
    const kvs = Array.isArray(out.kvs) ? out.kvs.map(parseKv) : [];
    return { kvs, revision: num((out.header as Record<string, unknown> | undefined)?.revision), more: out.more === true };
  }

  async put(key: string, value: string): Promise<number> {
    const out = await this.call('/v3/kv/put', { key: b64(key), value: b64(value) });
    return num((out.header as Record<string, unknown> | undefined)?.revision);
  }

  /** Deletes `key` (or [key, rangeEnd)); returns how many keys went and the revision. */
  async deleteRange(key: string, rangeEnd?: string): Promise<{ deleted: number; revision: number }> {
    const payload: Record<string, unknown> = { key: b64(key) };
    if (rangeEnd !== undefined) payload.range_end = b64(rangeEnd);
    const out = await this.call('/v3/kv/deleterange', payload);
    return { deleted: num(out.deleted), revision: num((out.header as Record<string, unknown> | undefined)?.revision) };
  }

  /** Unconditional atomic batch: all ops land in one revision or none do. */
  async batch(ops: EtcdOp[]): Promise<{ revision: number; deleted: number }> {
    const success = ops.map((op) =>
      op.kind === 'put'
        ? { request_put: { key: b64(op.key), value: b64(op.value) } }
        : { request_delete_range: op.rangeEnd === undefined ? { key: b64(op.key) } : { key: b64(op.key), range_end: b64(op.rangeEnd) } },
    );
    const out = await this.call('/v3/kv/txn', { compare: [], success });
    let deleted = 0;
    for (const r of Array.isArray(out.responses) ? out.responses : []) {
      const d = (r as Record<string, unknown>).response_delete_range as Record<string, unknown> | undefined;
      if (d) deleted += num(d.deleted);
    }
    return { revision: num((out.header as Record<string, unknown> | undefined)?.revision), deleted };
  }

  async compact(revision: number): Promise<void> {
    await this.call('/v3/kv/compaction', { revision: String(revision), physical: true });
  }

  /**
   * Opens one watch stream on [key, rangeEnd) from `startRevision`. The gateway writes one JSON
   * message per line. No failover here: the caller (the store) reconnects with backoff and
   * picks the next endpoint itself through `watchEndpoint`.
   */
  watch(
    endpointIndex: number,
    key: string,
    rangeEnd: string,
    startRevision: number,
    onMessage: (m: WatchMessage) => void,
    maxLineBytes = 16 * 1024 * 1024,
  ): WatchStream {
    const url = this.endpoints[endpointIndex % this.endpoints.length]!;
    const body = JSON.stringify({
      create_request: { key: b64(key), range_end: b64(rangeEnd), start_revision: String(startRevision), prev_kv: true, progress_notify: true },
    });
    let req: ClientRequest | undefined;
    let closed = false;
    const done = new Promise<void>((resolve) => {
      req = this.open(url, '/v3/watch', body, undefined, true);
      // Only the connect phase gets a timeout: an idle watch is normal and may last hours.
      const connectTimer = setTimeout(() => req?.destroy(new EtcdUnavailableError(`watch connect to ${url.host} timed out`)), this.timeoutMs);
      req.on('error', () => {
        clearTimeout(connectTimer);
        resolve();
      });
      req.on('close', () => {
        clearTimeout(connectTimer);
        resolve();
      });
      req.on('response', (res: IncomingMessage) => {
        clearTimeout(connectTimer);
        res.socket.setKeepAlive(true, 10_000);
        if (res.statusCode !== 200) {
          res.resume();
          req?.destroy();
          return;
        }
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          if (buf.length > maxLineBytes) {
            req?.destroy(new EtcdLimitError(`watch message exceeds ${maxLineBytes} bytes`));
            return;
          }
          let nl: number;
          while (!closed && (nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line === '') continue;
            const m = decodeWatchLine(line);
            if (m) onMessage(m);
            if (m && (m.kind === 'compacted' || m.kind === 'canceled')) {
              req?.destroy();
              return;
            }
          }
        });
        res.on('error', () => resolve());
        res.on('end', () => resolve());
      });
    });
    return {
      done,
      close: () => {
        closed = true;
        req?.destroy();
      },
    };
  }

  get endpointCount(): number {
    return this.endpoints.length;
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** Decodes one line of the gateway's watch stream; undefined for lines we do not understand. */
export function decodeWatchLine(line: string): WatchMessage | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { kind: 'canceled', reason: `unreadable watch message: ${line.slice(0, 100)}` };
  }
  if (o.error !== undefined) {
    const e = o.error as Record<string, unknown>;
    return { kind: 'canceled', reason: String(e.message ?? JSON.stringify(e)) };
  }
  const r = o.result as Record<string, unknown> | undefined;
  if (!r) return undefined;
  const revision = num((r.header as Record<string, unknown> | undefined)?.revision);
  const compact = num(r.compact_revision);
  if (compact > 0) return { kind: 'compacted', compactRevision: compact };
  if (r.canceled === true) return { kind: 'canceled', reason: String(r.cancel_reason ?? 'canceled by etcd') };
  if (r.created === true) return { kind: 'created', revision };
  const events = Array.isArray(r.events) ? r.events : [];
  if (events.length === 0) return { kind: 'progress', revision };
  return {
    kind: 'events',
    revision,
    events: events.map((ev) => {
      const e = ev as Record<string, unknown>;
      const out: WatchEventRaw = { type: e.type === 'DELETE' ? 'delete' : 'put', kv: parseKv(e.kv) };
      if (e.prev_kv !== undefined) out.prevKv = parseKv(e.prev_kv);
      return out;
    }),
  };
}
