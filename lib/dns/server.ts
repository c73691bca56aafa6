// The DNS transport: UDP and TCP listeners (IPv4 and IPv6) in front of a Handler chain. UDP
// parses into one reused ParsedQuery/QueryCtx and answers synchronously from the cache when it
// can. TCP is length-prefixed with pipelining (answers may complete out of order, RFC 7766),
// idle timeouts, a connection limit and per-connection in-flight limits. Malformed input gets
// FORMERR or is dropped; a thrown bug in a plugin is logged and answered SERVFAIL, never a crash.
import { createSocket, type Socket, type RemoteInfo } from 'node:dgram';
import { createServer, type Server, type Socket as NetSocket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { silentLogger, type HostPort, type Logger } from '../common/index.js';
import { isPromise, QueryCtx, type Handler, type Response } from './chain.js';
import { errorResponse, normalizeClient, ParsedQuery, parseQuery, ParseStatus, RCODE } from './wire.js';
import { RateDecision, type RateLimiter } from './ratelimit.js';
import { ListenError } from './errors.js';

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
  private readonly tcp: Server[] = [];
  private readonly conns = new Set<NetSocket>();
  private readonly q = new ParsedQuery();
  private readonly ctx = new QueryCtx();
  private readonly log: Logger;
  private handler: Handler;
  private rateLimiter: RateLimiter | undefined;
  private closing = false;

  constructor(private readonly opts: DnsServerOptions) {
    this.log = opts.logger ?? silentLogger;
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
      for (const hp of this.opts.listen) {
        await this.listenUdp(hp);
        await this.listenTcp(hp);
      }
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  udpAddresses(): AddressInfo[] {
    return this.udp.map((s) => s.address());
  }

  tcpAddresses(): AddressInfo[] {
    return this.tcp.map((s) => s.address() as AddressInfo);
  }

  private listenUdp(hp: HostPort): Promise<void> {
    const v6 = hp.host.includes(':');
    const sock = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6, lookup: (v6 ? literalLookup6 : literalLookup4) as never });
    return new Promise((resolve, reject) => {
      sock.once('error', (e) => reject(new ListenError(`cannot bind UDP ${hp.host}:${hp.port}: ${e.message}`, { cause: e })));
      sock.bind({ port: hp.port, address: hp.host }, () => {
        sock.removeAllListeners('error');
        sock.on('error', (e) => this.log.warn({ err: e }, 'dns: UDP socket error'));
        sock.on('message', (msg, rinfo) => this.onUdp(sock, msg, rinfo));
        this.udp.push(sock);
        resolve();
      });
    });
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
    const r = this.handle(msg, client, 'udp');
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
  private handle(msg: Buffer, client: string, transport: 'udp' | 'tcp'): Response | Promise<Response> {
    const q = this.q;
    const st = parseQuery(msg, msg.length, q);
    if (st !== ParseStatus.OK) {
      if (st === ParseStatus.DROP) {
        this.counts.dropped++;
        return null;
      }
      const rcode = st === ParseStatus.NOTIMP ? RCODE.NOTIMP : st === ParseStatus.BADVERS ? RCODE.BADVERS : RCODE.FORMERR;
      if (rcode === RCODE.FORMERR) this.counts.formerr++;
      this.opts.onLocalAnswer?.(q.qtype, rcode & 0xf);
      // BADVERS answers must carry an OPT (the extended rcode lives there): parseQuery set edns.
      return errorResponse(msg, q, rcode, { ednsUdp: this.opts.ednsUdp });
    }
    this.ctx.reset(msg, q, client, transport, this.opts.ednsUdp);
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
      srv.listen({ port: this.udp.length > 0 && hp.port === 0 ? (this.udp[this.udp.length - 1]!.address().port) : hp.port, host: hp.host, ipv6Only: hp.host.includes(':') }, () => {
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
        const r = this.handle(msg, client, 'tcp');
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
