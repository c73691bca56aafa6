// lib/common/native.ts, the one loader of the optional C addons: it compiles a source with the
// system compiler into dist/ beside the module asking, loads it, and answers a reason instead
// of throwing whenever that cannot happen (no compiler, no source, wrong platform, disabled),
// so callers fall back to TypeScript. Exercised on a throwaway package holding a copy of the
// crc32c addon's source, so the real dist/ binaries are not touched.
import t from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { buildNativeAddon, disableNativeAddons, loadNativeAddon } from '../../lib/common/index.js';
import { crc32cImplementation, crc32cTs, crc32c } from '../../lib/blockgroup/index.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const pkg = mkdtempSync(join(tmpdir(), 'native-test-'));
t.teardown(() => rmSync(pkg, { recursive: true, force: true }));
writeFileSync(join(pkg, 'package.json'), '{"name":"native-test"}');
mkdirSync(join(pkg, 'lib', 'x', 'native'), { recursive: true });
copyFileSync(join(repo, 'lib', 'blockgroup', 'native', 'crc32c.c'), join(pkg, 'lib', 'x', 'native', 'c.c'));
// The module that would load it, as compiled: <pkg>/dist/lib/x/mod.js (it need not exist).
const from = pathToFileURL(join(pkg, 'dist', 'lib', 'x', 'mod.js')).href;

interface CrcAddon {
  supported: boolean;
  crc32c(b: Uint8Array, crc: number, s: number, e: number): number;
}

t.test('no compiler: a reason, no throw, no binary', async (t) => {
  const r = buildNativeAddon({ from, source: 'native/c.c', compiler: join(pkg, 'no-such-cc') });
  t.equal(r.ok, false);
  t.match(!r.ok && r.error, /compile failed/);
  const l = loadNativeAddon<CrcAddon>({ from, source: 'native/c.c', compiler: join(pkg, 'no-such-cc') });
  t.ok('error' in l, 'load answers an error');
});

t.test('missing source and wrong platform answer reasons', async (t) => {
  const a = buildNativeAddon({ from, source: 'native/absent.c' });
  t.match(!a.ok && a.error, /source not found/);
  const b = buildNativeAddon({ from, source: 'native/c.c', platforms: ['aix'] });
  t.match(!b.ok && b.error, /builds only on aix/);
});

t.test('builds into dist beside the module, loads, and is reused while current', async (t) => {
  const r = buildNativeAddon({ from, source: 'native/c.c' });
  if (!r.ok) {
    t.pass(`skipped: no working compiler here (${r.error.slice(0, 200)})`);
    return;
  }
  t.equal(r.path, join(pkg, 'dist', 'lib', 'x', 'native', 'c.node'));
  const m1 = statSync(r.path).mtimeMs;
  const again = buildNativeAddon({ from, source: 'native/c.c' });
  t.ok(again.ok && statSync(again.path).mtimeMs === m1, 'not rebuilt while newer than its source');
  const l = loadNativeAddon<CrcAddon>({ from, source: 'native/c.c' });
  t.ok('addon' in l, 'loads');
  if ('addon' in l && l.addon.supported) {
    const b = randomBytes(10_000);
    t.equal(l.addon.crc32c(b, 0, 0, b.length), crc32cTs(b), 'the loaded addon works');
  }
  t.equal(loadNativeAddon<CrcAddon>({ from, source: 'native/c.c' }), l, 'cached per binary');
});

// Last: disabling is process-wide. The crc32c module then runs on TypeScript, with its reason.
t.test('disabled: every addon falls back, crc32c keeps working', async (t) => {
  disableNativeAddons('disabled by the test');
  const l = loadNativeAddon<CrcAddon>({ from, source: 'native/c.c' });
  t.same(l, { error: 'disabled by the test' });
  // This process never used crc32c's addon before now, so the first lookup happens here.
  const impl = crc32cImplementation();
  t.equal(impl.kind, 'ts');
  t.equal(impl.reason, 'disabled by the test');
  const b = randomBytes(50_000);
  t.equal(crc32c(b), crc32cTs(b));
});
