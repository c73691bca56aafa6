// The etcd key layout of ContainerDNS (a SkyDNS fork), so a deployment that already has records
// in etcd can point this store at it, and the original tools can read what we write.
//
//   records:  <prefix>/<labels reversed>/<id>/     e.g. /containerdns/local/cluster/svc/default/web/1a2b3c4d/
//   health:   <healthPrefix><ip>                   e.g. /containerdns/monitor/status/10.0.0.1
//
// Record values are SkyDNS/ContainerDNS JSON: {"host","type","ttl","port","priority","weight",
// "text","mail","source"}; we add "id" (see below) and "probePorts", which older readers ignore.
// Health values are ContainerDNS monitor JSON: {"status":"UP"|"DOWN", "ports", "domains"}; we
// add "changedAtMs" and "reporter" and keep any other field a writer put there.
//
// The one ambiguity of the layout: ContainerDNS writes A and SRV records with an id segment
// (an FNV hash of the IP) but CNAME/NS/MX/TXT records at the bare name path, and SkyDNS lets
// the last segment be either. We resolve it the same way for every reader: a value carrying
// "id" equal to the last segment, or an A/AAAA/SRV value, has an id segment; anything else is a
// bare-name record and gets the id LEGACY_ID. Records we write always carry "id".
import type { DnsRecord, HealthStatus, IpHealth, RecordOwner, RecordType } from '../store.js';

export const LEGACY_ID = '_';
export const DEFAULT_PREFIX = '/containerdns';
export const DEFAULT_HEALTH_PREFIX = '/containerdns/monitor/status/';

const TYPES: ReadonlySet<string> = new Set(['A', 'AAAA', 'CNAME', 'SRV', 'TXT', 'MX', 'NS', 'PTR']);
const OWNERS: ReadonlySet<string> = new Set(['api', 'kubewatch', 'config']);

/** `web.default.svc.cluster.local` -> `local/cluster/svc/default/web` */
export function reversedPath(name: string): string {
  return name.toLowerCase().replace(/\.$/, '').split('.').reverse().join('/');
}

/** The directory holding every record of `name` (and of names below it). */
export function nameDir(prefix: string, name: string): string {
  return `${prefix}/${reversedPath(name)}/`;
}

/** Where (name, id) lives. LEGACY_ID maps to the bare-name key ContainerDNS used. */
export function recordKey(prefix: string, name: string, id: string): string {
  return id === LEGACY_ID ? nameDir(prefix, name) : `${nameDir(prefix, name)}${id}/`;
}

/** Every key (name, id) may occupy: with and without ContainerDNS's trailing slash. */
export function recordKeys(prefix: string, name: string, id: string): string[] {
  const k = recordKey(prefix, name, id);
  return [k, k.slice(0, -1)];
}

function ipFamily(s: string): 4 | 6 | 0 {
  if (/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(s)) return 4;
  if (s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s)) return 6;
  return 0;
}

export function encodeRecord(r: DnsRecord): string {
  const v: Record<string, unknown> = { host: r.type === 'TXT' ? '' : r.value, type: r.type, id: r.id };
  if (r.type === 'TXT') v.text = r.value;
  if (r.type === 'MX') v.mail = true;
  if (r.ttl !== undefined) v.ttl = r.ttl;
  if (r.port !== undefined) v.port = r.port;
  if (r.priority !== undefined) v.priority = r.priority;
  if (r.weight !== undefined) v.weight = r.weight;
  if (r.probePorts !== undefined) v.probePorts = r.probePorts;
  if (r.owner !== undefined) v.source = r.owner;
  if (v.host === '') delete v.host;
  return JSON.stringify(v);
}

const optInt = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

/**
 * Decodes a record key and value. Returns undefined for keys that are not records (health keys,
 * unreadable JSON, values with no usable data): a bad value written by another tool must not
 * stop the watch.
 */
export function decodeRecord(prefix: string, key: string, value: string): DnsRecord | undefined {
  if (!key.startsWith(prefix + '/')) return undefined;
  let v: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(value);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
    v = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const segs = key.slice(prefix.length + 1).replace(/\/$/, '').split('/');
  if (segs.length === 0 || segs.some((s) => s === '')) return undefined;
  const host = typeof v.host === 'string' ? v.host : '';
  const text = typeof v.text === 'string' ? v.text : '';
  let type: RecordType;
  if (typeof v.type === 'string' && TYPES.has(v.type.toUpperCase())) type = v.type.toUpperCase() as RecordType;
  else if (v.mail === true) type = 'MX';
  else if (host === '' && text !== '') type = 'TXT';
  else if (ipFamily(host) === 4) type = 'A';
  else if (ipFamily(host) === 6) type = 'AAAA';
  else if (host !== '' && optInt(v.port)) type = 'SRV';
  else if (host !== '') type = 'CNAME';
  else return undefined;
  const last = segs[segs.length - 1]!;
  const hasId = (typeof v.id === 'string' && v.id === last) || type === 'A' || type === 'AAAA' || type === 'SRV';
  if (hasId && segs.length < 2) return undefined;
  const labels = hasId ? segs.slice(0, -1) : segs;
  const rec: DnsRecord = {
    id: hasId ? last : LEGACY_ID,
    name: labels.reverse().join('.').toLowerCase(),
    type,
    value: type === 'TXT' ? text : host.toLowerCase().replace(/\.$/, ''),
  };
  if (type === 'A' || type === 'AAAA') rec.value = host;
  const ttl = optInt(v.ttl);
  if (ttl !== undefined) rec.ttl = ttl;
  const port = optInt(v.port);
  if (port !== undefined && port > 0) rec.port = port;
  const priority = optInt(v.priority);
  if (priority !== undefined && (type === 'SRV' || type === 'MX')) rec.priority = priority;
  const weight = optInt(v.weight);
  if (weight !== undefined && type === 'SRV') rec.weight = weight;
  if (Array.isArray(v.probePorts)) {
    const ports = v.probePorts.filter((p): p is number => optInt(p) !== undefined && (p as number) > 0 && (p as number) < 65536);
    if (ports.length > 0) rec.probePorts = ports.slice(0, 64);
  }
  if (typeof v.source === 'string' && OWNERS.has(v.source)) rec.owner = v.source as RecordOwner;
  return rec;
}

/**
 * (name, id) from a key alone, for delete events whose previous value was compacted away.
 * Without the value we cannot tell a bare-name record; we assume the id form we write.
 */
export function decodeRecordKey(prefix: string, key: string): { name: string; id: string } | undefined {
  if (!key.startsWith(prefix + '/')) return undefined;
  const segs = key.slice(prefix.length + 1).replace(/\/$/, '').split('/');
  if (segs.length < 2 || segs.some((s) => s === '')) return undefined;
  const id = segs[segs.length - 1]!;
  return { id, name: segs.slice(0, -1).reverse().join('.').toLowerCase() };
}

const STATUS_OUT: Record<HealthStatus, string> = { up: 'UP', down: 'DOWN', unknown: 'UNKNOWN' };

export function healthKey(healthPrefix: string, ip: string): string {
  return healthPrefix + ip;
}

/** Writes our fields over whatever the old value held, so ContainerDNS's "domains" survive. */
export function encodeHealth(h: IpHealth, previous: string | undefined): string {
  let base: Record<string, unknown> = {};
  if (previous !== undefined) {
    try {
      const p: unknown = JSON.parse(previous);
      if (p !== null && typeof p === 'object' && !Array.isArray(p)) base = p as Record<string, unknown>;
    } catch {
      // A corrupt previous value is replaced rather than kept.
    }
  }
  const v: Record<string, unknown> = { ...base, status: STATUS_OUT[h.status], changedAtMs: h.changedAtMs };
  if (h.reporter !== undefined) v.reporter = h.reporter;
  return JSON.stringify(v);
}

export function decodeHealth(healthPrefix: string, key: string, value: string | undefined): IpHealth | undefined {
  if (!key.startsWith(healthPrefix)) return undefined;
  const ip = key.slice(healthPrefix.length);
  if (ipFamily(ip) === 0) return undefined;
  if (value === undefined) return { ip, status: 'unknown', changedAtMs: 0 };
  let v: Record<string, unknown>;
  try {
    const p: unknown = JSON.parse(value);
    if (p === null || typeof p !== 'object' || Array.isArray(p)) return undefined;
    v = p as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const s = typeof v.status === 'string' ? v.status.toUpperCase() : '';
  const status: HealthStatus = s === 'UP' ? 'up' : s === 'DOWN' ? 'down' : 'unknown';
  const h: IpHealth = { ip, status, changedAtMs: typeof v.changedAtMs === 'number' ? v.changedAtMs : 0 };
  if (typeof v.reporter === 'string') h.reporter = v.reporter;
  return h;
}
