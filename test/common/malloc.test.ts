// retainFreedMemory: after it, MiB-sized buffers that are freed and allocated again reuse the
// same memory instead of faulting in fresh pages (counted by the kernel as minor faults).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const fixture = fileURLToPath(new URL('./malloc.fixture.js', import.meta.url));
const run = (mode: string): { ok: boolean; reason: string; faultsPerMiB: number } =>
  JSON.parse(execFileSync(process.execPath, ['--expose-gc', fixture, mode], { encoding: 'utf8' })) as { ok: boolean; reason: string; faultsPerMiB: number };

const retained = run('retain');
t.test('freed MiB buffers are reused, not faulted in again', { skip: retained.ok ? false : `cannot retain here: ${retained.reason}` }, async (t) => {
  const plain = run('plain');
  t.comment(`faults per MiB: plain ${plain.faultsPerMiB}, retained ${retained.faultsPerMiB}`);
  t.ok(plain.faultsPerMiB > 64, 'without it, most pages of each new buffer are fresh');
  t.ok(retained.faultsPerMiB < plain.faultsPerMiB / 4, 'with it, at most a quarter as many');
});
