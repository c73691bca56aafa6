// The original ContainerDNS API paths, so scripts written against it keep working:
//
//   GET    /containerdns/api[?type=]             every record, grouped by name
//   GET    /containerdns/api/{domain}[?type=A]   one name: {"web.zone.": {"type":"A","ips":[...]}}
//   POST   /containerdns/api/{domain}            {"type":"A","ips":[...]} | {"type":"SRV","ips":[...],"ports":[...]}
//                                               | {"type":"CNAME","alias":"x.zone"} (alias -> domain)
//                                               | {"type":"NS","nsHost"} | {"type":"MX","mailHost","mailPriority"}
//                                               | {"type":"TXT","text"}
//   PUT    /containerdns/api/{domain}            {"type":"A","update":{"<old ip>":"<new ip>"}}
//                                               | {"type":"CNAME","update":{"<old alias>":"<new alias>"}}
//   DELETE /containerdns/api/{domain}            {"type":"A","ips":[...]} (no ips / no type: all A records)
//
// As in the original: token as `?token=` (a Bearer header works too), plain-text answers
// "OK" or "ERR, ...", A-record ids are the FNV-1a hash of the IP, names must lie in a
// configured domain, and `svc.<domain>` (the Kubernetes part) is read-only. Deliberate
// differences: failures carry a real HTTP status instead of 200; IPv6 addresses are accepted
// (as AAAA); NS/MX/TXT are stored under the domain itself rather than under the original's
// `ns.dns.` / `mail.` / `txt.` infix names; the `user` parameter is accepted but not enforced.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { DnsRecord, RecordType } from '../store.js';
import { HttpError, assertNoConflict, assertWritable, readJson, sendJson, type ApiContext } from './http.js';
import { checkRecordBody, defaultRecordId, nameProblem, normalizeDomain } from './validate.js';

const MAX_IPS = 1000;

interface CompatBody {
  type?: string;
  ips?: unknown;
  ports?: unknown;
  alias?: unknown;
  update?: unknown;
  nsHost?: unknown;
  mailHost?: unknown;
  mailPriority?: unknown;
  text?: unknown;
}

const err = (status: number, message: string): HttpError => new HttpError(status, 'DNS_API_COMPAT', message);
const ok = (res: ServerResponse): void => {
  res.writeHead(200, { 'content-type': 'text/plain' }).end('OK\n');
};

function checkDomain(ctx: ApiContext, raw: string): string {
  const name = normalizeDomain(raw);
  const p = nameProblem(name);
  if (p) throw err(400, `bad domain name: ${p}`);
  if (ctx.domains.length > 0) {
    const zone = ctx.domains.find((d) => name === d || name.endsWith('.' + d));
    if (!zone) throw err(400, `the api not support this domain ${name}`);
  }
  return name;
}

function checkNotKube(ctx: ApiContext, name: string): void {
  if (ctx.domains.some((d) => name === `svc.${d}` || name.endsWith(`.svc.${d}`))) throw new HttpError(403, 'DNS_API_READ_ONLY', 'can not ops k8s svc');
}

/** The original's grouped view of records: A/AAAA/SRV gather IPs, others one entry. */
function groupRecords(records: DnsRecord[]): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const r of records) {
    const key = `${r.name}.`;
    switch (r.type) {
      case 'A':
      case 'AAAA':
      case 'SRV': {
        const g = (out[key] ??= { type: r.type, ips: [] as string[] });
        (g.ips as string[]).push(r.value);
        if (r.type === 'SRV') {
          g.ports ??= [] as number[];
          (g.ports as number[]).push(r.port ?? 0);
        }
        break;
      }
      case 'CNAME':
        out[key] = { type: 'CNAME', 'alias-domain': `${r.value}.` };
        break;
      case 'NS':
        out[key] = { type: 'NS', nsHost: r.value };
        break;
      case 'MX':
        out[key] = { type: 'MX', mailHost: r.value, mailPriority: r.priority ?? 0 };
        break;
      case 'TXT':
        out[key] = { type: 'TXT', text: r.value };
        break;
      case 'PTR':
        out[key] = { type: 'PTR', host: r.value };
        break;
    }
  }
  return out;
}

function ipList(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0) throw err(400, 'no domain ips');
  if (v.length > MAX_IPS) throw err(413, `at most ${MAX_IPS} ips per request`);
  for (const ip of v) if (typeof ip !== 'string' || isIP(ip) === 0) throw err(400, `it is not IP addr: ${JSON.stringify(ip)}`);
  return v as string[];
}

function build(body: Record<string, unknown>): DnsRecord {
  const c = checkRecordBody(body);
  if ('problem' in c) throw new HttpError(400, 'DNS_API_BAD_FIELD', `${c.problem.field}: ${c.problem.message}`, c.problem.field);
  return { ...c.record, owner: 'api' };
}

export async function handleCompat(ctx: ApiContext, req: IncomingMessage, res: ServerResponse, url: URL, maxBodyBytes: number): Promise<void> {
  const rest = url.pathname.slice('/containerdns/api'.length).replace(/^\//, '');
  const method = req.method ?? 'GET';
  if (rest === '') {
    if (method !== 'GET') throw err(405, `${method} needs a domain`);
    const type = url.searchParams.get('type')?.toUpperCase();
    const snap = await ctx.store.snapshot();
    const recs = snap.records.filter((r) => !type || r.type === type).slice(0, ctx.maxListRecords);
    sendJson(res, 200, groupRecords(recs));
    return;
  }
  if (rest.includes('/')) throw err(404, 'no such path');
  let decoded: string;
  try {
    decoded = decodeURIComponent(rest);
  } catch {
    throw err(400, 'bad domain name encoding');
  }
  const domain = checkDomain(ctx, decoded);

  if (method === 'GET') {
    const type = (url.searchParams.get('type') ?? 'A').toUpperCase() as RecordType;
    const types: RecordType[] = type === 'A' ? ['A', 'AAAA'] : [type];
    const recs = (await ctx.store.get(domain)).filter((r) => types.includes(r.type));
    if (recs.length === 0) throw err(404, 'no find domain name');
    sendJson(res, 200, groupRecords(recs));
    return;
  }
  if (method !== 'POST' && method !== 'PUT' && method !== 'DELETE') throw err(405, `${method} not supported`);
  const raw = await readJson(req, maxBodyBytes, method === 'DELETE');
  if (raw !== undefined && (raw === null || typeof raw !== 'object' || Array.isArray(raw))) throw err(400, 'body must be a JSON object');
  const body = (raw ?? {}) as CompatBody;
  const type = typeof body.type === 'string' ? body.type.toUpperCase() : '';
  if (method !== 'DELETE' && type === '') throw err(400, 'no type offered');
  checkNotKube(ctx, domain);

  if (method === 'POST') {
    const writes: DnsRecord[] = [];
    let target = domain;
    switch (type) {
      case 'A': {
        for (const ip of ipList(body.ips)) writes.push(build({ name: domain, type: isIP(ip) === 6 ? 'AAAA' : 'A', value: ip, ttl: 30 }));
        break;
      }
      case 'SRV': {
        const ips = ipList(body.ips);
        if (!Array.isArray(body.ports) || body.ports.length === 0) throw err(400, 'no domain ports');
        if (body.ports.length !== ips.length) throw err(400, 'ips and ports not match');
        ips.forEach((ip, i) => {
          const port = (body.ports as unknown[])[i];
          const r = build({ name: domain, type: 'SRV', value: ip, port, priority: 10, weight: 10, ttl: 30 });
          writes.push({ ...r, id: defaultRecordId({ type: 'A', value: ip }) });
        });
        break;
      }
      case 'CNAME': {
        if (typeof body.alias !== 'string') throw err(400, 'alias is required');
        target = checkDomain(ctx, body.alias);
        checkNotKube(ctx, target);
        writes.push(build({ name: target, type: 'CNAME', value: domain, ttl: 30 }));
        break;
      }
      case 'NS':
        writes.push(build({ name: domain, type: 'NS', value: body.nsHost }));
        break;
      case 'MX':
        writes.push(build({ name: domain, type: 'MX', value: body.mailHost, priority: body.mailPriority ?? 10 }));
        break;
      case 'TXT':
        writes.push(build({ name: domain, type: 'TXT', value: body.text }));
        break;
      default:
        throw err(400, `type not support: ${type}`);
    }
    await ctx.withNameLock(target, async () => {
      const existing = await ctx.store.get(target);
      assertWritable(existing, target);
      // Re-posting an IP the name already has is a no-op, as the original's overwrite was.
      const fresh = writes.filter((w) => !existing.some((e) => e.id === w.id && e.type === w.type && e.value === w.value));
      const seen: DnsRecord[] = [...existing];
      for (const w of fresh) {
        assertNoConflict(seen, w);
        seen.push(w);
      }
      for (const w of fresh) await ctx.store.put(w);
    });
    ok(res);
    return;
  }

  if (method === 'PUT') {
    const upd = body.update;
    if (upd === null || typeof upd !== 'object' || Array.isArray(upd)) throw err(400, 'no body update');
    const entries = Object.entries(upd as Record<string, unknown>);
    if (entries.length !== 1) throw err(400, 'put just support one update one time');
    const [from, to] = entries[0]!;
    if (typeof to !== 'string') throw err(400, 'update values must be strings');
    if (type === 'A') {
      if (isIP(from) === 0 || isIP(to) === 0) throw err(400, 'it is not IP addr');
      await ctx.withNameLock(domain, async () => {
        const existing = await ctx.store.get(domain);
        assertWritable(existing, domain);
        const cur = existing.find((r) => (r.type === 'A' || r.type === 'AAAA') && r.value === from);
        if (!cur) throw err(404, `no find domain ip ${from}`);
        const next = build({ name: domain, type: isIP(to) === 6 ? 'AAAA' : 'A', value: to, ttl: cur.ttl ?? 30, ...(cur.probePorts ? { probePorts: cur.probePorts } : {}) });
        assertNoConflict(existing.filter((r) => r.id !== cur.id), next);
        await ctx.store.put(next);
        await ctx.store.delete(domain, cur.id);
      });
      ok(res);
      return;
    }
    if (type === 'CNAME') {
      const oldAlias = checkDomain(ctx, from);
      const newAlias = checkDomain(ctx, to);
      checkNotKube(ctx, newAlias);
      const cur = (await ctx.store.get(oldAlias, 'CNAME')).find((r) => r.value === domain);
      if (!cur) throw err(404, `not find alias name ${oldAlias}`);
      await ctx.withNameLock(newAlias, async () => {
        const existing = await ctx.store.get(newAlias);
        assertWritable(existing, newAlias);
        const next = build({ name: newAlias, type: 'CNAME', value: domain, ttl: cur.ttl ?? 30 });
        assertNoConflict(existing, next);
        await ctx.store.put(next);
      });
      await ctx.store.delete(oldAlias, cur.id);
      ok(res);
      return;
    }
    throw err(400, `type not support: ${type}`);
  }

  // DELETE
  await ctx.withNameLock(domain, async () => {
    const existing = await ctx.store.get(domain);
    assertWritable(existing, domain);
    let victims: DnsRecord[];
    if (type === '' || type === 'A' || type === 'SRV') {
      const want: RecordType[] = type === 'SRV' ? ['SRV'] : ['A', 'AAAA'];
      const ips = body.ips === undefined || (Array.isArray(body.ips) && body.ips.length === 0) ? undefined : ipList(body.ips);
      victims = existing.filter((r) => want.includes(r.type) && (ips === undefined || ips.includes(r.value)));
    } else {
      victims = existing.filter((r) => r.type === type);
    }
    if (victims.length === 0) throw err(404, 'no find domain name');
    for (const v of victims) await ctx.store.delete(domain, v.id);
  });
  ok(res);
}
