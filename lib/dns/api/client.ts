// A client for the ContainerDNS REST API (server.ts), used by `containerdns ctl` and by anyone
// scripting against the API from Node. Every failure is one of two typed errors: the server
// answered with an error status, or it could not be reached.
import { defineError } from '../../common/index.js';
import type { DnsRecord, IpHealth, RecordType } from '../store.js';

/** The API answered with a non-2xx status; `status`, `apiCode` and `field` come from its body. */
export class ApiRequestError extends defineError('dns', 'DNS_API_REQUEST') {
  constructor(
    readonly status: number,
    readonly apiCode: string,
    readonly detail: string,
    readonly field?: string,
  ) {
    super(`API answered ${status}${apiCode ? ` ${apiCode}` : ''}: ${detail}`);
  }
}
/** The API server could not be reached or answered something that is not the API. */
export class ApiUnreachableError extends defineError('dns', 'DNS_API_UNREACHABLE') {}

export interface DnsApiClientOptions {
  /** Base URL, e.g. `http://127.0.0.1:8053`. */
  server: string;
  token: string;
  timeoutMs?: number;
  /** Largest answer read (lists of many records). */
  maxResponseBytes?: number;
}

export interface ListQuery {
  name?: string;
  type?: RecordType;
  suffix?: string;
  owner?: string;
  limit?: number;
}

export interface RecordInput {
  name?: string;
  type?: string;
  value?: string;
  id?: string;
  ttl?: number | null;
  priority?: number;
  weight?: number;
  port?: number;
  probePorts?: number[] | null;
}

export class DnsApiClient {
  private readonly base: URL;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;

  constructor(private readonly opts: DnsApiClientOptions) {
    try {
      this.base = new URL(opts.server);
    } catch {
      throw new ApiUnreachableError(`bad server URL ${JSON.stringify(opts.server)}`);
    }
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') throw new ApiUnreachableError(`server URL must be http(s), got ${opts.server}`);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxResponseBytes = opts.maxResponseBytes ?? 64 * 1024 * 1024;
  }

  private async call(method: string, path: string, body?: unknown): Promise<unknown> {
    const url = new URL(this.base.pathname.replace(/\/$/, '') + path, this.base);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${this.opts.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = (e as Error).name === 'TimeoutError' ? `no answer within ${this.timeoutMs}ms` : cause?.code ?? cause?.message ?? (e as Error).message;
      throw new ApiUnreachableError(`cannot reach ${this.base.origin}: ${why}`, { cause: e });
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (Number.isFinite(declared) && declared > this.maxResponseBytes) throw new ApiUnreachableError(`answer of ${declared} bytes exceeds ${this.maxResponseBytes}`);
    const text = await res.text();
    if (text.length > this.maxResponseBytes) throw new ApiUnreachableError(`answer exceeds ${this.maxResponseBytes} bytes`);
    let json: unknown;
    if (text.trim() !== '') {
      try {
        json = JSON.parse(text);
      } catch {
        throw new ApiUnreachableError(`${this.base.origin} answered HTTP ${res.status} with non-JSON; is it the ContainerDNS API?`);
      }
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string; field?: string } } | undefined)?.error;
      throw new ApiRequestError(res.status, e?.code ?? '', e?.message ?? res.statusText, e?.field);
    }
    return json;
  }

  async list(q: ListQuery = {}): Promise<{ records: DnsRecord[]; total: number; truncated: boolean }> {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, String(v));
    const qs = p.toString();
    return (await this.call('GET', `/api/v1/records${qs ? `?${qs}` : ''}`)) as { records: DnsRecord[]; total: number; truncated: boolean };
  }

  async show(name: string, type?: RecordType): Promise<DnsRecord[]> {
    const out = (await this.call('GET', `/api/v1/records/${encodeURIComponent(name)}${type ? `?type=${type}` : ''}`)) as { records: DnsRecord[] };
    return out.records;
  }

  async get(name: string, id: string): Promise<DnsRecord> {
    return (await this.call('GET', `/api/v1/records/${encodeURIComponent(name)}/${encodeURIComponent(id)}`)) as DnsRecord;
  }

  async create(r: RecordInput): Promise<DnsRecord> {
    return ((await this.call('POST', '/api/v1/records', r)) as { record: DnsRecord }).record;
  }

  async update(name: string, id: string, changes: RecordInput): Promise<DnsRecord> {
    return ((await this.call('PUT', `/api/v1/records/${encodeURIComponent(name)}/${encodeURIComponent(id)}`, changes)) as { record: DnsRecord }).record;
  }

  async delete(name: string, id: string): Promise<void> {
    await this.call('DELETE', `/api/v1/records/${encodeURIComponent(name)}/${encodeURIComponent(id)}`);
  }

  /** Deletes every record of `name` (of `type`); returns how many. */
  async deleteName(name: string, type?: RecordType): Promise<number> {
    const out = (await this.call('DELETE', `/api/v1/records/${encodeURIComponent(name)}${type ? `?type=${type}` : ''}`)) as { deleted: number };
    return out.deleted;
  }

  async health(ip?: string): Promise<IpHealth[]> {
    if (ip !== undefined) return [(await this.call('GET', `/api/v1/health/${encodeURIComponent(ip)}`)) as IpHealth];
    return ((await this.call('GET', '/api/v1/health')) as { health: IpHealth[] }).health;
  }
}
