// Large bodies sent by reference and answers that hand memory back: a raw answer of a pooled
// buffer arrives intact, the onResponseSent hook runs only after the bytes have been written
// (then the server scribbles on the buffer: the client must still see the original bytes),
// hooks run on failed calls too, and large requests and stream chunks cross intact.
import t from 'tap';
import { RpcClient, RpcServer, rawCodec, unaryMethod, clientStreamMethod } from '../../lib/rpc/index.js';
import { createHash, randomBytes } from 'node:crypto';

const fetchM = unaryMethod('zc.Fetch', rawCodec, rawCodec);
const failM = unaryMethod('zc.Fail', rawCodec, rawCodec);
const sumM = clientStreamMethod('zc.Sum', rawCodec, rawCodec);

t.test('pooled answers, write hooks, large requests and chunks', async (t) => {
  const server = new RpcServer({ maxFrameBytes: 16 * 1024 * 1024 });
  let hooks = 0;
  let failHooks = 0;
  const sent = new Map<number, Buffer>();
  server.unary(fetchM, (req, ctx) => {
    const r = Buffer.from(req.buffer, req.byteOffset, req.length);
    const len = r.readUInt32BE(0);
    const id = r.readUInt32BE(4);
    const buf = randomBytes(len);
    sent.set(id, Buffer.from(buf));
    // Once written the buffer is the handler's again: scribbling on it must not reach the
    // client (it would if the hook ran while the body was still queued by reference).
    ctx.onResponseSent(() => {
      hooks++;
      buf.fill(0xee);
    });
    return buf;
  });
  server.unary(failM, (_req, ctx) => {
    ctx.onResponseSent(() => failHooks++);
    throw new Error('no');
  });
  server.clientStream(sumM, async (chunks) => {
    const h = createHash('sha256');
    for await (const c of chunks) h.update(c);
    return h.digest();
  });
  const { port } = await server.listen(0);
  const client = new RpcClient({ host: '127.0.0.1', port });
  t.teardown(async () => {
    await client.close();
    await server.close();
  });
  let id = 0;
  let bad = 0;
  for (const len of [100, 16 * 1024 - 1, 16 * 1024, 300_000, 2 * 1024 * 1024]) {
    // Several in flight at once: their answers share writevs.
    const ids = [id++, id++, id++];
    const got = await Promise.all(
      ids.map((i) => {
        const req = Buffer.alloc(8);
        req.writeUInt32BE(len, 0);
        req.writeUInt32BE(i, 4);
        return client.call(fetchM, req);
      }),
    );
    ids.forEach((i, k) => {
      if (!Buffer.from(got[k] as Uint8Array).equals(sent.get(i) as Buffer)) bad++;
    });
  }
  t.equal(bad, 0, 'every answer arrives as it was before its hook scribbled on it');
  t.equal(hooks, 15, 'one hook run per answered call');
  await t.rejects(client.call(failM, Buffer.alloc(1)));
  t.equal(failHooks, 1, 'hooks of a failed call run too');
  const big = randomBytes(3 * 1024 * 1024 + 5);
  const call = client.clientStream(sumM);
  for (let o = 0; o < big.length; o += 200_000) await call.write(big.subarray(o, Math.min(big.length, o + 200_000)));
  const digest = await call.end();
  t.ok(Buffer.from(digest).equals(createHash('sha256').update(big).digest()), 'large stream chunks cross intact');
});
