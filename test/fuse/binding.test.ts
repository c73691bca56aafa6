// The corrected fuse-native binding (fuse/binding.ts): its patch still applies to the installed
// fuse-native.c (every anchor exactly once), it fails closed on a source that differs, and the
// built addon exports the caller array, which reads as "no caller" outside a request's dispatch.
// (That a request's caller arrives is tested on real mounts: test/e2e/owner.test.ts.)
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { buildFuseBinding, patchFuseNativeSource, CALLER_SLOTS } from '../../fuse/binding.js';
import { loadFuse, fuseCallerReader } from '../../fuse/load.js';

const require = createRequire(import.meta.url);
const source = readFileSync(join(dirname(require.resolve('fuse-native/package.json')), 'fuse-native.c'), 'utf8');

t.test('the patch applies to the installed fuse-native.c', async (t) => {
  const r = patchFuseNativeSource(source);
  if (!r.ok) throw new Error(r.error);
  t.match(r.text, 'FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)', 'utimens passes the mtime');
  t.match(r.text, 'l->caller[0] = cx->uid', 'the FUSE thread copies the context');
  t.match(r.text, 'memcpy(fuse_native_caller, l->caller', 'the dispatcher publishes it');
  t.match(r.text, 'NAPI_EXPORT_FUNCTION(fuse_native_caller_buffer)', 'and exports it');
  t.notMatch(source, 'fuse_native_caller', 'the installed source is the unpatched one');
});

t.test('a source that differs is refused, not half patched', async (t) => {
  const missing = patchFuseNativeSource(source.replace('NAPI_INIT() {\n', 'NAPI_INIT()\n{\n'));
  t.equal(missing.ok, false, 'an anchor missing');
  if (!missing.ok) t.match(missing.error, /does not match the expected source.*no "NAPI_INIT\(\) \{"/);
  const twice = patchFuseNativeSource(source + '\nstatic int IS_ARRAY_BUFFER_DETACH_SUPPORTED = 0;\n');
  t.equal(twice.ok, false, 'an anchor twice');
  if (!twice.ok) t.match(twice.error, /more than one/);
  const again = patchFuseNativeSource((patchFuseNativeSource(source) as { text: string }).text);
  t.equal(again.ok, false, 'an already patched source');
});

t.test('the built addon exports the caller array; no caller outside a dispatch', async (t) => {
  const b = buildFuseBinding();
  if (!b.ok) throw new Error(`the corrected binding did not build: ${b.error}`);
  const addon = require(b.path) as { fuse_native_caller_buffer: () => Buffer };
  const buf = addon.fuse_native_caller_buffer();
  t.equal(buf.length, CALLER_SLOTS * 4);
  t.same([...new Uint32Array(buf.buffer, buf.byteOffset, CALLER_SLOTS)], [0, 0, 0, 0, 0]);
  const loaded = loadFuse({ ...process.env, CONTAINERFS_FUSE_BINDING: '' });
  if (loaded.kind !== 'ok') throw new Error('loadFuse asked for a re-exec (no system libfuse)');
  t.equal(loaded.binding, 'corrected');
  t.equal(loaded.callerContext, true, 'loadFuse reports the caller context');
  const read = fuseCallerReader(loaded.Fuse);
  t.type(read, 'function');
  t.equal(read?.(), undefined, 'outside a dispatch: no caller');
});
