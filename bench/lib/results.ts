// Shared by every bench: latency statistics, the markdown record appended to bench/RESULTS.md
// (with commit and date), and the one-line JSON result that scripts read (BENCHMARKS.md).
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bench');
export const RESULTS_PATH = join(benchDir, 'RESULTS.md');

export function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return 'unknown';
  }
}

/** Percentile of an unsorted sample (sorts a copy); p in [0, 100]. */
export function percentile(samples: Float64Array | number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = Float64Array.from(samples).sort();
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Renders rows as a markdown table; the first row's keys are the columns. */
export function markdownTable(rows: Record<string, string | number>[]): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0] as object);
  const line = (cells: (string | number)[]): string => `| ${cells.join(' | ')} |`;
  return [line(cols), line(cols.map(() => '---')), ...rows.map((r) => line(cols.map((c) => r[c] ?? '')))].join('\n');
}

/** Appends a dated, commit-stamped section to bench/RESULTS.md (not with `--no-record`: trial runs). */
export function appendResults(title: string, body: string): void {
  if (process.argv.includes('--no-record')) return;
  if (!existsSync(RESULTS_PATH)) {
    writeFileSync(RESULTS_PATH, '# Benchmark results\n\nAppended by `npm run bench:<area>`; newest last. Ratios are ours / peer, measured in the same run on the same machine.\n');
  }
  const stamp = `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, commit ${gitCommit()}, ${process.version}`;
  appendFileSync(RESULTS_PATH, `\n## ${title}: ${stamp}\n\n${body.trim()}\n`);
}

export interface ResultLine {
  bench: string;
  metric: string;
  ours: number;
  peer: string;
  peerValue: number;
  ratio: number;
  [extra: string]: string | number;
}

/** Prints the JSON result line; call it last. */
export function printResultLine(r: ResultLine): void {
  console.log(JSON.stringify(r));
}
