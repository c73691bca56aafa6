// The CoreDNS-style plugin chain. A Plugin wraps the next Handler; the order is fixed in one
// place (PLUGIN_ORDER) so reading this file tells how a query flows:
//   log -> metrics -> cache -> pick -> zone -> forward -> REFUSED
import type { ParsedQuery } from './wire.js';
import { errorResponse, RCODE } from './wire.js';
import type { PickSet } from './zoneindex.js';

/**
 * Everything a plugin knows about one query. The server reuses one context for every query it
 * handles synchronously; a plugin that answers asynchronously (forward) copies what it needs
 * before its first await, and wrappers (log, metrics) read fields before calling next.
 */
export class QueryCtx {
  msg: Buffer = Buffer.alloc(0);
  q!: ParsedQuery;
  /** Normalized client IP (IPv4-mapped IPv6 as IPv4). */
  client = '';
  transport: 'udp' | 'tcp' = 'udp';
  /** Largest response the transport carries: the EDNS/512 limit on UDP, 65535 on TCP. */
  maxSize = 512;
  /** Our advertised EDNS payload size. */
  ednsUdp = 1232;
  /** Pick decision: '' none, an IP, PICK_ALL or PICK_SERVFAIL (set by the pick plugin). */
  pick = '';
  pickSet: PickSet | null = null;
  pickDone = false;
  /** Set by the plugin that produced the answer when it must not enter the answer cache. */
  noCache = false;
  cacheHit = false;
  /** Monotonic ms when the query arrived (one clock read per query, shared by plugins). */
  nowMs = 0;
  /**
   * Where the answer's shuffleable address records are (the last `shufCount` answer records,
   * each `shufSize` bytes from `shufOff`), so cached answers in `all` mode are re-shuffled.
   */
  shufOff = 0;
  shufCount = 0;
  shufSize = 0;

  reset(msg: Buffer, q: ParsedQuery, client: string, transport: 'udp' | 'tcp', ednsUdp: number, nowMs: number): void {
    this.nowMs = nowMs;
    this.msg = msg;
    this.q = q;
    this.client = client;
    this.transport = transport;
    this.ednsUdp = ednsUdp;
    this.maxSize = transport === 'tcp' ? 65535 : q.edns ? Math.min(q.ednsUdp, ednsUdp) : 512;
    this.pick = '';
    this.pickSet = null;
    this.pickDone = false;
    this.noCache = false;
    this.cacheHit = false;
    this.shufOff = 0;
    this.shufCount = 0;
    this.shufSize = 0;
  }
}

/** The answer bytes, or null to send nothing. */
export type Response = Buffer | null;
export type Handler = (ctx: QueryCtx) => Response | Promise<Response>;
export type Plugin = (next: Handler) => Handler;

export const PLUGIN_ORDER = ['log', 'metrics', 'cache', 'pick', 'zone', 'forward'] as const;
export type PluginName = (typeof PLUGIN_ORDER)[number];

/** The end of the chain: nobody served or forwarded the name. */
export const refuse: Handler = (ctx) => {
  ctx.noCache = true;
  return errorResponse(ctx.msg, ctx.q, RCODE.REFUSED, { ednsUdp: ctx.ednsUdp });
};

/** Composes the plugins in PLUGIN_ORDER; a missing plugin is skipped. */
export function buildChain(plugins: Partial<Record<PluginName, Plugin>>, end: Handler = refuse): Handler {
  let h = end;
  for (let i = PLUGIN_ORDER.length - 1; i >= 0; i--) {
    const p = plugins[PLUGIN_ORDER[i]!];
    if (p) h = p(h);
  }
  return h;
}

export function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}
