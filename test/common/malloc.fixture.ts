// Child for malloc.test: allocates, fills and drops 200 buffers of 1 MiB (collected every fourth),
// optionally after retainFreedMemory(), and prints the minor page faults per MiB as JSON.
import { retainFreedMemory } from '../../lib/common/index.js';

const retain = process.argv[2] === 'retain';
const r = retain ? retainFreedMemory() : { ok: false, reason: 'not asked' };
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const f0 = process.resourceUsage().minorPageFault;
for (let i = 0; i < 200; i++) {
  let b: Buffer | null = Buffer.allocUnsafeSlow(1 << 20);
  b.fill(i);
  b = null;
  if (i % 4 === 3) gc();
}
console.log(JSON.stringify({ ok: r.ok, reason: r.reason, faultsPerMiB: (process.resourceUsage().minorPageFault - f0) / 200 }));
