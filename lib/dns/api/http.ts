// Shared pieces of the REST API: the HttpError every handler throws, bounded body reading,
// JSON answers, and the ownership and conflict rules both API flavours apply.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import { ContainerStackError, type Logger } from '../../common/index.js';
import type { DnsRecord, DnsStore, RecordType } from '../store.js';
import { API_RECORD_TYPES, nameProblem, normalizeDomain } from './validate.js';

/**
 * An answer other than 2xx, thrown inside handlers and turned into a response once. Its code is
 * one of the stable DNS_API_* codes (DNS_API_BAD_FIELD, DNS_API_UNAUTHORIZED, DNS_API_READ_ONLY,
 * DNS_API_NOT_FOUND, DNS_API_METHOD, DNS_API_CONFLICT, DNS_API_TOO_LARGE, DNS_API_COMPAT,
 * DNS_API_STORE_UNAVAILABLE, DNS_API_INTERNAL) that clients see in the body.
 */
export class HttpError extends ContainerStackError {
  constructor(
    readonly status: number,
    code: string,
    /** The message clients see (without the `dns: ` prefix). */
    readonly detail: string,
    readonly field?: string,
  ) {
    super('dns', code, detail);
  }
}

export interface ApiContext {
  store: DnsStore;
  log: Logger;
  domains: string[];
  maxListRecords: number;
  withNameLock<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = body === undefined ? '' : JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) throw new HttpError(413, 'DNS_API_TOO_LARGE', `body is ${declared} bytes (max ${maxBytes})`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > maxBytes) throw new HttpError(413, 'DNS_API_TOO_LARGE', `body exceeds ${maxBytes} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function readJson(req: IncomingMessage, maxBytes: number, optional = false): Promise<unknown> {
  const text = await readBody(req, maxBytes);
  if (text.trim() === '') {
    if (optional) return undefined;
    throw new HttpError(400, 'DNS_API_BAD_FIELD', 'a JSON body is required', 'body');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new HttpError(400, 'DNS_API_BAD_FIELD', `body is not valid JSON: ${(e as Error).message}`, 'body');
  }
}

export const badField = (field: string, message: string): HttpError => new HttpError(400, 'DNS_API_BAD_FIELD', `${field}: ${message}`, field);

export function parseType(v: string | null): RecordType | undefined {
  if (v === null || v === '') return undefined;
  const t = v.toUpperCase() as RecordType;
  if (!API_RECORD_TYPES.includes(t)) throw badField('type', `must be one of ${API_RECORD_TYPES.join(', ')}`);
  return t;
}

export function parseName(raw: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw badField('name', 'is not valid percent-encoding');
  }
  const name = normalizeDomain(decoded);
  const p = nameProblem(name);
  if (p) throw badField('name', p);
  return name;
}

/** Refuses changes to names the Kubernetes watcher owns. */
export function assertWritable(existing: DnsRecord[], name: string): void {
  if (existing.some((r) => r.owner === 'kubewatch')) {
    throw new HttpError(403, 'DNS_API_READ_ONLY', `${name} is managed by kubewatch and read-only through the API`);
  }
}

/** CNAME exclusivity (RFC 1034 §3.6.2) and exact duplicates are conflicts. */
export function assertNoConflict(existing: DnsRecord[], rec: DnsRecord, replacingId?: string): void {
  const others = existing.filter((r) => r.id !== replacingId);
  const same = others.find((r) => r.id === rec.id);
  if (same) throw new HttpError(409, 'DNS_API_CONFLICT', `${rec.name} already has a record with id ${rec.id}`);
  const dup = others.find((r) => r.type === rec.type && r.value === rec.value && (r.port ?? null) === (rec.port ?? null));
  if (dup) throw new HttpError(409, 'DNS_API_CONFLICT', `${rec.name} already has ${rec.type} ${rec.value} (id ${dup.id})`);
  if (rec.type === 'CNAME' && others.length > 0) throw new HttpError(409, 'DNS_API_CONFLICT', `${rec.name} has other records; a CNAME must be alone`);
  if (rec.type !== 'CNAME' && others.some((r) => r.type === 'CNAME')) throw new HttpError(409, 'DNS_API_CONFLICT', `${rec.name} is a CNAME; it cannot have other records`);
}

export function tokenMatches(expected: Buffer, given: string | undefined): boolean {
  if (given === undefined) return false;
  // Hash both sides so the comparison is constant-time regardless of length.
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

