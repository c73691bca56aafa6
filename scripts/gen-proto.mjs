// Generates static protobuf code (no reflection on the hot path) for every proto/*.proto into
// proto/gen/<name>.js + .d.ts. Skips files whose source hash is unchanged, because pbts (jsdoc)
// takes seconds per file and the build runs on every `npm test`.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
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
  const hash = createHash('sha256').update(src).update('v2').digest('hex');
  const stamp = join(genDir, `${base}.hash`);
  const js = join(genDir, `${base}.js`);
  const dts = join(genDir, `${base}.d.ts`);
  if (existsSync(stamp) && existsSync(js) && existsSync(dts) && readFileSync(stamp, 'utf8') === hash) continue;
  execFileSync(bin('pbjs'), ['-t', 'static-module', '-w', 'es6', '--force-number', '--no-verify', '--no-delimited', '--no-convert', '--no-comments', '-o', js, join(protoDir, file)], { stdio: 'inherit' });
  // pbjs emits `import * as $protobuf from "protobufjs/minimal"`; NodeNext ESM needs the extension.
  writeFileSync(js, readFileSync(js, 'utf8').replace(/from "protobufjs\/minimal"/g, 'from "protobufjs/minimal.js"'));
  execFileSync(bin('pbjs'), ['-t', 'static-module', '-w', 'es6', '--force-number', '--no-verify', '--no-delimited', '--no-convert', '-o', `${js}.tmp`, join(protoDir, file)], { stdio: 'inherit' });
  execFileSync(bin('pbts'), ['-o', dts, `${js}.tmp`], { stdio: 'inherit' });
  writeFileSync(dts, readFileSync(dts, 'utf8').replace(/from "protobufjs"/g, 'from "protobufjs/minimal.js"'));
  execFileSync('rm', ['-f', `${js}.tmp`]);
  writeFileSync(stamp, hash);
  generated++;
}
if (generated > 0) console.log(`gen-proto: generated ${generated} of ${protos.length} proto file(s)`);
