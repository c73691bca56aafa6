// The ContainerDNS REST API on node:http: token-authenticated CRUD of records of every type,
// health reads, and the original ContainerDNS paths (/containerdns/api/{domain}, see compat.ts).
//
//   GET    /api/v1/records[?name=&type=&owner=&limit=]   list
//   POST   /api/v1/records                              create one record (201; 409 if it exists)
//   GET    /api/v1/records/{name}[?type=]               records of a name (404 if none)
//   DELETE /api/v1/records/{name}[?type=]               delete all of a name (type)
//   GET    /api/v1/records/{name}/{id}                  one record
//   PUT    /api/v1/records/{name}/{id}                  update the given fields (404 if missing)
//   DELETE /api/v1/records/{name}/{id}                  delete one (204)
//   GET    /api/v1/health[/{ip}]                        health the probers wrote
//
// Errors are JSON {"error":{"code","message","field"?}} with the usual status: 400 bad input
// (naming the field), 401 no/bad token, 403 records owned by kubewatch, 404, 405, 409 conflict,
// 413 body too large, 503 store unavailable.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Histogram, defineError, errorMessage, silentLogger, type Logger, type Registry } from '../../common/index.js';
import type { DnsRecord, DnsStore } from '../store.js';
import { checkRecordBody, normalizeDomain } from './validate.js';
import { handleCompat } from './compat.js';
import {
  HttpError, assertNoConflict, assertWritable, badField, parseName, parseType, readJson, sendJson, tokenMatches, type ApiContext,
} from './http.js';

/** The API could not start (bad options, port in use). */
export class ApiStartError extends defineError('dns', 'DNS_API_START') {}

export interface DnsApiOptions {
  store: DnsStore;
  host?: string;
  port?: number;
  /** Bearer token every request must carry; required and non-empty. */
  token: string;
  logger?: Logger;
  registry?: Registry;
  /** Largest request body accepted (413 above it). */
  maxBodyBytes?: number;
  /** Most records one list answer holds (the `limit` query parameter is capped at it). */
  maxListRecords?: number;
  /** Cluster zones for the ContainerDNS paths (they refuse names outside them); empty = any. */
  domains?: string[];
  maxConnections?: number;
}

export interface DnsApi {
  readonly port: number;
  readonly server: Server;
  url(path?: string): string;
  close(): Promise<void>;
}

export async function startDnsApi(opts: DnsApiOptions): Promise<DnsApi> {
  if (typeof opts.token !== 'string' || opts.token.length === 0) throw new ApiStartError('a non-empty token is required');
  const log = opts.logger ?? silentLogger;
  const maxBodyBytes = opts.maxBodyBytes ?? 64 * 1024;
  const token = Buffer.from(opts.token, 'utf8');
  const locks = new Map<string, Promise<unknown>>();
  const ctx: ApiContext = {
    store: opts.store,
    log,
    domains: (opts.domains ?? []).map(normalizeDomain),
    maxListRecords: opts.maxListRecords ?? 10_000,
    // Serializes check-then-write per name so two creates cannot both pass the conflict check.
    // The map holds only names with a request in flight (bounded by maxConnections).
    withNameLock: async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      const prev = locks.get(name) ?? Promise.resolve();
      const run = prev.then(fn, fn);
      const tail = run.catch(() => undefined);
      locks.set(name, tail);
      try {
        return await run;
      } finally {
        if (locks.get(name) === tail) locks.delete(name);
      }
    },
  };
  const reg = opts.registry;
  const requests = reg ? new Counter({ name: 'containerdns_api_requests_total', help: 'REST API requests', labelNames: ['method', 'status'], registers: [reg] }) : undefined;
  const latency = reg ? new Histogram({ name: 'containerdns_api_request_seconds', help: 'REST API latency', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5], registers: [reg] }) : undefined;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization;
    const bearer = typeof auth === 'string' && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, '').trim() : undefined;
    const isCompat = url.pathname === '/containerdns/api' || url.pathname.startsWith('/containerdns/api/');
    // The original ContainerDNS API took the token as a query parameter; only its paths do here.
    const given = bearer ?? (isCompat ? url.searchParams.get('token') ?? undefined : undefined);
    if (!tokenMatches(token, given)) {
      res.setHeader('www-authenticate', 'Bearer realm="containerdns"');
      throw new HttpError(401, 'DNS_API_UNAUTHORIZED', given === undefined ? 'missing bearer token' : 'bad token');
    }
    if (isCompat) {
      await handleCompat(ctx, req, res, url, maxBodyBytes);
      return;
    }
    const parts = url.pathname.split('/').filter((p) => p !== '');
    if (parts[0] !== 'api' || parts[1] !== 'v1') throw new HttpError(404, 'DNS_API_NOT_FOUND', `no route ${url.pathname}`);
    const method = req.method ?? 'GET';
    const allow = (methods: string[]): void => {
      if (!methods.includes(method)) {
        res.setHeader('allow', methods.join(', '));
        throw new HttpError(405, 'DNS_API_METHOD', `${method} not allowed on ${url.pathname}`);
      }
    };
    if (parts[2] === 'health') {
      allow(['GET']);
      const snap = await ctx.store.snapshot();
      if (parts.length === 3) return sendJson(res, 200, { health: snap.health, revision: snap.revision });
      const ip = decodeURIComponent(parts[3] ?? '');
      const h = snap.health.find((x) => x.ip === ip);
      if (!h || parts.length > 4) throw new HttpError(404, 'DNS_API_NOT_FOUND', `no health for ${ip}`);
      return sendJson(res, 200, h);
    }
    if (parts[2] !== 'records' || parts.length > 5) throw new HttpError(404, 'DNS_API_NOT_FOUND', `no route ${url.pathname}`);

    if (parts.length === 3) {
      allow(['GET', 'POST']);
      if (method === 'GET') return listRecords(ctx, url, res);
      const body = await readJson(req, maxBodyBytes);
      const checked = checkRecordBody(body);
      if ('problem' in checked) throw badField(checked.problem.field, checked.problem.message);
      const rec: DnsRecord = { ...checked.record, owner: 'api' };
      return ctx.withNameLock(rec.name, async () => {
        const existing = await ctx.store.get(rec.name);
        assertWritable(existing, rec.name);
        assertNoConflict(existing, rec);
        const revision = await ctx.store.put(rec);
        log.info({ name: rec.name, id: rec.id, type: rec.type }, 'dns api: record created');
        res.setHeader('location', `/api/v1/records/${encodeURIComponent(rec.name)}/${encodeURIComponent(rec.id)}`);
        sendJson(res, 201, { record: rec, revision });
      });
    }

    const name = parseName(parts[3]!);
    if (parts.length === 4) {
      allow(['GET', 'DELETE']);
      const type = parseType(url.searchParams.get('type'));
      if (method === 'GET') {
        const recs = await ctx.store.get(name, type);
        if (recs.length === 0) throw new HttpError(404, 'DNS_API_NOT_FOUND', `no ${type ?? ''} records for ${name}`.replace('  ', ' '));
        return sendJson(res, 200, { name, records: recs });
      }
      return ctx.withNameLock(name, async () => {
        const all = await ctx.store.get(name);
        const victims = all.filter((r) => type === undefined || r.type === type);
        if (victims.length === 0) throw new HttpError(404, 'DNS_API_NOT_FOUND', `no records for ${name}`);
        assertWritable(all, name);
        for (const r of victims) await ctx.store.delete(name, r.id);
        log.info({ name, count: victims.length }, 'dns api: records deleted');
        sendJson(res, 200, { deleted: victims.length });
      });
    }

    let id: string;
    try {
      id = decodeURIComponent(parts[4]!);
    } catch {
      throw badField('id', 'is not valid percent-encoding');
    }
    allow(['GET', 'PUT', 'DELETE']);
    if (method === 'GET') {
      const rec = (await ctx.store.get(name)).find((r) => r.id === id);
      if (!rec) throw new HttpError(404, 'DNS_API_NOT_FOUND', `no record ${id} for ${name}`);
      return sendJson(res, 200, rec);
    }
    const body = method === 'PUT' ? await readJson(req, maxBodyBytes) : undefined;
    return ctx.withNameLock(name, async () => {
      const all = await ctx.store.get(name);
      const cur = all.find((r) => r.id === id);
      if (!cur) throw new HttpError(404, 'DNS_API_NOT_FOUND', `no record ${id} for ${name}`);
      assertWritable(all, name);
      if (method === 'DELETE') {
        await ctx.store.delete(name, id);
        log.info({ name, id }, 'dns api: record deleted');
        res.writeHead(204).end();
        return;
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badField('body', 'must be a JSON object');
      const b = { ...(body as Record<string, unknown>) };
      if ('name' in b && (typeof b.name !== 'string' || normalizeDomain(b.name) !== name)) throw badField('name', 'cannot be changed; delete and create instead');
      if ('id' in b && b.id !== id) throw badField('id', 'cannot be changed; delete and create instead');
      // A field set to null is removed (ttl back to the zone default, no probe ports).
      const base: DnsRecord = { ...cur };
      for (const k of ['ttl', 'probePorts'] as const) {
        if (b[k] === null) {
          delete b[k];
          delete base[k];
        }
      }
      const checked = checkRecordBody(b, base);
      if ('problem' in checked) throw badField(checked.problem.field, checked.problem.message);
      const rec: DnsRecord = { ...checked.record, id, owner: 'api' };
      assertNoConflict(all, rec, id);
      const revision = await ctx.store.put(rec);
      log.info({ name, id }, 'dns api: record updated');
      sendJson(res, 200, { record: rec, revision });
    });
  };

  const server = createServer((req, res) => {
    const started = performance.now();
    res.on('finish', () => {
      requests?.inc({ method: req.method ?? '', status: String(res.statusCode) });
      latency?.observe((performance.now() - started) / 1000);
    });
    handle(req, res).catch((err: unknown) => {
      let e: HttpError;
      if (err instanceof HttpError) e = err;
      else {
        const code = (err as { code?: unknown })?.code;
        const unavailable = typeof code === 'string' && /ETCD|STORE/.test(code);
        if (typeof code === 'string' && code === 'DNS_INVALID_RECORD') e = new HttpError(400, code, errorMessage(err), 'body');
        else e = new HttpError(unavailable ? 503 : 500, unavailable ? 'DNS_API_STORE_UNAVAILABLE' : 'DNS_API_INTERNAL', unavailable ? errorMessage(err) : 'internal error');
        log.error({ err: errorMessage(err), url: req.url }, 'dns api: request failed');
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // Unread request bytes after an early 413/401 would otherwise stall keep-alive.
      res.setHeader('connection', 'close');
      if (req.url?.startsWith('/containerdns/api')) {
        res.writeHead(e.status, { 'content-type': 'text/plain' }).end(`ERR, ${e.detail}\n`);
        return;
      }
      sendJson(res, e.status, { error: { code: e.code, message: e.detail, ...(e.field ? { field: e.field } : {}) } });
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.maxConnections = opts.maxConnections ?? 1024;
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new ApiStartError(`cannot listen on ${host}:${opts.port ?? 0}: ${e.message}`, { cause: e })));
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ host, port }, 'dns api: listening');
  return {
    port,
    server,
    url: (p = '/') => `http://${host.includes(':') ? `[${host}]` : host}:${port}${p}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function listRecords(ctx: ApiContext, url: URL, res: ServerResponse): Promise<void> {
  const type = parseType(url.searchParams.get('type'));
  const nameQ = url.searchParams.get('name');
  const name = nameQ ? normalizeDomain(nameQ) : undefined;
  const suffix = url.searchParams.get('suffix');
  const owner = url.searchParams.get('owner');
  const limitRaw = url.searchParams.get('limit');
  const limit = limitRaw === null ? ctx.maxListRecords : Number(limitRaw);
  if (!Number.isSafeInteger(limit) || limit < 1) throw badField('limit', 'must be a positive integer');
  const snap = await ctx.store.snapshot();
  const matches = snap.records
    .filter((r) => (type === undefined || r.type === type) && (name === undefined || r.name === name))
    .filter((r) => (suffix === null || r.name === normalizeDomain(suffix) || r.name.endsWith('.' + normalizeDomain(suffix))))
    .filter((r) => owner === null || (r.owner ?? 'api') === owner)
    .sort((a, b) => (a.name === b.name ? (a.id < b.id ? -1 : 1) : a.name < b.name ? -1 : 1));
  const cap = Math.min(limit, ctx.maxListRecords);
  sendJson(res, 200, { records: matches.slice(0, cap), total: matches.length, truncated: matches.length > cap, revision: snap.revision });
}
