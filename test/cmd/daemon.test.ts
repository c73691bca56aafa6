// runDaemon's shutdown: a stop() that never finishes ends the process after shutdownTimeoutMs,
// and onShutdownTimeout (the mount's lazy detach) runs first. A real child process and SIGTERM.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killAndWait } from '../lib/procs.js';
import { tempDirFor } from '../lib/tmp.js';

const daemonJs = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'cmd', 'lib', 'daemon.js');

t.test('a stop stuck past shutdownTimeoutMs: onShutdownTimeout runs, then the process exits 1', async (t) => {
  const marker = join(tempDirFor(t, 'daemon-'), 'cleaned');
  const script = `
    import { writeFileSync } from 'node:fs';
    const { runDaemon } = await import(${JSON.stringify(daemonJs)});
    await runDaemon({
      name: 'stuck', logLevel: 'error', adminListen: '127.0.0.1:0', shutdownTimeoutMs: 300,
      start: async () => () => new Promise(() => undefined),
      onShutdownTimeout: () => writeFileSync(${JSON.stringify(marker)}, 'x'),
    });
    process.stdout.write('started\\n');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => killAndWait([child]));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 400 && !out.includes('started'); i++) await new Promise((r) => setTimeout(r, 25));
  t.match(out, /started/, 'the daemon started');
  const code = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  child.kill('SIGTERM');
  t.equal(await code, 1, 'exits 1 when the stop times out');
  t.ok(existsSync(marker), 'onShutdownTimeout ran before the exit');
});
