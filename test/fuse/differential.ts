// Differential testing of a mounted filesystem against a local directory: the same seeded
// sequence of operations runs on both; every result (value or errno) and the final trees must
// be identical. Used for the passthrough mount and for ContainerFS mounts alike.
import { promises as fsp, constants as fsc } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Prng } from '../../lib/common/index.js';

const NAMES = ['a', 'b', 'c', 'd'];

function randomPath(p: Prng): string {
  const depth = p.range(1, 3);
  return Array.from({ length: depth }, () => p.pick(NAMES)).join('/');
}

type Op = { name: string; run: (root: string) => Promise<string> };

async function outcome(f: () => Promise<string | void>): Promise<string> {
  try {
    const v = await f();
    return `ok${v === undefined ? '' : `:${v}`}`;
  } catch (e) {
    return `err:${(e as { code?: string }).code ?? (e as Error).message}`;
  }
}

function makeOp(p: Prng): Op {
  const a = randomPath(p);
  const b = randomPath(p);
  const size = p.pick([0, 1, 100, 4096, 70_000]);
  const fill = p.int(256);
  const data = Buffer.alloc(size, fill);
  const mode = p.pick([0o644, 0o600, 0o755, 0o700]);
  const pos = p.pick([0, 10, 5000, 200_000]);
  switch (p.int(16)) {
    case 0:
      return { name: `mkdir ${a}`, run: (r) => outcome(() => fsp.mkdir(join(r, a), { mode: 0o755 })) };
    case 1:
      return { name: `rmdir ${a}`, run: (r) => outcome(() => fsp.rmdir(join(r, a))) };
    case 2:
      return { name: `writeFile ${a} ${size}`, run: (r) => outcome(() => fsp.writeFile(join(r, a), data)) };
    case 3:
      return { name: `appendFile ${a} ${size}`, run: (r) => outcome(() => fsp.appendFile(join(r, a), data)) };
    case 4:
      return { name: `readFile ${a}`, run: (r) => outcome(async () => createHash('sha1').update(await fsp.readFile(join(r, a))).digest('hex')) };
    case 5:
      return { name: `unlink ${a}`, run: (r) => outcome(() => fsp.unlink(join(r, a))) };
    case 6:
      return { name: `rename ${a} ${b}`, run: (r) => outcome(() => fsp.rename(join(r, a), join(r, b))) };
    case 7:
      return { name: `truncate ${a} ${pos}`, run: (r) => outcome(() => fsp.truncate(join(r, a), pos)) };
    case 8:
      return { name: `symlink ${b} ${a}`, run: (r) => outcome(() => fsp.symlink(b, join(r, a))) };
    case 9:
      return { name: `readlink ${a}`, run: (r) => outcome(() => fsp.readlink(join(r, a))) };
    case 10:
      return { name: `link ${a} ${b}`, run: (r) => outcome(() => fsp.link(join(r, a), join(r, b))) };
    case 11:
      return {
        name: `lstat ${a}`,
        run: (r) =>
          outcome(async () => {
            const s = await fsp.lstat(join(r, a));
            const type = s.isDirectory() ? 'd' : s.isSymbolicLink() ? 'l' : s.isFile() ? 'f' : '?';
            // Directory sizes and link counts differ by filesystem design; files' must not.
            return type === 'd' ? `d:${(s.mode & 0o7777).toString(8)}` : `${type}:${s.size}:${s.nlink}:${(s.mode & 0o7777).toString(8)}`;
          }),
      };
    case 12:
      return { name: `readdir ${a}`, run: (r) => outcome(async () => (await fsp.readdir(join(r, a))).sort().join(',')) };
    case 13:
      return { name: `chmod ${a} ${mode.toString(8)}`, run: (r) => outcome(() => fsp.chmod(join(r, a), mode)) };
    case 14:
      return {
        name: `pwrite ${a} @${pos} ${size}`,
        run: (r) =>
          outcome(async () => {
            const h = await fsp.open(join(r, a), fsc.O_WRONLY);
            try {
              await h.write(data, 0, data.length, pos);
            } finally {
              await h.close();
            }
          }),
      };
    default:
      return { name: `create-excl ${a}`, run: (r) => outcome(async () => (await fsp.open(join(r, a), fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o644)).close()) };
  }
}

export async function tree(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  const names = (await fsp.readdir(join(root, rel))).sort();
  for (const n of names) {
    const p = rel ? `${rel}/${n}` : n;
    const s = await fsp.lstat(join(root, p));
    if (s.isDirectory()) {
      out.push(`d ${p} ${(s.mode & 0o7777).toString(8)}`);
      out.push(...(await tree(root, p)));
    } else if (s.isSymbolicLink()) out.push(`l ${p} -> ${await fsp.readlink(join(root, p))}`);
    else out.push(`f ${p} ${s.size} ${s.nlink} ${(s.mode & 0o7777).toString(8)} ${createHash('sha1').update(await fsp.readFile(join(root, p))).digest('hex')}`);
  }
  return out;
}

export interface DiffResult {
  steps: number;
  mismatches: string[];
  treeA: string[];
  treeB: string[];
}

/** Runs `steps` seeded operations on both roots; stops at the first 5 mismatches. */
export async function runDifferential(rootA: string, rootB: string, seed: number, steps: number): Promise<DiffResult> {
  const p = new Prng(seed);
  const mismatches: string[] = [];
  let i = 0;
  for (; i < steps && mismatches.length < 5; i++) {
    const op = makeOp(p);
    const [ra, rb] = [await op.run(rootA), await op.run(rootB)];
    if (ra !== rb) mismatches.push(`step ${i} ${op.name}: mount=${ra} local=${rb}`);
  }
  return { steps: i, mismatches, treeA: await tree(rootA), treeB: await tree(rootB) };
}
