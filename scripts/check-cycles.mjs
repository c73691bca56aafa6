// Fails when the compiled module graph under dist/ (lib, cmd, fuse) has an import cycle.
// Cycles make initialisation order fragile and layers leak into each other; ARCHITECTURE.md
// wants one direction of dependency.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, resolve, relative } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const dist = join(root, 'dist');
const files = [];
const walk = (d) => {
  if (!existsSync(d)) return;
  for (const e of readdirSync(d)) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.js')) files.push(p);
  }
};
for (const top of ['lib', 'cmd', 'fuse', 'proto']) walk(join(dist, top));

const importRe = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.{1,2}\/[^'"]+)['"]/g;
const graph = new Map();
for (const f of files) {
  const src = readFileSync(f, 'utf8');
  const deps = [];
  for (const m of src.matchAll(importRe)) {
    const spec = m[1] ?? m[2];
    // Type-only imports are erased by tsc, so what is left here is a runtime edge.
    deps.push(resolve(dirname(f), spec));
  }
  graph.set(f, deps.filter((d) => graph.has(d) || files.includes(d)));
}

const WHITE = 0, GREY = 1, BLACK = 2;
const color = new Map(files.map((f) => [f, WHITE]));
const stack = [];
const cycles = [];
const visit = (f) => {
  color.set(f, GREY);
  stack.push(f);
  for (const d of graph.get(f) ?? []) {
    const c = color.get(d);
    if (c === GREY) cycles.push([...stack.slice(stack.indexOf(d)), d]);
    else if (c === WHITE) visit(d);
  }
  stack.pop();
  color.set(f, BLACK);
};
for (const f of files) if (color.get(f) === WHITE) visit(f);

if (cycles.length > 0) {
  for (const c of cycles) console.error('import cycle: ' + c.map((f) => relative(dist, f)).join(' -> '));
  console.error(`check-cycles: ${cycles.length} cycle(s) found`);
  process.exit(1);
}
console.log(`check-cycles: no import cycles in ${files.length} modules`);
