// Reusable buffers for the read path. A verified read is answered by reference (lib/rpc sends
// large bodies without copying them), so its buffer can be reused once the socket has written
// it. Reusing it matters more than the copy: fresh multi-KiB Buffers drive V8's collections
// (scavenges for external-memory pressure, then full mark-compacts of a small heap), which were
// ~45% of a datanode's CPU while serving reads; pooled, its read CPU halved. Buffers are taken
// and released in power-of-two classes.
import { alignedBuffer } from '../common/index.js';

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  /** Buffers handed out and not yet released: a second release of one is ignored, never pooled twice. */
  private readonly out = new WeakSet<Buffer>();
  private pooledBytes = 0;

  constructor(
    private readonly minBytes = 64 * 1024,
    private readonly maxBytes = 4 * 1024 * 1024,
    /** Most bytes kept idle in the pool. */
    private readonly maxPooledBytes = 32 * 1024 * 1024,
  ) {}

  /** A buffer of at least n bytes (its length is its class size; use subarray(0, n)). */
  take(n: number): Buffer {
    if (n > this.maxBytes) return alignedBuffer(n);
    let size = this.minBytes;
    while (size < n) size *= 2;
    const list = this.free.get(size);
    const b = list?.pop();
    if (b) this.pooledBytes -= size;
    // Page-aligned, so extents can read into them with O_DIRECT (see extentfile).
    const buf = b ?? alignedBuffer(size);
    this.out.add(buf);
    return buf;
  }

  /** Gives back a buffer from take(); the caller must not touch it afterwards. */
  release(buf: Buffer): void {
    if (!this.out.has(buf)) return;
    this.out.delete(buf);
    if (this.pooledBytes + buf.length > this.maxPooledBytes) return;
    let list = this.free.get(buf.length);
    if (!list) {
      list = [];
      this.free.set(buf.length, list);
    }
    list.push(buf);
    this.pooledBytes += buf.length;
  }

  get idleBytes(): number {
    return this.pooledBytes;
  }
}
