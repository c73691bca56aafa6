// Runs the compiled tap test files (dist/test/**/*.test.js), a few at a time, and ends with
// the line CI reads: `N passed, N failed, N skipped`. A count is one top-level tap subtest.
// A file that exits non-zero, times out or prints no plan counts as one more failure, so a
// crash outside any subtest can never pass silently.
//   node scripts/run-tests.mjs [filter ...]     only files whose path contains a filter
//   TEST_JOBS=2 TEST_FILE_TIMEOUT_S=600
// Temporary files: each file runs with TMPDIR set to a fresh directory of its own inside one per
// run (under os.tmpdir()). What a file leaves there is listed as a leak (each test removes what it
// makes; this is the safety net, not the fix), then removed, mounts detached first. KEEP_TMP=1
// keeps the directory of a failed file for a look; TEST_OWN_TMPDIR=0 turns the net off (files
// use the inherited TMPDIR, as a leak check from outside wants).
import { spawn } from 'node:child_process';
import { readdirSync, statSync, existsSync, mkdirSync, mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const testRoot = join(root, 'dist', 'test');
const filters = process.argv.slice(2);
const jobs = Math.max(1, Number(process.env.TEST_JOBS ?? 2));
const timeoutMs = Math.max(1, Number(process.env.TEST_FILE_TIMEOUT_S ?? 600)) * 1000;
const ownTmp = process.env.TEST_OWN_TMPDIR !== '0';
const keepTmp = process.env.KEEP_TMP === '1';

const files = [];
const walk = (d) => {
  if (!existsSync(d)) return;
  for (const e of readdirSync(d).sort()) {
    const p = join(d, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith('.test.js')) files.push(p);
  }
};
walk(testRoot);
const selected = files.filter((f) => filters.length === 0 || filters.some((x) => relative(root, f).includes(x)));

let passed = 0, failed = 0, skipped = 0;
const failures = [];
const leaks = [];
const kept = [];
const started = Date.now();
// Removal detaches mounts first and never goes through a live one (dist/bench/lib/tmp.js).
const { removeTempDir } = ownTmp ? await import(join(root, 'dist', 'bench', 'lib', 'tmp.js')) : {};
const runTmp = ownTmp ? mkdtempSync(join(tmpdir(), 'cs-test-run-')) : undefined;
// Tests run programs as other users (nobody) that reach directories under TMPDIR.
if (runTmp) chmodSync(runTmp, 0o755);
let fileSeq = 0;

/** Lists what a file left in its TMPDIR, then removes the directory (or keeps it, see above). */
async function settleTmp(rel, dir, failedFile) {
  if (!dir) return;
  // containerfs-libfuse-<uid> is fuse/load.ts's one fixed link to the bundled libfuse, made once
  // per user and reused (never more than one), not a leak: removed with the directory, not listed.
  const left = readdirSync(dir).filter((n) => !/^containerfs-libfuse-\d+$/.test(n));
  if (left.length > 0) {
    leaks.push({ rel, left });
    console.log(`LEAK ${rel} left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in its TMPDIR: ${left.slice(0, 10).join(' ')}${left.length > 10 ? ' ...' : ''}`);
  }
  if (failedFile && keepTmp) {
    kept.push(dir);
    return;
  }
  try {
    await removeTempDir(dir);
  } catch (err) {
    console.log(`could not remove ${dir}: ${err.message}`);
    kept.push(dir);
  }
}

function runFile(file) {
  return new Promise((resolve) => {
    const rel = relative(root, file);
    const t0 = Date.now();
    // A short name: paths under it stay short (unix socket paths are limited to 107 bytes).
    const fileTmp = runTmp ? join(runTmp, String(++fileSeq)) : undefined;
    if (fileTmp) {
      mkdirSync(fileTmp);
      // Like /tmp: programs run as other users by the tests may make their own files there.
      chmodSync(fileTmp, 0o1777);
    }
    const child = spawn(process.execPath, ['--enable-source-maps', file], {
      cwd: root,
      // tap's own root timeout (30 s unless TAP_TIMEOUT says otherwise) would fail a long file on a
      // busy machine before this runner's limit does: one limit, this runner's.
      env: { ...process.env, TAP_COLORS: '0', NODE_ENV: 'test', TAP_TIMEOUT: process.env.TAP_TIMEOUT ?? String(timeoutMs / 1000), ...(fileTmp ? { TMPDIR: fileTmp } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    const keep = (chunk) => {
      out += chunk;
      // Bound what one file can make the runner hold.
      if (out.length > 4_000_000) out = out.slice(-2_000_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch {}
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let p = 0, f = 0, s = 0, plan = false;
      const failedNames = [];
      for (const line of out.split('\n')) {
        let m;
        if (/^1\.\.\d+/.test(line)) plan = true;
        if ((m = /^(not ok|ok) \d+(?: - (.*))?$/.exec(line))) {
          const name = m[2] ?? '';
          if (/#\s*(SKIP|TODO)/i.test(name)) s++;
          else if (m[1] === 'ok') p++;
          else { f++; failedNames.push(name); }
        }
      }
      if (timedOut) { f++; failedNames.push(`timed out after ${timeoutMs / 1000}s`); }
      else if (code !== 0 && f === 0) { f++; failedNames.push(`exited with ${signal ?? code}`); }
      else if (!plan && f === 0) { f++; failedNames.push('no tap plan printed'); }
      passed += p; failed += f; skipped += s;
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      console.log(`${f > 0 ? 'FAIL' : 'ok  '} ${rel}  (${p} passed, ${f} failed${s ? `, ${s} skipped` : ''}, ${secs}s)`);
      if (f > 0) failures.push({ rel, names: failedNames, out });
      settleTmp(rel, fileTmp, f > 0).then(resolve, resolve);
    });
  });
}

const queue = [...selected];
await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, async () => {
  while (queue.length > 0) await runFile(queue.shift());
}));

for (const f of failures) {
  console.log(`\n===== ${f.rel}: ${f.names.join('; ')}\n${f.out.length > 60_000 ? f.out.slice(-60_000) : f.out}`);
}
if (runTmp) {
  if (kept.length === 0) await removeTempDir(runTmp).catch((err) => console.log(`could not remove ${runTmp}: ${err.message}`));
  else console.log(`\nkept for a look (KEEP_TMP=1, or not removable): ${kept.join(' ')}`);
}
if (leaks.length > 0) console.log(`\n${leaks.length} test file(s) left temporary files behind: ${leaks.map((l) => l.rel).join(', ')}`);
console.log(`\n${selected.length} test files in ${((Date.now() - started) / 1000).toFixed(0)}s`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || selected.length === 0 ? 1 : 0);
