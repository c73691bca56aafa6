// Server-side reads into one reused buffer (the accepted socket's handle moved onto an onread
// socket) and SO_RCVLOWAT while large frames arrive: bytes cross intact whatever the mix of
// frame sizes, small calls behind a large frame are not held back, a sender that dies mid-frame
// closes the connection instead of leaving it waiting, and the server bounds connections itself.
import t from 'tap';
import { connect, createServer, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { RpcClient, RpcServer, rawCodec, unaryMethod, clientStreamMethod } from '../../lib/rpc/index.js';
import { rcvLowatSupport, setRcvLowat } from '../../lib/rpc/socket.js';
import { encodeRequestHead } from '../../lib/rpc/frame.js';

const echoM = unaryMethod('rd.Echo', rawCodec, rawCodec);
const hashM = clientStreamMethod('rd.Hash', rawCodec, rawCodec, { windowBytes: 8 * 1024 * 1024 });
const sha = (b: Uint8Array | Uint8Array[]): string => {
  const h = createHash('sha256');
  for (const x of Array.isArray(b) ? b : [b]) h.update(x);
  return h.digest('hex');
};

async function server(opts: ConstructorParameters<typeof RpcServer>[0] = {}): Promise<{ server: RpcServer; port: number }> {
  const s = new RpcServer({ maxFrameBytes: 16 * 1024 * 1024, ...opts });
  s.unary(echoM, (req) => Buffer.from(req));
  s.clientStream(hashM, async (chunks) => {
    const h = createHash('sha256');
    for await (const c of chunks) h.update(c);
    return Buffer.from(h.digest('hex'));
  });
  const { port } = await s.listen(0);
  return { server: s, port };
}

t.test('SO_RCVLOWAT holds a read back until that many bytes are queued', { skip: rcvLowatSupport().ok ? false : rcvLowatSupport().reason }, async (t) => {
  let got = 0;
  let second = false;
  let firstReadAfterSecond: boolean | undefined;
  let sock: Socket | undefined;
  const srv = createServer((s) => {
    sock = s;
    t.ok(setRcvLowat(s, 100_000), 'set on an accepted socket');
    s.on('data', (b) => {
      firstReadAfterSecond ??= second;
      got += b.length;
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const c = connect(port, '127.0.0.1');
  await new Promise((r) => c.once('connect', r));
  while (!sock) await new Promise((r) => setTimeout(r, 5));
  c.write(Buffer.alloc(50_000, 1));
  await new Promise((r) => setTimeout(r, 300));
  t.equal(got, 0, '50 KB queued under a 100 KB low-water mark: no read yet');
  second = true;
  c.write(Buffer.alloc(60_000, 2));
  for (let i = 0; i < 200 && got < 110_000; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(got, 110_000, 'past the mark everything is read');
  t.equal(firstReadAfterSecond, true, 'the first read came only once the mark was passed');
  c.destroy();
  await new Promise<void>((r) => srv.close(() => r()));
});

t.test('mixed frame sizes cross intact; small calls behind a large frame complete', async (t) => {
  const { server: s, port } = await server();
  const client = new RpcClient({ host: '127.0.0.1', port });
  t.teardown(async () => {
    await client.close();
    await s.close();
  });
  // Sizes around the low-water threshold, the read buffer (256 KiB) and frames spanning reads.
  const sizes = [10, 128 * 1024 - 1, 128 * 1024, 128 * 1024 + 7, 256 * 1024, 256 * 1024 + 1, 700_000, 3 * 1024 * 1024 + 5, 33];
  for (let round = 0; round < 3; round++) {
    const bodies = sizes.map((n) => randomBytes(n));
    // A large frame and small ones in flight together, in every order.
    const order = round === 1 ? [...bodies].reverse() : bodies;
    const got = await Promise.all(order.map((b) => client.call(echoM, b)));
    t.same(got.map((g) => sha(g)), order.map((b) => sha(b)), `round ${round}: every echo byte for byte`);
  }
  // A stream of large chunks with small calls racing it.
  const call = client.clientStream(hashM);
  const chunks = Array.from({ length: 12 }, (_, i) => randomBytes(200_000 + i * 40_000));
  const small = Promise.all(Array.from({ length: 50 }, (_, i) => client.call(echoM, Buffer.from(`ping ${i}`))));
  for (const c of chunks) await call.write(c);
  const digest = await call.end();
  t.equal(Buffer.from(digest).toString(), sha(chunks), 'streamed chunks hashed as sent');
  t.same((await small).map((b) => Buffer.from(b).toString()), Array.from({ length: 50 }, (_, i) => `ping ${i}`), 'small calls all answered');
});

t.test('a peer that dies mid-frame closes the connection; the server keeps serving', async (t) => {
  const { server: s, port } = await server();
  t.teardown(() => s.close());
  const raw = connect(port, '127.0.0.1');
  await new Promise((r) => raw.once('connect', r));
  // Half of a 2 MiB request frame (the server is in a large frame: low-water mark raised).
  const method = Buffer.from('rd.Echo');
  raw.write(encodeRequestHead(1, 0, 0, method, 2 * 1024 * 1024));
  raw.write(Buffer.alloc(1024 * 1024, 7));
  for (let i = 0; i < 100 && s.connectionCount < 1; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(s.connectionCount, 1, 'connection accepted');
  raw.destroy();
  for (let i = 0; i < 300 && s.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(s.connectionCount, 0, 'the cut connection was closed, not left waiting for the rest');
  const client = new RpcClient({ host: '127.0.0.1', port });
  const back = await client.call(echoM, Buffer.from('still here'));
  t.equal(Buffer.from(back).toString(), 'still here');
  await client.close();
});

t.test('maxConnections: the server refuses past its bound and keeps the others', async (t) => {
  const { server: s, port } = await server({ maxConnections: 2 });
  t.teardown(() => s.close());
  const a = new RpcClient({ host: '127.0.0.1', port });
  const b = new RpcClient({ host: '127.0.0.1', port });
  t.equal(Buffer.from(await a.call(echoM, Buffer.from('a'))).toString(), 'a');
  t.equal(Buffer.from(await b.call(echoM, Buffer.from('b'))).toString(), 'b');
  const c = new RpcClient({ host: '127.0.0.1', port, connectTimeoutMs: 2000 });
  await t.rejects(c.call(echoM, Buffer.from('c'), { deadlineMs: 3000 }), 'a third connection is refused');
  t.equal(s.connectionCount, 2, 'two connections held');
  t.equal(Buffer.from(await a.call(echoM, Buffer.from('a2'))).toString(), 'a2', 'the first still works');
  await Promise.all([a.close(), b.close(), c.close()]);
  for (let i = 0; i < 300 && s.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(s.connectionCount, 0, 'closed connections are forgotten');
  const d = new RpcClient({ host: '127.0.0.1', port });
  t.equal(Buffer.from(await d.call(echoM, Buffer.from('d'))).toString(), 'd', 'room again after the others left');
  await d.close();
});
