// lib/common: config precedence and errors, PRNG determinism, bounded containers, errors, admin HTTP.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BoundedQueue, ConfigError, LimitExceededError, LruMap, ManualClock, Prng, createRegistry, Counter, defineError,
  jitteredBackoffMs, loadConfigFile, parseBytes, parseConfig, parseDurationMs, parseHostPort, startAdminServer, assert,
  AssertionFailedError, describeConfig,
} from '../../lib/common/index.js';
import { tempDirFor } from '../lib/tmp.js';

const spec = {
  listen: { type: 'hostport', default: '127.0.0.1:53', description: 'where to listen', env: 'X_LISTEN' },
  workers: { type: 'int', default: 2, min: 1, max: 64, description: 'worker count', env: 'X_WORKERS' },
  timeout: { type: 'duration', default: 500, description: 'timeout' },
  cache: { type: 'bytes', default: 1024, description: 'cache size' },
  mode: { type: 'string', default: 'all', enum: ['all', 'one'], description: 'mode' },
  upstreams: { type: 'string[]', default: [], description: 'upstreams' },
  verbose: { type: 'boolean', default: false, description: 'verbose', env: 'X_VERBOSE' },
  token: { type: 'string', description: 'token' },
} as const;

t.test('config: defaults < file < env < flags', async (t) => {
  const c0 = parseConfig(spec);
  t.equal(c0.workers, 2);
  t.equal(c0.token, undefined);
  const c1 = parseConfig(spec, {
    file: { workers: 4, timeout: '2s', cache: '64KiB', upstreams: ['1.1.1.1:53'] },
    env: { X_WORKERS: '8', X_VERBOSE: 'yes' },
    flags: { mode: 'one' },
  });
  t.equal(c1.workers, 8, 'env beats file');
  t.equal(c1.timeout, 2000);
  t.equal(c1.cache, 65536);
  t.equal(c1.verbose, true);
  t.equal(c1.mode, 'one');
  t.same(c1.upstreams, ['1.1.1.1:53']);
  const c2 = parseConfig(spec, { env: { X_WORKERS: '8' }, flags: { workers: '3' } });
  t.equal(c2.workers, 3, 'flags beat env');
  t.match(describeConfig(spec), /workers\s+int\s+worker count \(default 2\) \[env X_WORKERS\]/);
});

t.test('config: errors name the field', async (t) => {
  const err = (fn: () => unknown): ConfigError => {
    try {
      fn();
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
    throw new Error('no error thrown');
  };
  let e = err(() => parseConfig(spec, { file: { workers: 0 } }));
  t.equal(e.field, 'workers');
  t.equal(e.code, 'CONFIG_INVALID');
  t.match(e.message, /^config: workers: must be >= 1/);
  e = err(() => parseConfig(spec, { file: { wrokers: 3 } }));
  t.match(e.message, /wrokers: unknown field/);
  e = err(() => parseConfig(spec, { env: { X_LISTEN: 'nonsense' } }));
  t.match(e.message, /listen \(env X_LISTEN\): expected host:port/);
  e = err(() => parseConfig(spec, { flags: { mode: 'three' } }));
  t.match(e.message, /one of all, one/);
  e = err(() => parseConfig({ a: { type: 'string', required: true, description: 'a' } }, {}));
  t.match(e.message, /a: is required/);
  e = err(() => parseConfig(spec, { file: { verbose: 'maybe' } }));
  t.match(e.message, /verbose: expected true or false/);
  const dir = tempDirFor(t, 'cfg-');
  writeFileSync(join(dir, 'bad.json'), '{ "workers": 3, }');
  e = err(() => loadConfigFile(join(dir, 'bad.json')));
  t.match(e.message, /is not valid JSON/);
  e = err(() => loadConfigFile(join(dir, 'missing.json')));
  t.match(e.message, /cannot read config file/);
  writeFileSync(join(dir, 'arr.json'), '[1]');
  e = err(() => loadConfigFile(join(dir, 'arr.json')));
  t.match(e.message, /must hold a JSON object/);
  writeFileSync(join(dir, 'good.json'), '{"workers": 5}');
  t.same(loadConfigFile(join(dir, 'good.json')), { workers: 5 });
});

t.test('config: unit parsers', async (t) => {
  t.equal(parseDurationMs('250ms'), 250);
  t.equal(parseDurationMs('1.5s'), 1500);
  t.equal(parseDurationMs('2m'), 120000);
  t.equal(parseDurationMs(42), 42);
  t.throws(() => parseDurationMs('-1s'), ConfigError);
  t.throws(() => parseDurationMs('5 parsecs'), ConfigError);
  t.equal(parseBytes('1GiB'), 1024 ** 3);
  t.equal(parseBytes('10MB'), 10_000_000);
  t.throws(() => parseBytes('12 bananas'), ConfigError);
  t.same(parseHostPort('[::1]:8053'), { host: '::1', port: 8053 });
  t.same(parseHostPort(':80'), { host: '127.0.0.1', port: 80 });
  t.throws(() => parseHostPort('host:70000'), ConfigError);
});

t.test('prng: seeded, reproducible, in range', async (t) => {
  const a = new Prng(42);
  const b = new Prng(42);
  const xs = Array.from({ length: 100 }, () => a.nextU32());
  const ys = Array.from({ length: 100 }, () => b.nextU32());
  t.same(xs, ys, 'same seed gives the same stream');
  t.not(new Prng(43).nextU32(), new Prng(42).nextU32(), 'different seeds differ');
  const p = new Prng(7);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 40_000; i++) counts[p.int(4)]!++;
  for (const c of counts) t.ok(c > 9000 && c < 11000, `roughly uniform: ${c}`);
  const arr = [1, 2, 3, 4, 5, 6, 7, 8];
  p.shuffle(arr);
  t.same([...arr].sort(), [1, 2, 3, 4, 5, 6, 7, 8], 'shuffle is a permutation');
  t.throws(() => p.int(0), RangeError);
});

t.test('clock: manual clock moves only when told', async (t) => {
  const c = new ManualClock(1000);
  t.equal(c.monotonicMs(), 0);
  c.advance(25);
  t.equal(c.monotonicMs(), 25);
  t.equal(c.nowMs(), 1025);
  t.throws(() => c.advance(-1), RangeError);
});

t.test('errors: code, subsystem prefix, cause', async (t) => {
  class BoomError extends defineError('test', 'TEST_BOOM') {}
  const cause = new Error('root');
  const e = new BoomError('it broke', { cause });
  t.equal(e.name, 'BoomError');
  t.equal(e.code, 'TEST_BOOM');
  t.equal(e.message, 'test: it broke');
  t.equal(e.cause, cause);
  t.ok(e instanceof Error);
  t.same(e.toJSON(), { name: 'BoomError', code: 'TEST_BOOM', message: 'test: it broke' });
  t.throws(() => assert(false, 'nope'), AssertionFailedError);
});

t.test('bounded: LRU evicts oldest, queue refuses past capacity', async (t) => {
  const evicted: string[] = [];
  const m = new LruMap<string, number>(2, (k) => evicted.push(k));
  m.set('a', 1).set('b', 2);
  m.get('a');
  m.set('c', 3);
  t.same(evicted, ['b']);
  t.same([...m.keys()], ['a', 'c']);
  const q = new BoundedQueue<number>(3, 'testq');
  q.push(1);
  q.push(2);
  q.push(3);
  t.equal(q.offer(4), false);
  t.throws(() => q.push(4), LimitExceededError);
  t.equal(q.shift(), 1);
  q.push(4);
  t.same([...q], [2, 3, 4]);
  for (let i = 0; i < 100; i++) {
    q.shift();
    q.push(i);
  }
  t.equal(q.length, 3, 'wraps around without growing');
});

t.test('backoff: jittered and capped', async (t) => {
  for (let i = 0; i < 50; i++) {
    const d = jitteredBackoffMs(i, 100, 5000);
    t.ok(d >= 0 && d <= 5000);
  }
  t.equal(jitteredBackoffMs(3, 100, 5000, () => 0.999999), 799);
});

t.test('admin http: /metrics, /health, /ready, 404', async (t) => {
  const registry = createRegistry({ defaultMetrics: false });
  const c = new Counter({ name: 'test_things_total', help: 'things', registers: [registry] });
  c.inc(3);
  let healthy = true;
  const admin = await startAdminServer({
    port: 0,
    registry,
    health: () => (healthy ? { status: 'ok' } : { status: 'down', checks: { disk: { status: 'down', detail: 'full' } } }),
    ready: () => healthy,
  });
  t.teardown(() => admin.close());
  const metrics = await (await fetch(admin.url('/metrics'))).text();
  t.match(metrics, /test_things_total 3/);
  let r = await fetch(admin.url('/health'));
  t.equal(r.status, 200);
  t.same(await r.json(), { status: 'ok' });
  healthy = false;
  r = await fetch(admin.url('/health'));
  t.equal(r.status, 503);
  t.match(await r.json(), { status: 'down', checks: { disk: { detail: 'full' } } });
  r = await fetch(admin.url('/ready'));
  t.equal(r.status, 503);
  r = await fetch(admin.url('/nope'));
  t.equal(r.status, 404);
  r = await fetch(admin.url('/metrics'), { method: 'POST' });
  t.equal(r.status, 405);
});
