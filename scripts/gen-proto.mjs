// Generates static protobuf code (no reflection on the hot path) for every proto/*.proto into
// proto/gen/<name>.js + .d.ts. Skips files whose source hash is unchanged, because pbts (jsdoc)
// takes seconds per file and the build runs on every `npm test`.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const protoDir = join(root, 'proto');
const genDir = join(protoDir, 'gen');
const bin = (name) => join(root, 'node_modules', '.bin', name);
mkdirSync(genDir, { recursive: true });

const protos = readdirSync(protoDir).filter((f) => f.endsWith('.proto')).sort();
let generated = 0;
for (const file of protos) {
  const base = file.slice(0, -'.proto'.length);
  const src = readFileSync(join(protoDir, file));
  const hash = createHash('sha256').update(src).update('v5').digest('hex');
  const stamp = join(genDir, `${base}.hash`);
  const js = join(genDir, `${base}.js`);
  const dts = join(genDir, `${base}.d.ts`);
  if (existsSync(stamp) && existsSync(js) && existsSync(dts) && readFileSync(stamp, 'utf8') === hash) continue;
  // A root per file, so two generated modules never overwrite each other's namespace.
  const common = ['-t', 'static-module', '-w', 'es6', '-r', base, '--force-number', '--no-verify', '--no-delimited', '--no-convert'];
  execFileSync(bin('pbjs'), [...common, '--no-comments', '-o', js, join(protoDir, file)], { stdio: 'inherit' });
  // pbjs emits `import * as $protobuf from "protobufjs/minimal"`; NodeNext ESM needs the extension.
  // 64-bit fields decode to Long objects when the `long` package is present; the project uses
  // plain numbers checked to be safe integers (Raft terms and indexes, sizes), so convert here
  // and reject a value past 2^53 as a decode error rather than silently rounding it.
  const toNum = 'const $num = (v) => { const n = typeof v === "number" ? v : v.toNumber(); if (!Number.isSafeInteger(n)) throw $RangeError("64-bit field is not a safe integer"); return n; };\n';
  let code = readFileSync(js, 'utf8').replace(/from "protobufjs\/minimal"/g, 'from "protobufjs/minimal.js"');
  code = code.replace(/reader\.(uint64|int64|sint64|fixed64|sfixed64)\(\)/g, '$num(reader.$1())');
  // Packed repeated 64-bit fields are read in bulk; convert each element the same way.
  code = code.replace(/reader\.(uint64|int64|sint64|fixed64|sfixed64)s\(([^)]+)\);/g, '{ const $t = []; reader.$1s($t); for (const v of $t) $2.push($num(v)); }');
  code = code.replace(/\$util\.Long \? \$util\.Long\.fromBits\([^)]*\) : 0/g, '0');
  code = code.replace(/(const \$root = )/, `${toNum}$1`);
  writeFileSync(js, code);
  // pbts reads the JSDoc of a commented build; jsdoc only takes files ending in .js.
  const commented = join(genDir, `${base}.commented.tmp.js`);
  execFileSync(bin('pbjs'), [...common, '-o', commented, join(protoDir, file)], { stdio: 'inherit' });
  execFileSync(bin('pbts'), ['-o', dts, commented], { stdio: 'inherit' });
  // With --force-number no field is a Long, and `import x = require()` is not valid in ESM.
  writeFileSync(dts, readFileSync(dts, 'utf8').replace(/from "protobufjs"/g, 'from "protobufjs/minimal.js"').replace(/^import Long = require\("long"\);\n/m, ''));
  execFileSync('rm', ['-f', commented]);
  writeFileSync(stamp, hash);
  generated++;
}
// tsc reads the .d.ts files; the generated .js must sit at the same relative place in dist/.
const distGen = join(root, 'dist', 'proto', 'gen');
mkdirSync(distGen, { recursive: true });
for (const f of readdirSync(genDir)) if (f.endsWith('.js') || f.endsWith('.d.ts')) copyFileSync(join(genDir, f), join(distGen, f));
if (generated > 0) console.log(`gen-proto: generated ${generated} of ${protos.length} proto file(s)`);
