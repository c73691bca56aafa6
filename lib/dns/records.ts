// Record validation and the records file: a JSON list or zone-like text lines, so the server,
// the bench and people can serve records without a store daemon.
//   JSON: {"records":[{"name":"web.svc.cluster.local","type":"A","value":"10.0.0.1"}], "health":[{"ip":"10.0.0.1","status":"down"}]}
//   text: web.svc.cluster.local. 30 A 10.0.0.1
//         _http._tcp.web.svc.cluster.local. 30 SRV 10 5 80 web.svc.cluster.local.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { DnsRecord, DnsStore, HealthStatus, IpHealth, RecordOwner, RecordType } from './store.js';
import { RecordsFileError } from './errors.js';
import { isValidName } from './wire.js';

export const RECORD_TYPES: readonly RecordType[] = ['A', 'AAAA', 'CNAME', 'SRV', 'TXT', 'MX', 'NS', 'PTR'];
/** A records file larger than this is refused rather than read into memory. */
export const RECORDS_FILE_MAX_BYTES = 256 * 1024 * 1024;

export function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/** Returns a description of what is wrong with the record, or null when it is valid. */
export function validateRecord(r: DnsRecord): string | null {
  if (typeof r.id !== 'string' || r.id === '' || r.id.length > 256) return 'id must be a non-empty string of at most 256 characters';
  if (typeof r.name !== 'string' || !isValidName(normalizeName(r.name)) || normalizeName(r.name) === '') return `bad name ${JSON.stringify(r.name)}`;
  if (!RECORD_TYPES.includes(r.type)) return `unsupported type ${JSON.stringify(r.type)}`;
  if (typeof r.value !== 'string') return 'value must be a string';
  if (r.ttl !== undefined && !(Number.isSafeInteger(r.ttl) && r.ttl >= 0 && r.ttl <= 0x7fffffff)) return `bad ttl ${r.ttl}`;
  const u16 = (v: number | undefined): boolean => v === undefined || (Number.isSafeInteger(v) && v >= 0 && v <= 65535);
  if (!u16(r.priority) || !u16(r.weight) || !u16(r.port)) return 'priority, weight and port must be 0..65535';
  switch (r.type) {
    case 'A':
      if (isIP(r.value) !== 4) return `A value must be an IPv4 address, got ${JSON.stringify(r.value)}`;
      break;
    case 'AAAA':
      if (isIP(r.value) !== 6) return `AAAA value must be an IPv6 address, got ${JSON.stringify(r.value)}`;
      break;
    case 'TXT':
      if (Buffer.byteLength(r.value) > 4000) return 'TXT value too long (max 4000 bytes)';
      break;
    default:
      if (r.type === 'SRV' && r.port === undefined) return 'SRV needs a port';
      if (!isValidName(normalizeName(r.value)) || normalizeName(r.value) === '') return `bad target name ${JSON.stringify(r.value)}`;
  }
  return null;
}

export interface RecordsFile {
  records: DnsRecord[];
  health: IpHealth[];
}

/** Parses the text of a records file (JSON when it starts with `{` or `[`, zone-like otherwise). */
export function parseRecordsText(text: string, source = 'records'): RecordsFile {
  const trimmed = text.trimStart();
  const out: RecordsFile = trimmed.startsWith('{') || trimmed.startsWith('[') ? parseJson(trimmed, source) : parseZoneLike(text, source);
  const seen = new Set<string>();
  for (const r of out.records) {
    r.name = normalizeName(r.name);
    if (r.type !== 'A' && r.type !== 'AAAA' && r.type !== 'TXT') r.value = normalizeName(r.value);
    const problem = validateRecord(r);
    if (problem) throw new RecordsFileError(`${source}: record ${r.name} ${r.type}: ${problem}`);
    const key = `${r.name}\u0000${r.id}`;
    if (seen.has(key)) throw new RecordsFileError(`${source}: duplicate record id ${r.id} for ${r.name}`);
    seen.add(key);
  }
  return out;
}

export function loadRecordsFile(path: string): RecordsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new RecordsFileError(`cannot read records file ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (text.length > RECORDS_FILE_MAX_BYTES) throw new RecordsFileError(`records file ${path} is larger than ${RECORDS_FILE_MAX_BYTES} bytes`);
  return parseRecordsText(text, path);
}

function parseJson(text: string, source: string): RecordsFile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new RecordsFileError(`${source}: not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  const obj = Array.isArray(doc) ? { records: doc } : (doc as Record<string, unknown>);
  const recs = obj.records;
  if (!Array.isArray(recs)) throw new RecordsFileError(`${source}: expected {"records":[...]} or a JSON array`);
  const records: DnsRecord[] = recs.map((x, i) => {
    if (x === null || typeof x !== 'object') throw new RecordsFileError(`${source}: records[${i}] is not an object`);
    const r = x as Partial<DnsRecord>;
    const rec: DnsRecord = {
      id: typeof r.id === 'string' ? r.id : autoId(String(r.type), String(r.value), r.port),
      name: String(r.name ?? ''),
      type: String(r.type ?? '').toUpperCase() as RecordType,
      value: String(r.value ?? ''),
      owner: r.owner ?? 'config',
    };
    if (r.ttl !== undefined) rec.ttl = r.ttl;
    if (r.priority !== undefined) rec.priority = r.priority;
    if (r.weight !== undefined) rec.weight = r.weight;
    if (r.port !== undefined) rec.port = r.port;
    if (r.probePorts !== undefined) rec.probePorts = r.probePorts;
    return rec;
  });
  const health: IpHealth[] = [];
  if (obj.health !== undefined) {
    if (!Array.isArray(obj.health)) throw new RecordsFileError(`${source}: health must be a list`);
    for (const h of obj.health as Partial<IpHealth>[]) {
      if (typeof h.ip !== 'string' || isIP(h.ip) === 0) throw new RecordsFileError(`${source}: health entry with bad ip ${JSON.stringify(h.ip)}`);
      const status = h.status as HealthStatus;
      if (status !== 'up' && status !== 'down' && status !== 'unknown') throw new RecordsFileError(`${source}: health status must be up, down or unknown`);
      health.push({ ip: h.ip, status, changedAtMs: typeof h.changedAtMs === 'number' ? h.changedAtMs : 0, reporter: 'config' });
    }
  }
  return { records, health };
}

function autoId(type: string, value: string, port?: number): string {
  return `${type.toUpperCase()}:${value}${port === undefined ? '' : `:${port}`}`;
}

/** `name [ttl] [IN] TYPE rdata...`; `;` and `#` start comments; `$TTL n` sets the default TTL. */
function parseZoneLike(text: string, source: string): RecordsFile {
  const records: DnsRecord[] = [];
  let defaultTtl: number | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').replace(/[;#].*$/, '').trim();
    if (line === '') continue;
    const where = `${source}:${i + 1}`;
    const f = line.match(/"[^"]*"|\S+/g) ?? [];
    if (f[0]?.toUpperCase() === '$TTL') {
      defaultTtl = Number(f[1]);
      if (!Number.isSafeInteger(defaultTtl)) throw new RecordsFileError(`${where}: bad $TTL`);
      continue;
    }
    let k = 0;
    const name = f[k++];
    if (name === undefined) continue;
    let ttl = defaultTtl;
    if (f[k] !== undefined && /^\d+$/.test(f[k]!)) ttl = Number(f[k++]);
    if (f[k]?.toUpperCase() === 'IN') k++;
    const type = (f[k++] ?? '').toUpperCase() as RecordType;
    const rest = f.slice(k);
    const need = (n: number): void => {
      if (rest.length < n) throw new RecordsFileError(`${where}: ${type} needs ${n} fields after the type`);
    };
    const rec: DnsRecord = { id: '', name, type, value: '', owner: 'config' };
    if (ttl !== undefined) rec.ttl = ttl;
    switch (type) {
      case 'A': case 'AAAA': case 'CNAME': case 'NS': case 'PTR':
        need(1);
        rec.value = rest[0]!;
        break;
      case 'TXT':
        need(1);
        rec.value = rest.map((s) => s.replace(/^"|"$/g, '')).join('');
        break;
      case 'MX':
        need(2);
        rec.priority = Number(rest[0]);
        rec.value = rest[1]!;
        break;
      case 'SRV':
        need(4);
        rec.priority = Number(rest[0]);
        rec.weight = Number(rest[1]);
        rec.port = Number(rest[2]);
        rec.value = rest[3]!;
        break;
      default:
        throw new RecordsFileError(`${where}: unsupported type ${JSON.stringify(type)} (supported: ${RECORD_TYPES.join(' ')})`);
    }
    rec.id = autoId(type, normalizeName(rec.value), rec.port);
    records.push(rec);
  }
  return { records, health: [] };
}

/**
 * Makes the records owned by `owner` in any store equal to `records` (deleting the others of that
 * owner, writing only what changed), and applies the file's health. Works through the DnsStore
 * interface, so a records file can seed the in-memory, table or etcd store alike.
 */
export async function syncRecords(store: DnsStore, file: RecordsFile, owner: RecordOwner = 'config'): Promise<{ put: number; deleted: number }> {
  const snap = await store.snapshot();
  const key = (r: { name: string; id: string }): string => `${normalizeName(r.name)}\u0000${r.id}`;
  const want = new Map(file.records.map((r) => [key(r), { ...r, name: normalizeName(r.name), owner }]));
  let put = 0;
  let deleted = 0;
  for (const r of snap.records) {
    if (r.owner !== owner || want.has(key(r))) continue;
    if (await store.delete(r.name, r.id)) deleted++;
  }
  const have = new Map(snap.records.map((r) => [key(r), r]));
  for (const [k, r] of want) {
    const cur = have.get(k);
    if (cur && sameRecord(cur, r)) continue;
    await store.put(r);
    put++;
  }
  const health = new Map(snap.health.map((h) => [h.ip, h.status]));
  for (const h of file.health) if (health.get(h.ip) !== h.status) await store.setHealth(h);
  return { put, deleted };
}

function sameRecord(a: DnsRecord, b: DnsRecord): boolean {
  return a.type === b.type && a.value === b.value && a.ttl === b.ttl && a.priority === b.priority && a.weight === b.weight && a.port === b.port
    && a.owner === b.owner && JSON.stringify(a.probePorts ?? null) === JSON.stringify(b.probePorts ?? null);
}
