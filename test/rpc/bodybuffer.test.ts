// CallOptions.bodyBuffer: a large answer is assembled in the buffer its caller gives (no fresh
// allocation), small answers and calls without it are unchanged, and an answer whose call fails
// while it is arriving stops landing in the caller's buffer (the caller may reuse it at once)
// while the connection stays in step for the calls after it.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { RpcClient, RpcServer, rawCodec, unaryMethod } from '../../lib/rpc/index.js';
import { FrameDecoder, FrameType, encodeFrame, type Frame } from '../../lib/rpc/frame.js';

const blobM = unaryMethod('bb.Blob', rawCodec, rawCodec);
const SENTINEL = 0xa5;

async function server(): Promise<{ server: RpcServer; port: number; blobs: Map<number, Buffer> }> {
  const s = new RpcServer({ maxFrameBytes: 16 * 1024 * 1024 });
  const blobs = new Map<number, Buffer>();
  // The request names a size; the answer is that many bytes (kept, to compare).
  s.unary(blobM, (req) => {
    const n = Buffer.from(req).readUInt32BE(0);
    const b = randomBytes(n);
    blobs.set(n, b);
    return b;
  });
  const { port } = await s.listen(0);
  return { server: s, port, blobs };
}
const ask = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

t.test('a large answer lands in the given buffer; small ones and calls without one as before', async (t) => {
  const { server: s, port, blobs } = await server();
  t.teardown(() => s.close());
  const c = new RpcClient({ host: '127.0.0.1', port });
  t.teardown(() => c.close());
  await c.call(blobM, ask(10)); // connected
  for (const n of [3 * 1024 * 1024, 200_000, 1000]) {
    const given: Buffer[] = [];
    const got = await c.call(blobM, ask(n), {
      bodyBuffer: (frameBytes) => {
        const b = Buffer.alloc(frameBytes + 100).subarray(50, 50 + frameBytes);
        given.push(b);
        return b;
      },
    });
    t.ok(Buffer.from(got).equals(blobs.get(n) as Buffer), `${n} bytes intact`);
    if (n >= 64 * 1024) {
      t.equal(given.length, 1, `${n}: asked for one buffer`);
      t.equal(got.buffer, (given[0] as Buffer).buffer, `${n}: the answer is a view of it`);
    } else t.equal(given.length, 0, `${n}: a small answer is not asked about`);
  }
  const plain = await c.call(blobM, ask(2 * 1024 * 1024));
  t.ok(Buffer.from(plain).equals(blobs.get(2 * 1024 * 1024) as Buffer), 'without bodyBuffer: intact');
});

t.test('a call that fails while its answer arrives leaves the given buffer alone', async (t) => {
  const { server: s, port, blobs } = await server();
  t.teardown(() => s.close());
  const c = new RpcClient({ host: '127.0.0.1', port });
  t.teardown(() => c.close());
  await c.call(blobM, ask(10));
  const n = 8 * 1024 * 1024;
  const ac = new AbortController();
  let given: Buffer | undefined;
  const failed = c.call(blobM, ask(n), {
    signal: ac.signal,
    bodyBuffer: (frameBytes) => {
      given = Buffer.alloc(frameBytes, SENTINEL);
      // Abandoned as soon as the first bytes are in (after this read, before the next).
      queueMicrotask(() => ac.abort());
      return given;
    },
  });
  await t.rejects(failed, { code: 'RPC_CANCELLED' }, 'the call fails');
  // The connection keeps decoding the abandoned answer elsewhere, then serves the next call.
  const next = await c.call(blobM, ask(100_000));
  t.ok(Buffer.from(next).equals(blobs.get(100_000) as Buffer), 'the next call on the connection is intact');
  t.ok(given, 'the buffer was asked for');
  const tail = (given as Buffer).subarray(1024 * 1024);
  t.ok(tail.every((b) => b === SENTINEL), 'nothing past the first read landed in the given buffer');
});

t.test('a call aborted inside bodyBuffer gets nothing written into it', async (t) => {
  const { server: s, port } = await server();
  t.teardown(() => s.close());
  const c = new RpcClient({ host: '127.0.0.1', port });
  t.teardown(() => c.close());
  await c.call(blobM, ask(10));
  const ac = new AbortController();
  let given: Buffer | undefined;
  const failed = c.call(blobM, ask(1024 * 1024), {
    signal: ac.signal,
    bodyBuffer: (frameBytes) => {
      given = Buffer.alloc(frameBytes, SENTINEL);
      ac.abort();
      return given;
    },
  });
  await t.rejects(failed, { code: 'RPC_CANCELLED' });
  await c.call(blobM, ask(10));
  t.ok((given as Buffer).every((b) => b === SENTINEL), 'untouched');
});

t.test('FrameDecoder.divert moves a frame under way out of the given buffer', async (t) => {
  const body = randomBytes(600_000);
  const frame = encodeFrame(FrameType.Response, 0, 7, body);
  const got: Frame[] = [];
  const d = new FrameDecoder(1 << 20, (f) => got.push(f));
  let given: Buffer | undefined;
  d.allocate = (type, callId, total) => {
    t.equal(type, FrameType.Response);
    t.equal(callId, 7);
    given = Buffer.alloc(total, SENTINEL);
    return given;
  };
  const scratch = Buffer.alloc(65536);
  let off = 0;
  const feed = (n: number): void => {
    frame.copy(scratch, 0, off, off + n);
    d.pushBorrowed(scratch.subarray(0, n));
    off += n;
  };
  feed(65536);
  d.divert(8); // another call: nothing moves
  feed(65536);
  d.divert(7);
  while (off < frame.length) feed(Math.min(65536, frame.length - off));
  t.equal(got.length, 1);
  t.ok(got[0]!.body.equals(body), 'the frame is whole and intact');
  t.not(got[0]!.body.buffer, (given as Buffer).buffer, 'in a buffer of its own');
  t.ok((given as Buffer).subarray(2 * 65536).every((b) => b === SENTINEL), 'nothing after the divert landed in the given buffer');
  t.ok((given as Buffer).subarray(10, 2 * 65536).equals(frame.subarray(10, 2 * 65536)), 'what came before it did');
});
