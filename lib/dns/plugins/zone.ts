// zone: authoritative answers for the configured zones from the in-memory index. Implements
// CNAME chasing inside our zones, wildcards (RFC 4592 closest encloser), empty non-terminals,
// NXDOMAIN vs NODATA with the SOA and negative TTL (RFC 2308), minimal ANY (RFC 8482), SRV/MX/NS
// additional addresses, generated PTRs, and address filtering by health and by the pick plugin.
import type { Handler, Plugin, QueryCtx } from '../chain.js';
import { PICK_ALL, PICK_SERVFAIL, type AllDownPolicy } from '../picker.js';
import type { ZoneIndex, ZoneSpec } from '../zoneindex.js';
import type { DnsRecord } from '../store.js';
import { CLASS_ANY, CLASS_IN, errorResponse, HEADER_LEN, MessageWriter, RCODE, TYPE, WriterOverflow, type RR } from '../wire.js';

export interface ZonePluginOptions {
  index: ZoneIndex;
  allDown: AllDownPolicy;
  /** Shuffle for `all` mode answers built on a miss. */
  random?: () => number;
}

const CNAME_HOPS_MAX = 8;

interface Sections {
  rcode: number;
  answers: RR[];
  authority: RR[];
  additional: RR[];
  /** Index in answers of the first shuffleable address record, or -1. */
  shuffleFrom: number;
}

export function zonePlugin(opts: ZonePluginOptions): Plugin {
  const { index } = opts;
  const random = opts.random ?? Math.random;
  const w = new MessageWriter(65535);
  return (next: Handler): Handler => (ctx) => {
    const q = ctx.q;
    const name = q.name(ctx.msg);
    const zone = index.zoneOf(name);
    if (zone === null) return next(ctx);
    if (q.qclass !== CLASS_IN && q.qclass !== CLASS_ANY) return errorResponse(ctx.msg, q, RCODE.REFUSED, { ednsUdp: ctx.ednsUdp });
    // Zone transfers are not offered (the store is the replication mechanism).
    if (q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR) return errorResponse(ctx.msg, q, RCODE.REFUSED, { ednsUdp: ctx.ednsUdp, aa: true });
    const s = resolve(index, zone, name, q.qtype, ctx, opts.allDown, random);
    if (s.rcode === RCODE.SERVFAIL) return errorResponse(ctx.msg, q, RCODE.SERVFAIL, { ednsUdp: ctx.ednsUdp });
    try {
      return encode(w, ctx, s);
    } catch (e) {
      if (e instanceof WriterOverflow) {
        ctx.noCache = true;
        return errorResponse(ctx.msg, q, RCODE.SERVFAIL, { ednsUdp: ctx.ednsUdp });
      }
      throw e;
    }
  };
}

function ttlOf(r: DnsRecord, z: ZoneSpec): number {
  return r.ttl ?? z.defaultTtl;
}

function soaRR(z: ZoneSpec, index: ZoneIndex, ttl: number): RR {
  return {
    name: z.name,
    ttl,
    data: {
      type: TYPE.SOA, mname: z.nameservers[0] ?? `ns.${z.name}`, rname: z.hostmaster, serial: index.revision >>> 0,
      refresh: 3600, retry: 600, expire: 86400, minimum: z.negativeTtl,
    },
  };
}

function negative(s: Sections, z: ZoneSpec, index: ZoneIndex): void {
  // RFC 2308 section 3: the SOA's TTL in a negative answer is min(SOA TTL, SOA minimum).
  s.authority.push(soaRR(z, index, Math.min(z.defaultTtl, z.negativeTtl)));
}

function recordRR(owner: string, r: DnsRecord, z: ZoneSpec): RR | null {
  const ttl = ttlOf(r, z);
  switch (r.type) {
    case 'A':
      return { name: owner, ttl, data: { type: TYPE.A, ip: r.value } };
    case 'AAAA':
      return { name: owner, ttl, data: { type: TYPE.AAAA, ip: r.value } };
    case 'CNAME':
      return { name: owner, ttl, data: { type: TYPE.CNAME, target: r.value } };
    case 'NS':
      return { name: owner, ttl, data: { type: TYPE.NS, target: r.value } };
    case 'PTR':
      return { name: owner, ttl, data: { type: TYPE.PTR, target: r.value } };
    case 'MX':
      return { name: owner, ttl, data: { type: TYPE.MX, preference: r.priority ?? 10, exchange: r.value } };
    case 'SRV':
      return { name: owner, ttl, data: { type: TYPE.SRV, priority: r.priority ?? 10, weight: r.weight ?? 10, port: r.port ?? 0, target: r.value } };
    case 'TXT':
      return { name: owner, ttl, data: { type: TYPE.TXT, text: r.value } };
  }
}

const TYPE_CODE: Record<DnsRecord['type'], number> = { A: TYPE.A, AAAA: TYPE.AAAA, CNAME: TYPE.CNAME, NS: TYPE.NS, PTR: TYPE.PTR, MX: TYPE.MX, SRV: TYPE.SRV, TXT: TYPE.TXT };
/** RFC 8482 minimal ANY: answer one RRset, preferring addresses. */
const ANY_PREFERENCE = [TYPE.A, TYPE.AAAA, TYPE.CNAME, TYPE.SRV, TYPE.MX, TYPE.TXT, TYPE.PTR, TYPE.NS];

function shuffle<T>(a: T[], random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

function resolve(index: ZoneIndex, zone: ZoneSpec, qname: string, qtype: number, ctx: QueryCtx, allDown: AllDownPolicy, random: () => number): Sections {
  const s: Sections = { rcode: RCODE.NOERROR, answers: [], authority: [], additional: [], shuffleFrom: -1 };
  let cur = qname;
  let z = zone;
  const seen = new Set<string>();
  for (let hop = 0; hop <= CNAME_HOPS_MAX; hop++) {
    seen.add(cur);
    const recs = index.nodeRecords(z, cur);
    if (recs === null) {
      s.rcode = RCODE.NXDOMAIN;
      negative(s, z, index);
      return s;
    }
    const cname = recs.find((r) => r.type === 'CNAME');
    if (cname && qtype !== TYPE.CNAME && cur !== z.name) {
      s.answers.push(recordRR(cur, cname, z)!);
      const target = cname.value;
      const tz = index.zoneOf(target);
      // Out of our zones, or a loop: stop here; the resolver chases the rest (RFC 1034 4.3.2).
      if (tz === null || seen.has(target)) return s;
      cur = target;
      z = tz;
      continue;
    }
    const before = s.answers.length;
    let want = qtype;
    if (qtype === TYPE.ANY) {
      const have = new Set(recs.map((r) => TYPE_CODE[r.type]));
      if (cur === z.name) have.add(TYPE.SOA);
      want = ANY_PREFERENCE.find((t) => have.has(t)) ?? (have.has(TYPE.SOA) ? TYPE.SOA : 0);
      if (want === 0) {
        negative(s, z, index);
        return s;
      }
    }
    if (cur === z.name && want === TYPE.SOA) {
      s.answers.push(soaRR(z, index, z.defaultTtl));
      return s;
    }
    if (cur === z.name && want === TYPE.NS) {
      for (const ns of z.nameservers) s.answers.push({ name: cur, ttl: z.defaultTtl, data: { type: TYPE.NS, target: ns } });
      for (const r of recs) if (r.type === 'NS' && !z.nameservers.includes(r.value)) s.answers.push(recordRR(cur, r, z)!);
      for (const ns of z.nameservers) addAddresses(index, ns, s, allDown);
      return s;
    }
    if (want === TYPE.PTR && z.reverse) {
      const targets = [...index.ptrTargets(cur)].sort();
      for (const t of targets) s.answers.push({ name: cur, ttl: z.defaultTtl, data: { type: TYPE.PTR, target: t } });
    }
    const matching = recs.filter((r) => TYPE_CODE[r.type] === want);
    if (want === TYPE.A || want === TYPE.AAAA) {
      if (matching.length > 0) {
        const rrs = pickAddresses(index, cur, matching, ctx, allDown, random);
        if (rrs === null) {
          s.rcode = RCODE.SERVFAIL;
          return s;
        }
        if (rrs.length > 1) s.shuffleFrom = s.answers.length;
        for (const r of rrs) s.answers.push(recordRR(cur, r, z)!);
        return s;
      }
    } else {
      for (const r of matching) s.answers.push(recordRR(cur, r, z)!);
    }
    if (s.answers.length === before) {
      // NODATA: the name exists (or is an empty non-terminal) but has no records of this type.
      negative(s, z, index);
      return s;
    }
    if (want === TYPE.SRV) for (const r of matching) addAddresses(index, r.value, s, allDown);
    if (want === TYPE.MX) for (const r of matching) addAddresses(index, r.value, s, allDown);
    return s;
  }
  return s;
}

/** Healthy addresses of `name` into the additional section (SRV/MX targets, NS glue). */
function addAddresses(index: ZoneIndex, name: string, s: Sections, allDown: AllDownPolicy): void {
  const z = index.zoneOf(name);
  if (!z) return;
  const recs = [...index.recordsAt(name)];
  for (const t of ['A', 'AAAA'] as const) {
    const addrs = recs.filter((r) => r.type === t);
    const healthy = addrs.filter((r) => index.isHealthy(r.value));
    const use = healthy.length > 0 ? healthy : allDown === 'all' ? addrs : [];
    for (const r of use) {
      const rr = recordRR(name, r, z);
      if (rr && !s.additional.some((a) => a.name === rr.name && a.data.type === rr.data.type && (a.data as { ip: string }).ip === r.value)) s.additional.push(rr);
    }
  }
}

/** The address records to answer: the pick plugin's choice, else the healthy ones. null = SERVFAIL. */
function pickAddresses(index: ZoneIndex, name: string, recs: DnsRecord[], ctx: QueryCtx, allDown: AllDownPolicy, random: () => number): DnsRecord[] | null {
  if (ctx.pickSet !== null && ctx.pickSet.name === name) {
    if (ctx.pick === PICK_SERVFAIL) return null;
    if (ctx.pick !== PICK_ALL && ctx.pick !== '') {
      const r = recs.find((x) => x.value === ctx.pick);
      if (r) return [r];
    }
  }
  // Several records may carry one IP (different ids): answer each address once.
  const uniq = new Map<string, DnsRecord>();
  for (const r of recs) if (!uniq.has(r.value)) uniq.set(r.value, r);
  const all = [...uniq.values()];
  const healthy = all.filter((r) => index.isHealthy(r.value));
  const use = healthy.length > 0 ? healthy : allDown === 'all' ? all : null;
  if (use === null) return null;
  shuffle(use, random);
  return use;
}

function encode(w: MessageWriter, ctx: QueryCtx, s: Sections): Buffer {
  const q = ctx.q;
  const msg = ctx.msg;
  w.reset();
  w.u16(q.id);
  // QR, AA, the request's RD; CD is echoed; RA is not claimed (we do not recurse for clients).
  w.u8(0x80 | 0x04 | ((q.flags >> 8) & 0x01));
  w.u8((q.flags & 0x10) | (s.rcode & 0x0f));
  w.u16(1);
  w.u16(s.answers.length);
  w.u16(s.authority.length);
  w.u16(s.additional.length + (q.edns ? 1 : 0));
  w.raw(msg, HEADER_LEN, q.qEnd);
  // Later names compress against the question, so owner names echo the client's 0x20 case.
  w.noteName(q.name(msg), HEADER_LEN);
  let shufStart = -1;
  let shufSize = -1;
  let uniform = true;
  for (let i = 0; i < s.answers.length; i++) {
    const start = w.off;
    w.rr(s.answers[i]!);
    if (s.shuffleFrom >= 0 && i >= s.shuffleFrom) {
      if (i === s.shuffleFrom) shufStart = start;
      const size = w.off - start;
      if (shufSize < 0) shufSize = size;
      else if (size !== shufSize) uniform = false;
    }
  }
  if (s.shuffleFrom >= 0 && uniform && shufStart >= 0) {
    ctx.shufOff = shufStart;
    ctx.shufCount = s.answers.length - s.shuffleFrom;
    ctx.shufSize = shufSize;
  }
  for (const r of s.authority) w.rr(r);
  for (const r of s.additional) w.rr(r);
  if (q.edns) w.opt(ctx.ednsUdp, 0, q.ednsDo);
  const out = Buffer.allocUnsafe(w.off);
  w.buf.copy(out, 0, 0, w.off);
  return out;
}
