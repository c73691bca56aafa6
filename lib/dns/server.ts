// The DNS transport: UDP and TCP listeners (IPv4 and IPv6) in front of a Handler chain. UDP
// parses into one reused ParsedQuery/QueryCtx and answers synchronously from the cache when it
// can. TCP is length-prefixed with pipelining (answers may complete out of order, RFC 7766),
// idle timeouts, a connection limit and per-connection in-flight limits. Malformed input gets
// FORMERR or is dropped; a thrown bug in a plugin is logged and answered SERVFAIL, never a crash.
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { createServer, isIP, type Server, type Socket as NetSocket } from 'node:net';
import { lookup } from 'node:dns/promises';
import type { AddressInfo } from 'node:net';
import { silentLogger, systemClock, type Clock, type HostPort, type Logger } from '../common/index.js';
import { isPromise, QueryCtx, type Handler, type Response } from './chain.js';
import { errorResponse, normalizeClient, ParsedQuery, parseQuery, ParseStatus, RCODE } from './wire.js';
import { RateDecision, type RateLimiter } from './ratelimit.js';
import { ListenError } from './errors.js';
import { loadUdpBatch, type UdpBatchAddon } from './native/udpbatch.js';

export interface DnsServerOptions {
  listen: HostPort[];
  handler: Handler;
  /** Our EDNS UDP payload size (advertised and the cap for UDP answers). */
  ednsUdp: number;
  tcpIdleMs: number;
  tcpConnectionsMax: number;
  /** Queries of one TCP connection being answered at once; reading pauses beyond it. */
  tcpInflightMax: number;
  rateLimiter?: RateLimiter;
  logger?: Logger;
  /** Called for answers produced outside the chain (FORMERR, NOTIMP, BADVERS, slip). */
  onLocalAnswer?: (qtype: number, rcode: number) => void;
  /**
   * UDP I/O: `node` (dgram), or `native` (batched recvmmsg/sendmmsg addon with one
   * SO_REUSEPORT socket per process; falls back to dgram when it cannot be built or loaded).
   */
  udpIo?: 'node' | 'native';
  /** Time seam for the per-query clock read (sticky idle expiry, latency). */
  clock?: Clock;
}

export interface ServerCounts {
  dropped: number;
  formerr: number;
  errors: number;
  tcpConnections: number;
}

/** Sends to a literal IP without dgram's per-send dns.lookup() round through nextTick. */
const literalLookup4 = (addr: string, _o: unknown, cb: (e: Error | null, a: string, f: number) => void): void => cb(null, addr, 4);
const literalLookup6 = (addr: string, _o: unknown, cb: (e: Error | null, a: string, f: number) => void): void => cb(null, addr, 6);

export class DnsServer {
  readonly counts: ServerCounts = { dropped: 0, formerr: 0, errors: 0, tcpConnections: 0 };
  private readonly udp: Socket[] = [];
  private readonly native: NativeUdp[] = [];
  /** Which UDP path is serving (native only when the addon loaded). */
  udpIoInUse: 'node' | 'native' = 'node';
  private readonly tcp: Server[] = [];
  private readonly conns = new Set<NetSocket>();
  private readonly q = new ParsedQuery();
  private readonly ctx = new QueryCtx();
  private readonly log: Logger;
  private readonly clock: Clock;
  private handler: Handler;
  private rateLimiter: RateLimiter | undefined;
  private closing = false;

  constructor(private readonly opts: DnsServerOptions) {
    this.log = opts.logger ?? silentLogger;
    this.clock = opts.clock ?? systemClock;
    this.handler = opts.handler;
    this.rateLimiter = opts.rateLimiter;
  }

  /** Swaps the chain (config reload); queries in flight finish on the old one. */
  setHandler(h: Handler): void {
    this.handler = h;
  }

  setRateLimiter(rl: RateLimiter): void {
    this.rateLimiter = rl;
  }

  async start(): Promise<void> {
    try {
      let addon: UdpBatchAddon | null = null;
      if (this.opts.udpIo === 'native') {
        const l = loadUdpBatch();
        if ('addon' in l) addon = l.addon;
        else this.log.warn({ reason: l.error }, 'dns: batched UDP unavailable; using dgram');
      }
      this.udpIoInUse = addon ? 'native' : 'node';
      for (const given of this.opts.listen) {
        // Resolve a host name once here: the sockets only ever see literals (sends skip lookup).
        const hp = isIP(given.host) ? given : { host: (await lookup(given.host)).address, port: given.port };
        const port = addon ? this.listenNative(addon, hp) : await this.listenUdp(hp);
        await this.listenTcp({ host: hp.host, port });
      }
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  udpAddresses(): AddressInfo[] {
    return [...this.udp.map((s) => s.address()), ...this.native.map((n) => ({ address: n.host, family: n.host.includes(':') ? 'IPv6' : 'IPv4', port: n.port }))];
  }

  tcpAddresses(): AddressInfo[] {
    return this.tcp.map((s) => s.address() as AddressInfo);
  }

  private listenUdp(hp: HostPort): Promise<number> {
    const v6 = hp.host.includes(':');
    const sock = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6, lookup: (v6 ? literalLookup6 : literalLookup4) as never });
    return new Promise((resolve, reject) => {
      sock.once('error', (e) => reject(new ListenError(`cannot bind UDP ${hp.host}:${hp.port}: ${e.message}`, { cause: e })));
      sock.bind({ port: hp.port, address: hp.host }, () => {
        sock.removeAllListeners('error');
        sock.on('error', (e) => this.log.warn({ err: e }, 'dns: UDP socket error'));
        sock.on('message', (msg, rinfo) => this.onUdp(sock, msg, rinfo));
        // Bigger kernel buffers absorb bursts instead of dropping them (capped by net.core.*mem_max).
        try {
          sock.setRecvBufferSize(4 << 20);
          sock.setSendBufferSize(4 << 20);
        } catch (e) {
          this.log.debug({ err: e }, 'dns: cannot enlarge UDP socket buffers');
        }
        this.udp.push(sock);
        resolve(sock.address().port);
      });
    });
  }

  /** Binds a batched native UDP socket; returns its port. */
  private listenNative(addon: UdpBatchAddon, hp: HostPort): number {
    let n: NativeUdp;
    try {
      n = new NativeUdp(addon, hp.host, hp.port, (i, msg, len, client, addr) => this.onNative(n, i, msg, len, client, addr));
    } catch (e) {
      throw new ListenError(`cannot bind UDP ${hp.host}:${hp.port}: ${(e as Error).message}`, { cause: e });
    }
    this.native.push(n);
    return n.port;
  }

  /** One datagram of a native batch: answer into slot i, or send later when asynchronous. */
  private onNative(n: NativeUdp, i: number, msg: Buffer, len: number, client: string, addr: Buffer): void {
    const rl = this.rateLimiter;
    if (rl !== undefined && rl.enabled) {
      const d = rl.check(client);
      if (d !== RateDecision.ALLOW) {
        if (d === RateDecision.SLIP && parseQuery(msg, len, this.q) === ParseStatus.OK) {
          this.opts.onLocalAnswer?.(this.q.qtype, RCODE.NOERROR);
          n.answer(i, errorResponse(msg.subarray(0, len), this.q, RCODE.NOERROR, { tc: true, ednsUdp: this.opts.ednsUdp }));
        }
        return;
      }
    }
    const r = this.handle(msg, len, client, 'udp');
    if (r === null) return;
    if (isPromise(r)) {
      const maxSize = this.ctx.maxSize;
      const req = Buffer.from(msg.subarray(0, len));
      const q = this.q.clone(req);
      const to = Buffer.from(addr);
      r.then(
        (b) => {
          if (b !== null && !this.closing) n.sendLater(b.length > maxSize ? truncate(req, q, b, this.opts.ednsUdp) : b, to);
        },
        (err: unknown) => this.log.error({ err }, 'dns: async handler failed'),
      );
      return;
    }
    n.answer(i, r.length > this.ctx.maxSize ? truncate(msg, this.q, r, this.opts.ednsUdp) : r);
  }

  private onUdp(sock: Socket, msg: Buffer, rinfo: RemoteInfo): void {
    const client = normalizeClient(rinfo.address);
    const rl = this.rateLimiter;
    if (rl !== undefined && rl.enabled) {
      const d = rl.check(client);
      if (d !== RateDecision.ALLOW) {
        if (d === RateDecision.SLIP) {
          const st = parseQuery(msg, msg.length, this.q);
          if (st === ParseStatus.OK) {
            this.opts.onLocalAnswer?.(this.q.qtype, RCODE.NOERROR);
            sock.send(errorResponse(msg, this.q, RCODE.NOERROR, { tc: true, ednsUdp: this.opts.ednsUdp }), rinfo.port, rinfo.address);
          }
        }
        return;
      }
    }
    const r = this.handle(msg, msg.length, client, 'udp');
    if (r === null) return;
    if (isPromise(r)) {
      // The context is reused by the next packet: keep what sending needs.
      const maxSize = this.ctx.maxSize;
      const q = this.q.clone(msg);
      r.then(
        (b) => {
          if (b !== null && !this.closing) sock.send(b.length > maxSize ? truncate(msg, q, b, this.opts.ednsUdp) : b, rinfo.port, rinfo.address);
        },
        (err: unknown) => this.log.error({ err }, 'dns: async handler failed'),
      );
      return;
    }
    sock.send(r.length > this.ctx.maxSize ? truncate(msg, this.q, r, this.opts.ednsUdp) : r, rinfo.port, rinfo.address);
  }

  /** Parses and runs the chain; null = send nothing. */
  private handle(msg: Buffer, len: number, client: string, transport: 'udp' | 'tcp'): Response | Promise<Response> {
    const q = this.q;
    const st = parseQuery(msg, len, q);
    if (st !== ParseStatus.OK) {
      if (st === ParseStatus.DROP) {
        this.counts.dropped++;
        return null;
      }
      const rcode = st === ParseStatus.NOTIMP ? RCODE.NOTIMP : st === ParseStatus.BADVERS ? RCODE.BADVERS : st === ParseStatus.REFUSED ? RCODE.REFUSED : RCODE.FORMERR;
      if (rcode === RCODE.FORMERR) this.counts.formerr++;
      this.opts.onLocalAnswer?.(q.qtype, rcode & 0xf);
      // BADVERS answers must carry an OPT (the extended rcode lives there): parseQuery set edns.
      return errorResponse(msg, q, rcode, { ednsUdp: this.opts.ednsUdp });
    }
    this.ctx.reset(msg, q, client, transport, this.opts.ednsUdp, this.clock.monotonicMs());
    try {
      return this.handler(this.ctx);
    } catch (err) {
      this.counts.errors++;
      this.log.error({ err }, 'dns: handler threw');
      return errorResponse(msg, q, RCODE.SERVFAIL, { ednsUdp: this.opts.ednsUdp });
    }
  }

  private listenTcp(hp: HostPort): Promise<void> {
    const srv = createServer({ noDelay: true, pauseOnConnect: false }, (s) => this.onTcp(s));
    srv.maxConnections = this.opts.tcpConnectionsMax;
    return new Promise((resolve, reject) => {
      srv.once('error', (e) => reject(new ListenError(`cannot listen TCP ${hp.host}:${hp.port}: ${e.message}`, { cause: e })));
      // exclusive=false under cluster: the primary shares one listening socket with workers.
      // hp.port is the port UDP got, so port 0 gives both transports the same ephemeral port.
      srv.listen({ port: hp.port, host: hp.host, ipv6Only: hp.host.includes(':') }, () => {
        srv.removeAllListeners('error');
        srv.on('error', (e) => this.log.warn({ err: e }, 'dns: TCP server error'));
        this.tcp.push(srv);
        resolve();
      });
    });
  }

  private onTcp(s: NetSocket): void {
    if (this.closing) {
      s.destroy();
      return;
    }
    this.conns.add(s);
    this.counts.tcpConnections++;
    const client = normalizeClient(s.remoteAddress ?? '');
    let pending: Buffer | null = null;
    let inflight = 0;
    let paused = false;
    s.setTimeout(this.opts.tcpIdleMs, () => s.destroy());
    s.on('error', () => s.destroy());
    s.on('close', () => {
      this.conns.delete(s);
      this.counts.tcpConnections--;
    });
    const write = (b: Buffer): void => {
      if (s.destroyed) return;
      const framed = Buffer.allocUnsafe(b.length + 2);
      framed.writeUInt16BE(b.length, 0);
      b.copy(framed, 2);
      s.write(framed);
    };
    const resumeIfIdle = (): void => {
      if (paused && inflight < this.opts.tcpInflightMax && s.writableLength < 1 << 20) {
        paused = false;
        s.resume();
      }
    };
    s.on('drain', resumeIfIdle);
    s.on('data', (chunk: Buffer) => {
      let buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
      pending = null;
      let off = 0;
      while (buf.length - off >= 2) {
        const len = buf.readUInt16BE(off);
        if (buf.length - off - 2 < len) break;
        // Copy: the message may be referenced after this chunk's buffer is reused.
        const msg = Buffer.from(buf.subarray(off + 2, off + 2 + len));
        off += 2 + len;
        if (len < 12) {
          // Not even a header: the stream is garbage; close instead of guessing framing.
          this.counts.dropped++;
          s.destroy();
          return;
        }
        const r = this.handle(msg, len, client, 'tcp');
        if (r === null) continue;
        if (isPromise(r)) {
          inflight++;
          r.then(
            (b) => {
              inflight--;
              if (b !== null) write(b);
              resumeIfIdle();
            },
            (err: unknown) => {
              inflight--;
              this.log.error({ err }, 'dns: async handler failed');
            },
          );
        } else write(r);
      }
      if (off < buf.length) {
        buf = buf.subarray(off);
        // One frame is at most 65537 bytes: more unframed bytes than that cannot happen.
        pending = Buffer.from(buf);
      }
      if (inflight >= this.opts.tcpInflightMax || s.writableLength >= 1 << 20) {
        paused = true;
        s.pause();
      }
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const s of this.udp) {
      try {
        s.close();
      } catch {
        // not bound yet
      }
    }
    this.udp.length = 0;
    for (const n of this.native) n.close();
    this.native.length = 0;
    for (const c of this.conns) c.destroy();
    await Promise.all(this.tcp.map((srv) => new Promise<void>((r) => srv.close(() => r()))));
    this.tcp.length = 0;
  }
}

/** The answer did not fit: header + question + OPT with TC, so the client retries over TCP. */
function truncate(msg: Buffer, q: ParsedQuery, full: Buffer, ednsUdp: number): Buffer {
  const out = errorResponse(msg, q, full[3]! & 0x0f, { tc: true, aa: (full[2]! & 0x04) !== 0, ednsUdp });
  return out;
}

const ADDR_BYTES = 20;
/** Client IPv4 strings by address: built once per client, not once per packet. */
const V4_NAMES_MAX = 65536;

/**
 * One batched native UDP socket. The addon calls `onBatch(n)` with n datagrams in the shared
 * request slab; each is handled synchronously and its answer copied into the response slab,
 * which the addon sends with one sendmmsg when the batch returns.
 */
class NativeUdp {
  readonly port: number;
  private readonly handle: unknown;
  private readonly inBuf: Buffer;
  private readonly outBuf: Buffer;
  private readonly inLens: Uint32Array;
  private readonly outLens: Uint32Array;
  private readonly addrs: Buffer;
  private readonly slot: number;
  // One reusable view per slot: handlers get (view, len) and copy what they keep.
  private readonly views: Buffer[] = [];
  private readonly v4Names = new Map<number, string>();
  private closed = false;

  constructor(
    private readonly addon: UdpBatchAddon,
    readonly host: string,
    port: number,
    private readonly each: (i: number, msg: Buffer, len: number, client: string, addr: Buffer) => void,
  ) {
    const o = addon.open(host, port, (n) => this.onBatch(n));
    this.handle = o.handle;
    this.port = o.port;
    this.slot = o.slot;
    this.inBuf = Buffer.from(o.in);
    this.outBuf = Buffer.from(o.out);
    this.inLens = new Uint32Array(o.inLens);
    this.outLens = new Uint32Array(o.outLens);
    this.addrs = Buffer.from(o.addrs);
    for (let i = 0; i < o.batch; i++) this.views.push(this.inBuf.subarray(i * o.slot, (i + 1) * o.slot));
  }

  private onBatch(n: number): void {
    for (let i = 0; i < n; i++) {
      const a = i * ADDR_BYTES;
      const addr = this.addrs.subarray(a, a + ADDR_BYTES);
      try {
        this.each(i, this.views[i]!, this.inLens[i]!, this.clientOf(addr), addr);
      } catch {
        // handle() already turns handler bugs into SERVFAIL; this guards the batch itself.
        this.outLens[i] = 0;
      }
    }
  }

  answer(i: number, b: Buffer): void {
    if (b.length > this.slot) return;
    this.outBuf.set(b, i * this.slot);
    this.outLens[i] = b.length;
  }

  sendLater(b: Buffer, addr: Buffer): void {
    if (!this.closed) this.addon.send(this.handle, b, addr);
  }

  private clientOf(addr: Buffer): string {
    const fam = addr[0]!;
    // IPv4, or IPv4-mapped IPv6 (::ffff:a.b.c.d), share the IPv4 form and its cache.
    const mapped = fam === 6 && addr.readUInt32BE(4) === 0 && addr.readUInt32BE(8) === 0 && addr.readUInt32BE(12) === 0xffff;
    if (fam === 4 || mapped) {
      const o = mapped ? 16 : 4;
      const k = addr.readUInt32BE(o);
      let s = this.v4Names.get(k);
      if (s === undefined) {
        s = `${addr[o]}.${addr[o + 1]}.${addr[o + 2]}.${addr[o + 3]}`;
        if (this.v4Names.size >= V4_NAMES_MAX) this.v4Names.clear();
        this.v4Names.set(k, s);
      }
      return s;
    }
    return ipv6Text(addr, 4);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.addon.close(this.handle);
  }
}

/** RFC 5952 text of 16 address bytes (what dgram reports), so both UDP paths hash alike. */
export function ipv6Text(b: Buffer, off: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(off + i * 2));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestAt < 0) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}
