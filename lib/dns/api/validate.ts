// Validation of records arriving from outside (REST bodies, Kubernetes objects): every
// rejection names the field, so a 400 tells the client exactly what to fix. Shared by the API,
// the CLI (to fail before a round trip) and the Kubernetes watcher.
import { isIP } from 'node:net';
import type { DnsRecord, RecordType } from '../store.js';

export const API_RECORD_TYPES: readonly RecordType[] = ['A', 'AAAA', 'CNAME', 'SRV', 'TXT', 'MX', 'NS', 'PTR'];
/** RFC 2181 §8: TTLs are 0..2^31-1. */
export const TTL_MAX = 2_147_483_647;
export const TXT_MAX_BYTES = 4000;
export const PROBE_PORTS_MAX = 16;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const LABEL_RE = /^(?:\*|[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)$/;

export interface FieldProblem {
  field: string;
  message: string;
}

/** Lower-case, no trailing dot. */
export function normalizeDomain(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * Why `name` is not a usable domain name, or null. Wire length (labels plus their length
 * bytes plus the root) must be <= 255 bytes, each label 1..63 bytes of letters, digits,
 * hyphen or underscore (SRV owners), and `*` only as a whole leftmost label.
 */
export function nameProblem(name: string): string | null {
  if (name === '') return 'must not be empty';
  if (!/^[\x21-\x7e]+$/.test(name)) return 'must be ASCII without spaces (use punycode for IDNs)';
  const labels = name.split('.');
  let wire = 1;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i]!;
    if (l.length === 0) return 'has an empty label';
    if (l.length > 63) return `label ${JSON.stringify(l.slice(0, 20) + '...')} is ${l.length} bytes (max 63)`;
    if (!LABEL_RE.test(l)) return `label ${JSON.stringify(l)} has characters other than letters, digits, - and _`;
    if (l === '*' && i !== 0) return 'a wildcard * must be the leftmost label';
    wire += l.length + 1;
  }
  if (wire > 255) return `is ${wire} bytes on the wire (max 255)`;
  return null;
}

const isUint = (v: unknown, max: number, min = 0): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;

/** Fields a client may send for a record; anything else is a 400 naming the field. */
const BODY_FIELDS = new Set(['id', 'name', 'type', 'value', 'ttl', 'priority', 'weight', 'port', 'probePorts', 'owner']);

/**
 * Validates and normalizes a record body. `base` (for updates) supplies fields the body leaves
 * out. Returns the record or the first problem found.
 */
export function checkRecordBody(body: unknown, base?: DnsRecord): { record: DnsRecord } | { problem: FieldProblem } {
  const fail = (field: string, message: string): { problem: FieldProblem } => ({ problem: { field, message } });
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return fail('body', 'must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!BODY_FIELDS.has(k)) return fail(k, 'unknown field');
  const pick = <K extends keyof DnsRecord>(k: K): unknown => (k in b ? b[k] : base?.[k]);

  const rawName = pick('name');
  if (typeof rawName !== 'string') return fail('name', 'is required and must be a string');
  const name = normalizeDomain(rawName);
  const np = nameProblem(name);
  if (np) return fail('name', np);

  const typeRaw = pick('type');
  if (typeof typeRaw !== 'string' || !API_RECORD_TYPES.includes(typeRaw.toUpperCase() as RecordType)) {
    return fail('type', `must be one of ${API_RECORD_TYPES.join(', ')}`);
  }
  const type = typeRaw.toUpperCase() as RecordType;

  const valueRaw = pick('value');
  if (typeof valueRaw !== 'string' || valueRaw === '') return fail('value', 'is required and must be a non-empty string');
  let value = valueRaw.trim();
  switch (type) {
    case 'A':
      if (isIP(value) !== 4) return fail('value', `must be an IPv4 address for A, got ${JSON.stringify(valueRaw)}`);
      break;
    case 'AAAA':
      if (isIP(value) !== 6) return fail('value', `must be an IPv6 address for AAAA, got ${JSON.stringify(valueRaw)}`);
      value = value.toLowerCase();
      break;
    case 'TXT':
      value = valueRaw;
      if (Buffer.byteLength(value) > TXT_MAX_BYTES) return fail('value', `TXT text is longer than ${TXT_MAX_BYTES} bytes`);
      break;
    default: {
      value = normalizeDomain(value);
      const tp = nameProblem(value);
      if (tp) return fail('value', `target name ${tp}`);
      if (value.includes('*')) return fail('value', 'a target name cannot be a wildcard');
    }
  }

  const rec: DnsRecord = { id: '', name, type, value };
  const ttl = pick('ttl');
  if (ttl !== undefined) {
    if (!isUint(ttl, TTL_MAX)) return fail('ttl', `must be an integer 0..${TTL_MAX}`);
    rec.ttl = ttl;
  }
  const priority = pick('priority');
  const weight = pick('weight');
  const port = pick('port');
  if (type === 'SRV') {
    if (!isUint(port, 65535)) return fail('port', 'SRV needs a port 0..65535');
    rec.port = port;
    rec.priority = priority === undefined ? 10 : (priority as number);
    rec.weight = weight === undefined ? 10 : (weight as number);
    if (!isUint(rec.priority, 65535)) return fail('priority', 'must be an integer 0..65535');
    if (!isUint(rec.weight, 65535)) return fail('weight', 'must be an integer 0..65535');
  } else if (type === 'MX') {
    rec.priority = priority === undefined ? 10 : (priority as number);
    if (!isUint(rec.priority, 65535)) return fail('priority', 'must be an integer 0..65535');
    if (weight !== undefined && 'weight' in b) return fail('weight', 'only SRV records have a weight');
    if (port !== undefined && 'port' in b) return fail('port', 'MX records have no port');
  } else {
    if (priority !== undefined && 'priority' in b) return fail('priority', 'only SRV and MX records have a priority');
    if (weight !== undefined && 'weight' in b) return fail('weight', 'only SRV records have a weight');
    if (port !== undefined) {
      if (type !== 'A' && type !== 'AAAA') {
        if ('port' in b) return fail('port', 'only SRV, A and AAAA records have a port');
      } else {
        if (!isUint(port, 65535, 1)) return fail('port', 'must be an integer 1..65535');
        rec.port = port;
      }
    }
  }
  const probePorts = pick('probePorts');
  if (probePorts !== undefined) {
    if (type !== 'A' && type !== 'AAAA') {
      if ('probePorts' in b) return fail('probePorts', 'only A and AAAA records are probed');
    } else {
      if (!Array.isArray(probePorts) || probePorts.length > PROBE_PORTS_MAX || !probePorts.every((p) => isUint(p, 65535, 1))) {
        return fail('probePorts', `must be a list of at most ${PROBE_PORTS_MAX} ports 1..65535`);
      }
      rec.probePorts = [...new Set(probePorts as number[])];
    }
  }
  const owner = b.owner;
  if (owner !== undefined && owner !== 'api') return fail('owner', 'only "api" records can be written through the API');

  const id = pick('id');
  if (id !== undefined) {
    if (typeof id !== 'string' || !ID_RE.test(id)) return fail('id', 'must be 1-128 characters of letters, digits, _ . - (starting with a letter or digit)');
    rec.id = id;
  } else {
    rec.id = defaultRecordId(rec);
  }
  return { record: rec };
}

/** FNV-1a 32-bit, hex: ContainerDNS named A-record keys by the FNV hash of the IP. */
export function fnv32aHex(s: string): string {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(s, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16);
}

/**
 * A stable id when the client gives none: for A/AAAA the FNV hash of the IP (so the etcd key is
 * the one the original ContainerDNS API wrote), for other types of the type and value.
 */
export function defaultRecordId(r: Pick<DnsRecord, 'type' | 'value' | 'port'>): string {
  if (r.type === 'A' || r.type === 'AAAA') return fnv32aHex(r.value);
  return fnv32aHex(`${r.type}|${r.value}|${r.port ?? ''}`);
}
