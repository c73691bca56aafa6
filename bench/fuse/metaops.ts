// Bench helper process: creates, stats and unlinks N files in <dir> one after another and
// prints ops/s of each as JSON. A separate process so the FUSE server is never this process.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

const [dir, nArg] = process.argv.slice(2) as [string, string];
const n = Number(nArg ?? 2000);
const time = async (f: (i: number) => Promise<unknown>): Promise<number> => {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f(i);
  return n / ((performance.now() - t0) / 1000);
};
await fsp.mkdir(dir, { recursive: true });
const create = await time((i) => fsp.writeFile(join(dir, `f${i}`), ''));
const stat = await time((i) => fsp.stat(join(dir, `f${i}`)));
const unlink = await time((i) => fsp.unlink(join(dir, `f${i}`)));
console.log(JSON.stringify({ create, stat, unlink }));
