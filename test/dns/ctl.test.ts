// `containerdns ctl` as a child process (the compiled CLI) against a real API server: tables,
// --json, config sources (flags, env, config file), errors and exit codes.
import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MemoryDnsStore } from '../../lib/dns/memstore.js';
import { startDnsApi } from '../../lib/dns/api/server.js';
import { tempDirFor } from '../lib/tmp.js';

// Real processes (node, etcd) start slowly on a loaded machine; the runner's own limit still applies.
t.setTimeout(300_000);

const CLI = fileURLToPath(new URL('../../cmd/containerdns.js', import.meta.url));
const TOKEN = 'ctl-token';

interface Run {
  code: number | null;
  out: string;
  err: string;
}

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const base = { ...process.env };
    delete base.CONTAINERDNS_TOKEN;
    delete base.CONTAINERDNS_SERVER;
    delete base.CONTAINERDNS_CONFIG;
    const c = spawn(process.execPath, [CLI, 'ctl', ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, out, err }));
  });
}

t.test('ctl: add/list/show/update/delete/health against a real API', async (t) => {
  const store = new MemoryDnsStore();
  const api = await startDnsApi({ store, token: TOKEN });
  t.teardown(() => api.close());
  const g = ['--server', api.url(), '--token', TOKEN];

  let r = await run([...g, 'add', 'web.cluster.local', 'A', '10.0.0.1', '--ttl', '30', '--probe-ports', '80,443', '--id', 'w1']);
  t.equal(r.code, 0, r.err);
  t.match(r.out, /created web\.cluster\.local A 10\.0\.0\.1 \(id w1\)/);
  r = await run([...g, 'add', '_http._tcp.web.cluster.local', 'srv', 'web.cluster.local', '--port', '80', '--priority', '1', '--weight', '5']);
  t.equal(r.code, 0, r.err);
  r = await run([...g, 'add', 'cluster.local', 'TXT', 'hello world']);
  t.equal(r.code, 0, r.err);

  r = await run([...g, 'list']);
  t.equal(r.code, 0);
  const lines = r.out.trim().split('\n');
  t.match(lines[0], /^NAME\s+TYPE\s+VALUE\s+TTL\s+ID\s+OWNER\s+EXTRA$/);
  t.equal(lines.length, 4, 'header + 3 records');
  t.ok(lines.some((l) => /^web\.cluster\.local\s+A\s+10\.0\.0\.1\s+30\s+w1\s+api\s+probe=80,443$/.test(l)), r.out);
  t.ok(lines.some((l) => /^cluster\.local\s+TXT\s+"hello world"/.test(l)));

  // --json after the subcommand, token from the environment.
  r = await run(['--server', api.url(), 'list', '--type', 'SRV', '--json'], { CONTAINERDNS_TOKEN: TOKEN });
  t.equal(r.code, 0, r.err);
  const parsed = JSON.parse(r.out);
  t.equal(parsed.total, 1);
  t.match(parsed.records[0], { type: 'SRV', port: 80, priority: 1, weight: 5 });

  // Server and token from a config file.
  const dir = tempDirFor(t, 'ctl-');
  const cfg = join(dir, 'ctl.json');
  writeFileSync(cfg, JSON.stringify({ server: api.url(), token: TOKEN, timeout: '5s' }));
  r = await run(['--config', cfg, '--json', 'show', 'web.cluster.local', 'w1']);
  t.equal(r.code, 0, r.err);
  t.same(JSON.parse(r.out), { id: 'w1', name: 'web.cluster.local', type: 'A', value: '10.0.0.1', ttl: 30, probePorts: [80, 443], owner: 'api' });

  r = await run([...g, 'update', 'web.cluster.local', 'w1', '--value', '10.0.0.2', '--clear-ttl']);
  t.equal(r.code, 0, r.err);
  t.match((await store.get('web.cluster.local'))[0], { value: '10.0.0.2', ttl: undefined });

  await store.setHealth({ ip: '10.0.0.2', status: 'up', changedAtMs: Date.UTC(2026, 0, 1), reporter: 'p1' });
  r = await run([...g, 'health']);
  t.equal(r.code, 0);
  t.match(r.out, /^IP\s+STATUS\s+CHANGED\s+REPORTER\n10\.0\.0\.2\s+UP\s+2026-01-01T00:00:00\.000Z\s+p1$/m);
  r = await run([...g, '--json', 'health', '10.0.0.2']);
  t.equal(JSON.parse(r.out).status, 'up');

  r = await run([...g, 'delete', 'web.cluster.local', 'w1']);
  t.equal(r.code, 0, r.err);
  r = await run([...g, 'delete', 'cluster.local', '--all', '--type', 'TXT']);
  t.match(r.out, /deleted 1 record/);
  t.same((await store.snapshot()).records.length, 1);
});

t.test('ctl: errors are clear and exit codes distinct', async (t) => {
  const store = new MemoryDnsStore();
  await store.put({ id: 'k', name: 'svc.default.svc.cluster.local', type: 'A', value: '10.96.0.1', owner: 'kubewatch' });
  const api = await startDnsApi({ store, token: TOKEN });
  t.teardown(() => api.close());
  const g = ['--server', api.url(), '--token', TOKEN];

  let r = await run([...g, 'add', 'x.cluster.local', 'A', '300.1.1.1']);
  t.equal(r.code, 2, 'bad input');
  t.match(r.err, /containerdns ctl: value: must be an IPv4 address.*\(field: value\)/);
  r = await run([...g, '--json', 'add', 'x.cluster.local', 'A', '300.1.1.1']);
  t.equal(JSON.parse(r.out).error.field, 'value', '--json errors are JSON too');
  r = await run([...g, 'show', 'missing.cluster.local']);
  t.equal(r.code, 3, 'not found');
  r = await run(['--server', api.url(), '--token', 'wrong', 'list']);
  t.equal(r.code, 4, 'unauthorized');
  t.match(r.err, /bad token/);
  r = await run([...g, 'delete', 'svc.default.svc.cluster.local', 'k']);
  t.equal(r.code, 4, 'read-only kubewatch record');
  t.match(r.err, /kubewatch/);
  r = await run([...g, 'add', 'y.cluster.local', 'A', '10.0.0.1']);
  t.equal(r.code, 0);
  r = await run([...g, 'add', 'y.cluster.local', 'A', '10.0.0.1']);
  t.equal(r.code, 5, 'conflict');
  r = await run(['--server', 'http://127.0.0.1:9', '--token', TOKEN, 'list']);
  t.equal(r.code, 6, 'unreachable');
  t.match(r.err, /cannot reach/);
  r = await run(['--server', api.url(), 'list']);
  t.equal(r.code, 2, 'no token');
  t.match(r.err, /no token/);
  r = await run([...g, 'add', 'x.cluster.local', 'A', '10.0.0.1', '--ttl', 'soon']);
  t.equal(r.code, 2);
  t.match(r.err, /--ttl must be a non-negative integer/);
  r = await run([...g, 'delete', 'x.cluster.local']);
  t.equal(r.code, 2);
  t.match(r.err, /--all/);
  r = await run([...g, 'list', '--type', 'BOGUS']);
  t.equal(r.code, 2);
});
