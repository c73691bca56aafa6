// forward: names outside our zones go to upstream resolvers. Each upstream query gets a fresh
// random ID and a fresh socket (so a kernel-chosen random source port), and an answer is taken
// only if it comes from the upstream we asked with our ID and our question (RFC 5452). Upstreams
// that time out are marked down for a while and tried last. Answers are cached for their TTL
// (negative answers for the SOA minimum, RFC 2308) and served stale when every upstream fails
// (RFC 8767).
import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import type { Handler, Plugin, QueryCtx } from '../chain.js';
import { CLASS_IN, errorResponse, HEADER_LEN, RCODE, skipName, TYPE, type ParsedQuery } from '../wire.js';
import { silentLogger, systemClock, type Clock, type HostPort, type Logger } from '../../common/index.js';
import { ForwardOverloadError, UpstreamError } from '../errors.js';

export interface ForwardOptions {
  upstreams: HostPort[];
  timeoutMs: number;
  /** Cache entries kept (oldest inserted evicted first). */
  cacheMax: number;
  /** TTLs above this are capped. */
  maxTtlS: number;
  /** How long past expiry an answer may be served when upstreams fail; 0 disables. */
  staleMaxMs: number;
  /** Forwarded queries in flight; beyond it clients get SERVFAIL. */
  inflightMax: number;
  /** How long a failed upstream is avoided. */
  downMs: number;
  clock?: Clock;
  logger?: Logger;
}

interface CacheEntry {
  buf: Buffer;
  storedMs: number;
  expiresMs: number;
  /** Offsets of the TTL fields and their original values. */
  ttlOffsets: number[];
  ttls: number[];
}

interface Upstream {
  hp: HostPort;
  fails: number;
  downUntilMs: number;
}

/** TTL served with a stale answer (RFC 8767 section 4 recommends 30 s). */
const STALE_TTL_S = 30;
const UDP_PAYLOAD = 1232;

export class Forwarder {
  readonly counts = { cacheHits: 0, staleServed: 0, upstreamQueries: 0, upstreamFailures: 0, coalesced: 0 };
  private readonly cache = new Map<string, CacheEntry>();
  private readonly pending = new Map<string, Promise<Buffer>>();
  private readonly upstreams: Upstream[];
  private inflight = 0;
  private waiters = 0;
  private next = 0;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly sockets = new Set<Socket>();
  private closed = false;

  constructor(readonly opts: ForwardOptions) {
    this.upstreams = opts.upstreams.map((hp) => ({ hp, fails: 0, downUntilMs: 0 }));
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLogger;
  }

  get enabled(): boolean {
    return this.upstreams.length > 0;
  }

  upstreamHealth(): { upstream: string; up: boolean; fails: number }[] {
    const now = this.clock.monotonicMs();
    return this.upstreams.map((u) => ({ upstream: `${u.hp.host}:${u.hp.port}`, up: u.downUntilMs <= now, fails: u.fails }));
  }

  /** A cached answer for this query (fresh only), with TTLs aged and ID/question patched. */
  lookup(msg: Buffer, q: ParsedQuery): Buffer | null {
    const e = this.cache.get(cacheKey(q));
    if (!e) return null;
    const now = this.clock.nowMs();
    if (now >= e.expiresMs) return null;
    this.counts.cacheHits++;
    return this.materialize(e, msg, q, Math.floor((now - e.storedMs) / 1000), -1);
  }

  /** Resolves through the upstreams; the caller passes copies (msg, q) it will not reuse. */
  async resolve(msg: Buffer, q: ParsedQuery): Promise<Buffer> {
    const key = cacheKey(q);
    // Identical questions already on their way upstream share that answer: a burst of misses
    // for one name costs one upstream query, not one per client.
    const shared = this.pending.get(key);
    if (shared !== undefined) {
      // Waiters are bounded too (each holds a client's query until the answer comes).
      if (this.waiters >= this.opts.inflightMax * 8) throw new ForwardOverloadError(`${this.waiters} queries waiting on upstream answers`);
      this.counts.coalesced++;
      this.waiters++;
      try {
        return forClient(await shared, msg, q);
      } finally {
        this.waiters--;
      }
    }
    const p = this.resolveUpstream(msg, q, key);
    // Bounded: at most inflightMax upstream resolutions exist, each with one entry here.
    this.pending.set(key, p);
    try {
      return await p;
    } finally {
      this.pending.delete(key);
    }
  }

  private async resolveUpstream(msg: Buffer, q: ParsedQuery, key: string): Promise<Buffer> {
    if (this.inflight >= this.opts.inflightMax) throw new ForwardOverloadError(`${this.inflight} forwarded queries in flight`);
    this.inflight++;
    try {
      const upstreamQ = buildUpstreamQuery(msg, q);
      const order = this.order();
      let lastErr: unknown = null;
      for (const u of order) {
        try {
          this.counts.upstreamQueries++;
          let resp = await this.udpExchange(u, upstreamQ.buf, upstreamQ.id, msg, q);
          // Truncated over UDP: ask the same upstream again over TCP for the full answer.
          if (resp[2]! & 0x02) resp = await this.tcpExchange(u, upstreamQ.buf, upstreamQ.id, msg, q);
          u.fails = 0;
          u.downUntilMs = 0;
          const out = rewriteForClient(resp, msg, q);
          this.store(key, out);
          return out;
        } catch (e) {
          lastErr = e;
          this.counts.upstreamFailures++;
          u.fails++;
          u.downUntilMs = this.clock.monotonicMs() + this.opts.downMs;
          this.log.debug({ err: e, upstream: `${u.hp.host}:${u.hp.port}` }, 'forward: upstream failed');
          if (this.closed) break;
        }
      }
      const stale = this.cache.get(key);
      if (stale && this.opts.staleMaxMs > 0 && this.clock.nowMs() < stale.expiresMs + this.opts.staleMaxMs) {
        this.counts.staleServed++;
        return this.materialize(stale, msg, q, 0, STALE_TTL_S);
      }
      throw new UpstreamError(`every upstream failed for ${q.name(msg)}`, { cause: lastErr });
    } finally {
      this.inflight--;
    }
  }

  close(): void {
    this.closed = true;
    for (const s of this.sockets) s.close();
    this.sockets.clear();
    this.cache.clear();
  }

  /** Healthy upstreams first, rotating so load spreads; down ones last as a final try. */
  private order(): Upstream[] {
    const now = this.clock.monotonicMs();
    const n = this.upstreams.length;
    const start = this.next++ % Math.max(1, n);
    const rotated = [...this.upstreams.slice(start), ...this.upstreams.slice(0, start)];
    return [...rotated.filter((u) => u.downUntilMs <= now), ...rotated.filter((u) => u.downUntilMs > now)];
  }

  private udpExchange(u: Upstream, query: Buffer, id: number, msg: Buffer, q: ParsedQuery): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const sock = createSocket(u.hp.host.includes(':') ? 'udp6' : 'udp4');
      this.sockets.add(sock);
      let done = false;
      const finish = (err: Error | null, b?: Buffer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.sockets.delete(sock);
        try {
          sock.close();
        } catch {
          // already closed by close()
        }
        if (err) reject(err);
        else resolve(b!);
      };
      const timer = setTimeout(() => finish(new UpstreamError(`${u.hp.host}:${u.hp.port} timed out after ${this.opts.timeoutMs}ms`)), this.opts.timeoutMs);
      sock.on('error', (e) => finish(e));
      sock.on('message', (b, rinfo) => {
        // Spoofing defence: source, ID and question must all match what we sent.
        if (rinfo.port !== u.hp.port || normalizeAddr(rinfo.address) !== normalizeAddr(u.hp.host)) return;
        if (!matchesQuestion(b, id, msg, q)) return;
        finish(null, b);
      });
      sock.send(query, u.hp.port, u.hp.host, (err) => {
        if (err) finish(err);
      });
    });
  }

  private tcpExchange(u: Upstream, query: Buffer, id: number, msg: Buffer, q: ParsedQuery): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: u.hp.host, port: u.hp.port });
      let buf = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | null, b?: Buffer): void => {
        if (done) return;
        done = true;
        s.destroy();
        if (err) reject(err);
        else resolve(b!);
      };
      s.setTimeout(this.opts.timeoutMs, () => finish(new UpstreamError(`${u.hp.host}:${u.hp.port} TCP timed out`)));
      s.on('error', (e) => finish(e));
      s.on('connect', () => {
        const framed = Buffer.allocUnsafe(query.length + 2);
        framed.writeUInt16BE(query.length, 0);
        query.copy(framed, 2);
        s.write(framed);
      });
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length > 65537) return finish(new UpstreamError('oversized TCP answer'));
        if (buf.length >= 2) {
          const len = buf.readUInt16BE(0);
          if (buf.length >= len + 2) {
            const b = buf.subarray(2, 2 + len);
            if (!matchesQuestion(b, id, msg, q)) return finish(new UpstreamError('TCP answer does not match the question'));
            finish(null, b);
          }
        }
      });
      s.on('end', () => finish(new UpstreamError('upstream closed the TCP connection early')));
    });
  }

  private store(key: string, resp: Buffer): void {
    const rcode = resp[3]! & 0x0f;
    if (rcode !== RCODE.NOERROR && rcode !== RCODE.NXDOMAIN) return;
    const scan = scanTtls(resp);
    if (scan === null) return;
    let ttl = scan.minTtl;
    if (scan.answerCount === 0 || rcode === RCODE.NXDOMAIN) {
      // RFC 2308 section 5: no SOA, no negative caching.
      if (scan.negTtl < 0) return;
      ttl = scan.negTtl;
    }
    ttl = Math.min(ttl, this.opts.maxTtlS);
    if (ttl <= 0 && this.opts.staleMaxMs <= 0) return;
    const now = this.clock.nowMs();
    if (this.cache.size >= this.opts.cacheMax) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.delete(key);
    this.cache.set(key, { buf: resp, storedMs: now, expiresMs: now + ttl * 1000, ttlOffsets: scan.offsets, ttls: scan.ttls });
  }

  private materialize(e: CacheEntry, msg: Buffer, q: ParsedQuery, agedS: number, fixedTtl: number): Buffer {
    const out = Buffer.from(e.buf);
    out[0] = msg[0]!;
    out[1] = msg[1]!;
    msg.copy(out, HEADER_LEN, HEADER_LEN, q.qEnd);
    for (let i = 0; i < e.ttlOffsets.length; i++) {
      const t = fixedTtl >= 0 ? Math.min(fixedTtl, e.ttls[i]!) : Math.max(0, e.ttls[i]! - agedS);
      out.writeUInt32BE(t, e.ttlOffsets[i]!);
    }
    return out;
  }
}

/** Another client's copy of an answer: its ID, RD bit and question bytes (0x20 case). */
function forClient(b: Buffer, msg: Buffer, q: ParsedQuery): Buffer {
  const out = Buffer.from(b);
  out[0] = msg[0]!;
  out[1] = msg[1]!;
  out[2] = (out[2]! & 0xfe) | (msg[2]! & 0x01);
  msg.copy(out, HEADER_LEN, HEADER_LEN, q.qEnd);
  return out;
}

function cacheKey(q: ParsedQuery): string {
  return q.wireKey + (q.edns ? (q.ednsDo ? '3' : '1') : '0');
}

function normalizeAddr(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/** Our query to the upstream: random ID, RD, the client's question, our EDNS payload size. */
function buildUpstreamQuery(msg: Buffer, q: ParsedQuery): { buf: Buffer; id: number } {
  const qLen = q.qEnd - HEADER_LEN;
  const buf = Buffer.alloc(HEADER_LEN + qLen + 11);
  const id = randomInt(0, 65536);
  buf.writeUInt16BE(id, 0);
  buf[2] = 0x01;
  buf[3] = q.flags & 0x10;
  buf.writeUInt16BE(1, 4);
  buf.writeUInt16BE(1, 10);
  msg.copy(buf, HEADER_LEN, HEADER_LEN, q.qEnd);
  const o = HEADER_LEN + qLen;
  buf[o] = 0;
  buf.writeUInt16BE(TYPE.OPT, o + 1);
  buf.writeUInt16BE(UDP_PAYLOAD, o + 3);
  buf.writeUInt16BE(q.ednsDo ? 0x8000 : 0, o + 7);
  return { buf, id };
}

/** ID, QR and the question (case-insensitively) must match. */
function matchesQuestion(b: Buffer, id: number, msg: Buffer, q: ParsedQuery): boolean {
  if (b.length < q.qEnd || b.readUInt16BE(0) !== id || !(b[2]! & 0x80)) return false;
  if (b.readUInt16BE(4) !== 1) return false;
  for (let i = HEADER_LEN; i < q.qEnd; i++) {
    let x = b[i]!;
    let y = msg[i]!;
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}

/**
 * The upstream answer as the client should see it: its ID and question bytes, without the
 * upstream's OPT, plus our OPT when the client sent EDNS. Throws UpstreamError on a malformed
 * answer (treated as an upstream failure).
 */
function rewriteForClient(resp: Buffer, msg: Buffer, q: ParsedQuery): Buffer {
  const an = resp.readUInt16BE(6);
  const ns = resp.readUInt16BE(8);
  const ar = resp.readUInt16BE(10);
  let off = q.qEnd;
  const keep: [number, number][] = [];
  for (let i = 0; i < an + ns + ar; i++) {
    const start = off;
    const nameEnd = skipName(resp, resp.length, off);
    if (nameEnd < 0 || nameEnd + 10 > resp.length) throw new UpstreamError('malformed upstream answer');
    const type = resp.readUInt16BE(nameEnd);
    off = nameEnd + 10 + resp.readUInt16BE(nameEnd + 8);
    if (off > resp.length) throw new UpstreamError('malformed upstream answer');
    if (!(i >= an + ns && type === TYPE.OPT)) keep.push([start, off]);
  }
  const arKept = keep.length - an - ns;
  const body = keep.reduce((n, [a, b]) => n + (b - a), 0);
  const out = Buffer.allocUnsafe(q.qEnd + body + (q.edns ? 11 : 0));
  resp.copy(out, 0, 0, HEADER_LEN);
  out[0] = msg[0]!;
  out[1] = msg[1]!;
  out[2] = (out[2]! & 0xfe) | (msg[2]! & 0x01);
  msg.copy(out, HEADER_LEN, HEADER_LEN, q.qEnd);
  let o = q.qEnd;
  for (const [a, b] of keep) {
    resp.copy(out, o, a, b);
    o += b - a;
  }
  out.writeUInt16BE(arKept + (q.edns ? 1 : 0), 10);
  if (q.edns) {
    out[o] = 0;
    out.writeUInt16BE(TYPE.OPT, o + 1);
    out.writeUInt16BE(UDP_PAYLOAD, o + 3);
    out.writeUInt32BE(q.ednsDo ? 0x8000 : 0, o + 5);
    out.writeUInt16BE(0, o + 9);
  }
  return out;
}

/** TTL fields of every non-OPT record, the minimum answer TTL and the negative TTL (SOA). */
function scanTtls(b: Buffer): { offsets: number[]; ttls: number[]; minTtl: number; negTtl: number; answerCount: number } | null {
  const qEnd = skipName(b, b.length, HEADER_LEN);
  if (qEnd < 0) return null;
  const an = b.readUInt16BE(6);
  const ns = b.readUInt16BE(8);
  const ar = b.readUInt16BE(10);
  let off = qEnd + 4;
  const offsets: number[] = [];
  const ttls: number[] = [];
  let minTtl = Number.MAX_SAFE_INTEGER;
  let negTtl = -1;
  for (let i = 0; i < an + ns + ar; i++) {
    const ne = skipName(b, b.length, off);
    if (ne < 0 || ne + 10 > b.length) return null;
    const type = b.readUInt16BE(ne);
    const rdlen = b.readUInt16BE(ne + 8);
    const end = ne + 10 + rdlen;
    if (end > b.length) return null;
    if (type !== TYPE.OPT) {
      const ttl = b.readUInt32BE(ne + 4) & 0x7fffffff;
      offsets.push(ne + 4);
      ttls.push(ttl);
      if (i < an) minTtl = Math.min(minTtl, ttl);
      if (i >= an && i < an + ns && type === TYPE.SOA && rdlen >= 22) negTtl = Math.min(ttl, b.readUInt32BE(end - 4));
    }
    off = end;
  }
  return { offsets, ttls, minTtl: an > 0 ? minTtl : 0, negTtl, answerCount: an };
}

export interface ForwardPlugin {
  plugin: Plugin;
  forwarder: Forwarder;
}

export function forwardPlugin(forwarder: Forwarder, log: Logger = silentLogger): ForwardPlugin {
  const plugin: Plugin = (next: Handler): Handler => (ctx: QueryCtx) => {
    // Only class IN goes upstream (no CHAOS probes of our resolvers through us).
    if (!forwarder.enabled || ctx.q.qclass !== CLASS_IN) return next(ctx);
    ctx.noCache = true;
    const hit = forwarder.lookup(ctx.msg, ctx.q);
    if (hit) return hit;
    // The server reuses ctx and its buffers after we return: copy what the answer needs.
    const msg = Buffer.from(ctx.msg.subarray(0, ctx.q.qEnd));
    const q = ctx.q.clone(ctx.msg);
    const ednsUdp = ctx.ednsUdp;
    return forwarder.resolve(msg, q).catch((err: unknown) => {
      log.debug({ err }, 'forward: failed');
      return errorResponse(msg, q, RCODE.SERVFAIL, { ednsUdp });
    });
  };
  return { plugin, forwarder };
}

/** Nameservers from resolv.conf text; `port` is applied to each. */
export function parseResolvConf(text: string, port = 53): HostPort[] {
  const out: HostPort[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && m[1]) out.push({ host: m[1].replace(/%.*$/, ''), port });
  }
  return out;
}
