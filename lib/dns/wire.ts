// DNS wire format for the query hot path: a parser for incoming queries that allocates only
// the two strings the caches need, and a message writer with name compression used when an
// answer is built (cache miss). dns-packet is used for the forwarder's upstream answers and in
// tests; this file exists because the server must parse every query without object churn and
// must be able to reject hostile packets (pointer loops, truncation) without throwing.
import { isIP } from 'node:net';

export const TYPE = {
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, HINFO: 13, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41,
  IXFR: 251, AXFR: 252, ANY: 255,
} as const;

export const CLASS_IN = 1;
export const CLASS_ANY = 255;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;

export const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(TYPE).map(([k, v]) => [v, k]));
export const RCODE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(RCODE).map(([k, v]) => [v, k]));

/** Largest name in wire form (RFC 1035 2.3.4). */
export const MAX_NAME_WIRE = 255;
/** Our advertised EDNS UDP payload size: 1232 avoids IP fragmentation (DNS flag day 2020). */
export const DEFAULT_EDNS_UDP = 1232;
export const HEADER_LEN = 12;

/** What the parser decided about a packet. */
export const enum ParseStatus {
  OK = 0,
  /** Not worth an answer (too short to hold a header, or a response): silently dropped. */
  DROP = 1,
  /** Answer FORMERR; `qEnd` tells whether the question can be echoed. */
  FORMERR = 2,
  /** Unknown opcode: NOTIMP. */
  NOTIMP = 3,
  /** EDNS version we do not speak: BADVERS. */
  BADVERS = 4,
  /** A known opcode we do not accept here (NOTIFY, UPDATE): REFUSED. */
  REFUSED = 5,
}

/**
 * The parsed query. One instance per server is reused for every packet: the parser overwrites
 * every field, so nothing here may be kept across queries (copy what must outlive the call).
 */
export class ParsedQuery {
  id = 0;
  /** Header flags word (bytes 2-3). */
  flags = 0;
  opcode = 0;
  qtype = 0;
  qclass = 0;
  /** Offset just past the question (12 + name + 4), or 0 when no question could be parsed. */
  qEnd = 0;
  /** Lower-cased question bytes (name, type, class) as a latin1 string: the cache key base. */
  wireKey = '';
  /** Present when the query carries an OPT record. */
  edns = false;
  ednsVersion = 0;
  /** Requestor's UDP payload size, floored at 512. */
  ednsUdp = 512;
  ednsDo = false;
  private nameCache: string | null = null;
  private nameFrom: Buffer | null = null;

  reset(): void {
    this.id = 0;
    this.flags = 0;
    this.opcode = 0;
    this.qtype = 0;
    this.qclass = 0;
    this.qEnd = 0;
    this.wireKey = '';
    this.edns = false;
    this.ednsVersion = 0;
    this.ednsUdp = 512;
    this.ednsDo = false;
    this.nameCache = null;
    this.nameFrom = null;
  }

  /** The question name, dotted, lower-case, no trailing dot; computed on first use. */
  name(msg: Buffer): string {
    if (this.nameCache !== null && this.nameFrom === msg) return this.nameCache;
    this.nameCache = this.qEnd === 0 ? '' : decodeQuestionName(msg);
    this.nameFrom = msg;
    return this.nameCache;
  }

  /** A snapshot that outlives the call (for async plugins). */
  clone(msg: Buffer): ParsedQuery {
    const c = new ParsedQuery();
    c.id = this.id;
    c.flags = this.flags;
    c.opcode = this.opcode;
    c.qtype = this.qtype;
    c.qclass = this.qclass;
    c.qEnd = this.qEnd;
    c.wireKey = this.wireKey;
    c.edns = this.edns;
    c.ednsVersion = this.ednsVersion;
    c.ednsUdp = this.ednsUdp;
    c.ednsDo = this.ednsDo;
    c.nameCache = this.name(msg);
    return c;
  }
}

// Scratch for lower-casing the question; one per process is enough (parsing is synchronous).
const keyScratch = Buffer.allocUnsafe(MAX_NAME_WIRE + 4);

/**
 * Parses header, the one question and the EDNS OPT record of a query. Never throws: every
 * malformed input maps to a status. Returns OK only for a well-formed standard query.
 */
export function parseQuery(msg: Buffer, len: number, q: ParsedQuery): ParseStatus {
  q.reset();
  if (len < HEADER_LEN) return ParseStatus.DROP;
  q.id = (msg[0]! << 8) | msg[1]!;
  q.flags = (msg[2]! << 8) | msg[3]!;
  // A response sent to us is never answered: answering responses is how reflection loops start.
  if (q.flags & 0x8000) return ParseStatus.DROP;
  q.opcode = (q.flags >> 11) & 0xf;
  const qd = (msg[4]! << 8) | msg[5]!;
  const an = (msg[6]! << 8) | msg[7]!;
  const ns = (msg[8]! << 8) | msg[9]!;
  const ar = (msg[10]! << 8) | msg[11]!;
  if (q.opcode !== 0) {
    // NOTIFY (4) and UPDATE (5) are opcodes we know and decline (the store is the only way to
    // change records; we are nobody's secondary): REFUSED, as bind answers them. Only opcodes
    // we do not know (IQUERY, STATUS, DSO, unassigned) get NOTIMP. The question is echoed.
    if (qd === 1) parseQuestion(msg, len, q);
    return q.opcode === 4 || q.opcode === 5 ? ParseStatus.REFUSED : ParseStatus.NOTIMP;
  }
  if (qd !== 1) return ParseStatus.FORMERR;
  if (!parseQuestion(msg, len, q)) return ParseStatus.FORMERR;
  let off = q.qEnd;
  // Queries carry no answer or authority records; skip them if present, but they must parse.
  for (let i = 0; i < an + ns; i++) {
    off = skipRecord(msg, len, off);
    if (off < 0) return ParseStatus.FORMERR;
  }
  let opts = 0;
  for (let i = 0; i < ar; i++) {
    const nameStart = off;
    off = skipName(msg, len, off);
    if (off < 0 || off + 10 > len) return ParseStatus.FORMERR;
    const type = (msg[off]! << 8) | msg[off + 1]!;
    const rdlen = (msg[off + 8]! << 8) | msg[off + 9]!;
    if (type === TYPE.OPT) {
      opts++;
      // RFC 6891 6.1.1: more than one OPT, or an OPT whose owner is not the root, is FORMERR.
      if (opts > 1 || msg[nameStart] !== 0) return ParseStatus.FORMERR;
      q.edns = true;
      const size = (msg[off + 2]! << 8) | msg[off + 3]!;
      q.ednsUdp = size < 512 ? 512 : size;
      q.ednsVersion = msg[off + 5]!;
      q.ednsDo = (msg[off + 6]! & 0x80) !== 0;
    }
    off += 10 + rdlen;
    if (off > len) return ParseStatus.FORMERR;
  }
  // Trailing garbage after the last record is tolerated (many stacks pad), as bind does.
  if (q.edns && q.ednsVersion > 0) return ParseStatus.BADVERS;
  return ParseStatus.OK;
}

/** Parses the question at offset 12; fills qtype, qclass, qEnd and wireKey. */
function parseQuestion(msg: Buffer, len: number, q: ParsedQuery): boolean {
  let off = HEADER_LEN;
  let k = 0;
  for (;;) {
    if (off >= len) return false;
    const l = msg[off]!;
    // Compression in the question could only point into the header: reject (and so any loop).
    if (l & 0xc0) return false;
    if (k + l + 1 > MAX_NAME_WIRE) return false;
    if (off + 1 + l > len) return false;
    keyScratch[k++] = l;
    off++;
    for (let i = 0; i < l; i++) {
      const c = msg[off++]!;
      keyScratch[k++] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
    }
    if (l === 0) break;
  }
  if (off + 4 > len) return false;
  q.qtype = (msg[off]! << 8) | msg[off + 1]!;
  q.qclass = (msg[off + 2]! << 8) | msg[off + 3]!;
  keyScratch[k++] = msg[off]!;
  keyScratch[k++] = msg[off + 1]!;
  keyScratch[k++] = msg[off + 2]!;
  keyScratch[k++] = msg[off + 3]!;
  q.qEnd = off + 4;
  q.wireKey = keyScratch.toString('latin1', 0, k);
  return true;
}

/**
 * Skips a possibly compressed name; returns the offset after it or -1. A pointer ends the name
 * in place, so skipping never follows pointers and cannot loop.
 */
export function skipName(msg: Buffer, len: number, off: number): number {
  let total = 0;
  for (;;) {
    if (off >= len) return -1;
    const l = msg[off]!;
    if ((l & 0xc0) === 0xc0) return off + 2 <= len ? off + 2 : -1;
    if (l & 0xc0) return -1;
    total += l + 1;
    if (total > MAX_NAME_WIRE) return -1;
    off += l + 1;
    if (l === 0) return off <= len ? off : -1;
  }
}

/** Skips one resource record; returns the offset after it or -1. */
export function skipRecord(msg: Buffer, len: number, off: number): number {
  off = skipName(msg, len, off);
  if (off < 0 || off + 10 > len) return -1;
  const rdlen = (msg[off + 8]! << 8) | msg[off + 9]!;
  off += 10 + rdlen;
  return off <= len ? off : -1;
}

/**
 * Reads a possibly compressed name into dotted lower-case form; returns null on a bad name.
 * Pointers must point strictly backwards, which bounds the walk (no loops).
 */
export function readName(msg: Buffer, len: number, off: number): { name: string; end: number } | null {
  const labels: string[] = [];
  let end = -1;
  let total = 0;
  let guard = 0;
  for (;;) {
    if (off >= len || ++guard > 128) return null;
    const l = msg[off]!;
    if ((l & 0xc0) === 0xc0) {
      if (off + 2 > len) return null;
      const ptr = ((l & 0x3f) << 8) | msg[off + 1]!;
      if (end < 0) end = off + 2;
      if (ptr >= off) return null;
      off = ptr;
      continue;
    }
    if (l & 0xc0) return null;
    if (l === 0) {
      if (end < 0) end = off + 1;
      break;
    }
    total += l + 1;
    if (total > MAX_NAME_WIRE || off + 1 + l > len) return null;
    labels.push(labelText(msg, off + 1, l));
    off += l + 1;
  }
  return { name: labels.join('.'), end };
}

function labelText(msg: Buffer, start: number, l: number): string {
  let s = '';
  for (let i = 0; i < l; i++) {
    let c = msg[start + i]!;
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    // Escape what would make the dotted form ambiguous, as in presentation format.
    if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c);
    else if (c <= 0x20 || c >= 0x7f) s += '\\' + String(c).padStart(3, '0');
    else s += String.fromCharCode(c);
  }
  return s;
}

function decodeQuestionName(msg: Buffer): string {
  const r = readName(msg, msg.length, HEADER_LEN);
  return r === null ? '' : r.name;
}

/** Splits a dotted name into labels ('' → []). Names here never carry escapes. */
export function splitName(name: string): string[] {
  return name === '' ? [] : name.split('.');
}

/** Wire length of a dotted name without compression. */
export function nameWireLength(name: string): number {
  return name === '' ? 1 : Buffer.byteLength(name) + 2;
}

/** Rejects names the wire format cannot carry: labels 1..63 bytes, total <= 255. */
export function isValidName(name: string): boolean {
  if (name === '') return true;
  if (nameWireLength(name) > MAX_NAME_WIRE) return false;
  for (const l of name.split('.')) {
    const n = Buffer.byteLength(l);
    if (n === 0 || n > 63) return false;
  }
  return true;
}

/** Resource record data as the writer takes it. */
export type RData =
  | { type: typeof TYPE.A | typeof TYPE.AAAA; ip: string }
  | { type: typeof TYPE.NS | typeof TYPE.CNAME | typeof TYPE.PTR; target: string }
  | { type: typeof TYPE.MX; preference: number; exchange: string }
  | { type: typeof TYPE.SRV; priority: number; weight: number; port: number; target: string }
  | { type: typeof TYPE.TXT; text: string }
  | { type: typeof TYPE.SOA; mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number };

export interface RR {
  /** Owner name, dotted lower-case. */
  name: string;
  ttl: number;
  data: RData;
}

/** Thrown inside the writer when a message would exceed its buffer; caught by callers. */
export class WriterOverflow extends Error {}

/**
 * Builds one DNS message in a reusable buffer, compressing names against earlier ones.
 * Used on cache misses only, so it favours clarity over speed.
 */
export class MessageWriter {
  readonly buf: Buffer;
  off = 0;
  private readonly names = new Map<string, number>();
  constructor(capacity = 65535) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  reset(): void {
    this.off = 0;
    this.names.clear();
  }

  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new WriterOverflow('message too large');
  }

  u8(v: number): void {
    this.need(1);
    this.buf[this.off++] = v & 0xff;
  }
  u16(v: number): void {
    this.need(2);
    this.buf.writeUInt16BE(v & 0xffff, this.off);
    this.off += 2;
  }
  u32(v: number): void {
    this.need(4);
    this.buf.writeUInt32BE(v >>> 0, this.off);
    this.off += 4;
  }
  raw(src: Buffer, start: number, end: number): void {
    this.need(end - start);
    src.copy(this.buf, this.off, start, end);
    this.off += end - start;
  }

  /** Registers a name already present at `at` (the question) so later names point to it. */
  noteName(name: string, at: number): void {
    let offset = at;
    let rest = name;
    for (;;) {
      if (rest === '' || offset > 0x3fff) return;
      if (!this.names.has(rest)) this.names.set(rest, offset);
      const dot = rest.indexOf('.');
      const label = dot < 0 ? rest : rest.slice(0, dot);
      offset += Buffer.byteLength(label) + 1;
      rest = dot < 0 ? '' : rest.slice(dot + 1);
    }
  }

  name(name: string): void {
    let rest = name;
    for (;;) {
      if (rest === '') {
        this.u8(0);
        return;
      }
      const ptr = this.names.get(rest);
      if (ptr !== undefined) {
        this.u16(0xc000 | ptr);
        return;
      }
      if (this.off <= 0x3fff) this.names.set(rest, this.off);
      const dot = rest.indexOf('.');
      const label = dot < 0 ? rest : rest.slice(0, dot);
      const n = Buffer.byteLength(label);
      if (n === 0 || n > 63) throw new WriterOverflow(`bad label in ${name}`);
      this.need(n + 1);
      this.buf[this.off++] = n;
      this.buf.write(label, this.off, 'utf8');
      this.off += n;
      rest = dot < 0 ? '' : rest.slice(dot + 1);
    }
  }

  rr(r: RR): void {
    this.name(r.name);
    const d = r.data;
    this.u16(d.type);
    this.u16(CLASS_IN);
    this.u32(r.ttl);
    const lenAt = this.off;
    this.u16(0);
    const start = this.off;
    switch (d.type) {
      case TYPE.A: {
        const parts = d.ip.split('.');
        for (const p of parts) this.u8(Number(p));
        break;
      }
      case TYPE.AAAA:
        this.raw(ipv6Bytes(d.ip), 0, 16);
        break;
      case TYPE.NS:
      case TYPE.CNAME:
      case TYPE.PTR:
        this.name(d.target);
        break;
      case TYPE.MX:
        this.u16(d.preference);
        this.name(d.exchange);
        break;
      case TYPE.SRV:
        this.u16(d.priority);
        this.u16(d.weight);
        this.u16(d.port);
        // RFC 2782: the SRV target must not be compressed.
        this.uncompressedName(d.target);
        break;
      case TYPE.TXT: {
        const bytes = Buffer.from(d.text, 'utf8');
        // A TXT string is at most 255 bytes; longer text is split into several strings.
        if (bytes.length === 0) this.u8(0);
        for (let i = 0; i < bytes.length; i += 255) {
          const chunk = Math.min(255, bytes.length - i);
          this.u8(chunk);
          this.raw(bytes, i, i + chunk);
        }
        break;
      }
      case TYPE.SOA:
        this.name(d.mname);
        this.name(d.rname);
        this.u32(d.serial);
        this.u32(d.refresh);
        this.u32(d.retry);
        this.u32(d.expire);
        this.u32(d.minimum);
        break;
    }
    this.buf.writeUInt16BE(this.off - start, lenAt);
  }

  private uncompressedName(name: string): void {
    for (const label of splitName(name)) {
      const n = Buffer.byteLength(label);
      this.need(n + 1);
      this.buf[this.off++] = n;
      this.buf.write(label, this.off, 'utf8');
      this.off += n;
    }
    this.u8(0);
  }

  /** The OPT pseudo-record (RFC 6891) with our payload size, extended rcode and DO bit. */
  opt(udpSize: number, extRcode: number, dnssecOk: boolean): void {
    this.u8(0);
    this.u16(TYPE.OPT);
    this.u16(udpSize);
    this.u8(extRcode);
    this.u8(0);
    this.u16(dnssecOk ? 0x8000 : 0);
    this.u16(0);
  }
}

/** 16 bytes of an IPv6 address (caller has validated it). */
export function ipv6Bytes(ip: string): Buffer {
  const out = Buffer.alloc(16);
  let s = ip;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const hi = ((Number(v4[1]) << 8) | Number(v4[2])).toString(16);
    const lo = ((Number(v4[3]) << 8) | Number(v4[4])).toString(16);
    s = s.slice(0, v4.index) + hi + ':' + lo;
  }
  const [head, tail] = s.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined ? [] : tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  for (let i = 0; i < 8; i++) out.writeUInt16BE(parseInt(groups[i] ?? '0', 16) & 0xffff, i * 2);
  return out;
}

/** Reverse-lookup name of an IP: 4.3.2.1.in-addr.arpa or the nibble form under ip6.arpa. */
export function reverseName(ip: string): string | null {
  const fam = isIP(ip);
  if (fam === 4) return ip.split('.').reverse().join('.') + '.in-addr.arpa';
  if (fam === 6) {
    const hex = ipv6Bytes(ip).toString('hex');
    return hex.split('').reverse().join('.') + '.ip6.arpa';
  }
  return null;
}

/** Client address as used for hashing and rate limits: IPv4-mapped IPv6 becomes IPv4. */
export function normalizeClient(address: string): string {
  return address.startsWith('::ffff:') && address.indexOf('.') > 0 ? address.slice(7) : address;
}

/**
 * A header-only (plus question, plus OPT) response for errors and truncation; the question is
 * echoed when it parsed. Allocates: error paths are not the hot path.
 */
export function errorResponse(msg: Buffer, q: ParsedQuery, rcode: number, opts: { tc?: boolean; aa?: boolean; ednsUdp?: number } = {}): Buffer {
  const qLen = q.qEnd > 0 ? q.qEnd - HEADER_LEN : 0;
  const withOpt = q.edns;
  const out = Buffer.alloc(HEADER_LEN + qLen + (withOpt ? 11 : 0));
  out[0] = msg.length > 0 ? msg[0]! : 0;
  out[1] = msg.length > 1 ? msg[1]! : 0;
  const reqFlags = msg.length > 3 ? q.flags : 0;
  // QR, the request's opcode and RD; RA is not claimed by an authoritative server.
  let hi = 0x80 | (reqFlags >> 8 & 0x79);
  if (opts.aa) hi |= 0x04;
  if (opts.tc) hi |= 0x02;
  out[2] = hi;
  out[3] = (reqFlags & 0x10) | (rcode & 0x0f);
  out[5] = qLen > 0 ? 1 : 0;
  if (qLen > 0) msg.copy(out, HEADER_LEN, HEADER_LEN, q.qEnd);
  if (withOpt) {
    out[11] = 1;
    const o = HEADER_LEN + qLen;
    out[o] = 0;
    out.writeUInt16BE(TYPE.OPT, o + 1);
    out.writeUInt16BE(opts.ednsUdp ?? DEFAULT_EDNS_UDP, o + 3);
    out[o + 5] = (rcode >> 4) & 0xff;
    out[o + 6] = 0;
    out.writeUInt16BE(q.ednsDo ? 0x8000 : 0, o + 7);
    out.writeUInt16BE(0, o + 9);
  }
  return out;
}
