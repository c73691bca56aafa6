// containerdns ctl: manage ContainerDNS records and read IP health over the REST API.
// Tables for people, --json for scripts; the exit code says what went wrong (see EXIT below).
import type { Command } from 'commander';
import { describeConfig, errorMessage, loadConfigFile, parseConfig, type ConfigSpec } from '../../lib/common/index.js';
import { ApiRequestError, ApiUnreachableError, DnsApiClient, type RecordInput } from '../../lib/dns/api/client.js';
import type { DnsRecord, IpHealth, RecordType } from '../../lib/dns/store.js';

/** Exit codes, stable for scripts. */
const EXIT = { ok: 0, failed: 1, usage: 2, notFound: 3, denied: 4, conflict: 5, unreachable: 6 } as const;

const spec = {
  server: { type: 'string', default: 'http://127.0.0.1:8053', env: 'CONTAINERDNS_SERVER', description: 'API base URL' },
  token: { type: 'string', env: 'CONTAINERDNS_TOKEN', description: 'API bearer token (prefer the env var or a config file over --token: argv is visible to other users)' },
  timeout: { type: 'duration', default: 10_000, min: 1, description: 'request timeout' },
} as const satisfies ConfigSpec;

const TYPES = ['A', 'AAAA', 'CNAME', 'SRV', 'TXT', 'MX', 'NS', 'PTR'];

class UsageError extends Error {}

function intOpt(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim())) throw new UsageError(`${what} must be a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}

function portsOpt(v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  return v.split(',').filter((s) => s.trim() !== '').map((s) => intOpt(s, '--probe-ports entry') as number);
}

function typeOpt(v: string | undefined): RecordType | undefined {
  if (v === undefined) return undefined;
  const t = v.toUpperCase();
  if (!TYPES.includes(t)) throw new UsageError(`--type must be one of ${TYPES.join(', ')}, got ${JSON.stringify(v)}`);
  return t as RecordType;
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

function recordRows(recs: DnsRecord[]): string {
  const extra = (r: DnsRecord): string => {
    const parts: string[] = [];
    if (r.priority !== undefined) parts.push(`prio=${r.priority}`);
    if (r.weight !== undefined) parts.push(`weight=${r.weight}`);
    if (r.port !== undefined) parts.push(`port=${r.port}`);
    if (r.probePorts?.length) parts.push(`probe=${r.probePorts.join(',')}`);
    return parts.join(' ');
  };
  return table(
    ['NAME', 'TYPE', 'VALUE', 'TTL', 'ID', 'OWNER', 'EXTRA'],
    recs.map((r) => [r.name, r.type, r.type === 'TXT' ? JSON.stringify(r.value) : r.value, r.ttl === undefined ? '-' : String(r.ttl), r.id, r.owner ?? '-', extra(r)]),
  );
}

function healthRows(hs: IpHealth[]): string {
  return table(
    ['IP', 'STATUS', 'CHANGED', 'REPORTER'],
    hs.map((h) => [h.ip, h.status.toUpperCase(), h.changedAtMs > 0 ? new Date(h.changedAtMs).toISOString() : '-', h.reporter ?? '-']),
  );
}

interface GlobalOpts {
  server?: string;
  token?: string;
  config?: string;
  timeout?: string;
  json?: boolean;
}

function client(g: GlobalOpts): DnsApiClient {
  const file = g.config !== undefined ? loadConfigFile(g.config) : process.env.CONTAINERDNS_CONFIG ? loadConfigFile(process.env.CONTAINERDNS_CONFIG) : undefined;
  const cfg = parseConfig(spec, { ...(file ? { file } : {}), env: process.env, flags: { server: g.server, token: g.token, timeout: g.timeout } });
  if (!cfg.token) throw new UsageError('no token: pass --token, set CONTAINERDNS_TOKEN, or put "token" in the --config file');
  return new DnsApiClient({ server: cfg.server, token: cfg.token, timeoutMs: cfg.timeout });
}

/** Runs one subcommand: prints its result and maps every failure to a message and exit code. */
function action<A extends unknown[]>(cmd: () => Command, fn: (api: DnsApiClient, json: boolean, ...args: A) => Promise<string | object>) {
  return async (...args: A): Promise<void> => {
    const g = cmd().optsWithGlobals<GlobalOpts>();
    try {
      const out = await fn(client(g), g.json === true, ...args);
      if (typeof out === 'string') {
        if (out !== '') console.log(out);
      } else console.log(JSON.stringify(out, null, 2));
      process.exitCode = EXIT.ok;
    } catch (err) {
      let code: number = EXIT.failed;
      let msg = errorMessage(err);
      if (err instanceof UsageError || (err as { code?: string }).code === 'CONFIG_INVALID') code = EXIT.usage;
      else if (err instanceof ApiUnreachableError) code = EXIT.unreachable;
      else if (err instanceof ApiRequestError) {
        msg = err.field ? `${err.detail} (field: ${err.field})` : err.detail;
        code = err.status === 400 || err.status === 413 ? EXIT.usage
          : err.status === 404 ? EXIT.notFound
          : err.status === 401 || err.status === 403 ? EXIT.denied
          : err.status === 409 ? EXIT.conflict : EXIT.failed;
      }
      if (g.json === true) {
        console.log(JSON.stringify({ error: { message: msg, exitCode: code, ...(err instanceof ApiRequestError ? { status: err.status, code: err.apiCode, field: err.field } : {}) } }));
      }
      console.error(`containerdns ctl: ${msg}`);
      process.exitCode = code;
    }
  };
}

export function register(program: Command): void {
  const ctl = program
    .command('ctl')
    .description('manage ContainerDNS records over the REST API')
    .option('--server <url>', 'API base URL [env CONTAINERDNS_SERVER] (default http://127.0.0.1:8053)')
    .option('--token <token>', 'API token [env CONTAINERDNS_TOKEN]')
    .option('--config <file>', 'JSON file with server, token, timeout [env CONTAINERDNS_CONFIG]')
    .option('--timeout <duration>', 'request timeout, e.g. 5s')
    .option('--json', 'print JSON (for scripts) instead of tables')
    .addHelpText(
      'after',
      `\nConfig fields (file < env < flags):\n${describeConfig(spec)}\n\nExit codes: 0 ok, 1 failure, 2 bad usage or input (HTTP 400/413), 3 not found, 4 unauthorized or read-only (401/403), 5 conflict (409), 6 server unreachable.\n\nExamples:\n  containerdns ctl add web.cluster.local A 10.0.0.1 --ttl 30 --probe-ports 80\n  containerdns ctl add _http._tcp.web.cluster.local SRV web.cluster.local --port 80 --priority 10 --weight 5\n  containerdns ctl list --suffix cluster.local --json\n  containerdns ctl delete web.cluster.local 1a2b3c4d`,
    );

  const list = ctl
    .command('list')
    .description('list records')
    .option('--name <name>', 'only this name')
    .option('--suffix <zone>', 'only names in this zone')
    .option('--type <type>', 'only this type')
    .option('--owner <owner>', 'only records of this owner (api, kubewatch, config)')
    .option('--limit <n>', 'at most n records');
  list.action(
    action(() => list, async (api, json) => {
      const o = list.opts<{ name?: string; suffix?: string; type?: string; owner?: string; limit?: string }>();
      const r = await api.list({
        ...(o.name ? { name: o.name } : {}),
        ...(o.suffix ? { suffix: o.suffix } : {}),
        ...(o.type ? { type: typeOpt(o.type)! } : {}),
        ...(o.owner ? { owner: o.owner } : {}),
        ...(o.limit ? { limit: intOpt(o.limit, '--limit')! } : {}),
      });
      if (json) return r;
      return recordRows(r.records) + (r.truncated ? `\n(${r.records.length} of ${r.total} shown; use --limit)` : '');
    }),
  );

  const show = ctl
    .command('show <name> [id]')
    .description('show the records of a name, or one record by id')
    .option('--type <type>', 'only this type');
  show.action(
    action(() => show, async (api, json, name: string, id: string | undefined) => {
      const recs = id !== undefined ? [await api.get(name, id)] : await api.show(name, typeOpt(show.opts<{ type?: string }>().type));
      return json ? (id !== undefined ? recs[0]! : recs) : recordRows(recs);
    }),
  );

  const fieldOpts = (c: Command): Command =>
    c
      .option('--ttl <seconds>', 'TTL in seconds')
      .option('--priority <n>', 'SRV/MX priority')
      .option('--weight <n>', 'SRV weight')
      .option('--port <port>', 'SRV port (or the service port of an A/AAAA record)')
      .option('--probe-ports <list>', 'ports the health prober checks for an A/AAAA record, e.g. 80,443');
  interface FieldOpts {
    ttl?: string;
    priority?: string;
    weight?: string;
    port?: string;
    probePorts?: string;
    id?: string;
    value?: string;
    type?: string;
    clearTtl?: boolean;
    clearProbePorts?: boolean;
  }
  const fields = (o: FieldOpts): RecordInput => {
    const r: RecordInput = {};
    const ttl = intOpt(o.ttl, '--ttl');
    if (ttl !== undefined) r.ttl = ttl;
    const priority = intOpt(o.priority, '--priority');
    if (priority !== undefined) r.priority = priority;
    const weight = intOpt(o.weight, '--weight');
    if (weight !== undefined) r.weight = weight;
    const port = intOpt(o.port, '--port');
    if (port !== undefined) r.port = port;
    const pp = portsOpt(o.probePorts);
    if (pp !== undefined) r.probePorts = pp;
    return r;
  };

  const add = fieldOpts(ctl.command('add <name> <type> <value>').description('create a record').option('--id <id>', 'record id (default: derived from the value)'));
  add.action(
    action(() => add, async (api, json, name: string, type: string, value: string) => {
      const o = add.opts<FieldOpts>();
      const rec = await api.create({ name, type: typeOpt(type)!, value, ...fields(o), ...(o.id ? { id: o.id } : {}) });
      return json ? rec : `created ${rec.name} ${rec.type} ${rec.value} (id ${rec.id})`;
    }),
  );

  const update = fieldOpts(
    ctl
      .command('update <name> <id>')
      .description('change fields of a record')
      .option('--value <value>', 'new value')
      .option('--type <type>', 'new type')
      .option('--clear-ttl', 'remove the TTL (use the zone default)')
      .option('--clear-probe-ports', 'stop probing this record'),
  );
  update.action(
    action(() => update, async (api, json, name: string, id: string) => {
      const o = update.opts<FieldOpts>();
      const changes: RecordInput = { ...fields(o) };
      if (o.value !== undefined) changes.value = o.value;
      if (o.type !== undefined) changes.type = typeOpt(o.type)!;
      if (o.clearTtl) changes.ttl = null;
      if (o.clearProbePorts) changes.probePorts = null;
      if (Object.keys(changes).length === 0) throw new UsageError('nothing to update: give --value, --ttl, --port, ...');
      const rec = await api.update(name, id, changes);
      return json ? rec : `updated ${rec.name} ${rec.type} ${rec.value} (id ${rec.id})`;
    }),
  );

  const del = ctl
    .command('delete <name> [id]')
    .description('delete one record by id, or every record of a name (--all)')
    .option('--type <type>', 'with --all: only this type')
    .option('--all', 'delete every record of the name');
  del.action(
    action(() => del, async (api, json, name: string, id: string | undefined) => {
      const o = del.opts<{ type?: string; all?: boolean }>();
      if (id !== undefined) {
        await api.delete(name, id);
        return json ? { deleted: 1 } : `deleted ${name} ${id}`;
      }
      if (!o.all) throw new UsageError('give a record id, or --all to delete every record of the name');
      const n = await api.deleteName(name, typeOpt(o.type));
      return json ? { deleted: n } : `deleted ${n} record(s) of ${name}`;
    }),
  );

  const health = ctl.command('health [ip]').description('show IP health as the probers wrote it');
  health.action(
    action(() => health, async (api, json, ip: string | undefined) => {
      const hs = await api.health(ip);
      return json ? (ip !== undefined ? hs[0]! : hs) : healthRows(hs);
    }),
  );
}
