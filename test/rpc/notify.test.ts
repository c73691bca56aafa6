// lib/rpc one-way notifications (client.notify) against real sockets on loopback: delivered and
// handled in order, never answered, handler failures kept on the server, the concurrency bound,
// an unreachable or killed peer, and a server that predates the Notify flag.
import t from 'tap';
import { createServer, type Socket } from 'node:net';
import { RpcServer, RpcUnavailableError, echoService, unaryMethod, rawCodec } from '../../lib/rpc/index.js';
import { createRegistry, defineError, sleep } from '../../lib/common/index.js';
import { FrameDecoder, FrameType, RequestFlags, encodeFrame, encodeRequest, type Frame } from '../../lib/rpc/frame.js';
import { containerstack } from '../../proto/gen/rpc.js';
import { freePort } from '../lib/procs.js';
import { client, rawSocket, spawnEchoServer, waitExit } from './helpers.js';

const { HelloAck, RpcStatus } = containerstack.rpc;

/** Frames a raw socket received, decoded. */
function framesOf(bytes: Buffer): Frame[] {
  const out: Frame[] = [];
  new FrameDecoder(1 << 20, (f) => out.push({ ...f, body: Buffer.from(f.body) })).push(bytes);
  return out;
}

t.test('notifications are handled in order and nothing is sent back', async (t) => {
  const server = new RpcServer();
  const seen: number[] = [];
  server.unary(echoService.echo, (req) => {
    seen.push(req.seq ?? -1);
    return { seq: req.seq };
  });
  const { port } = await server.listen(0);
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  await Promise.all(Array.from({ length: 100 }, (_, i) => c.notify(echoService.echo, { seq: i })));
  t.equal(c.inFlight, 0, 'no call entry for a notification');
  // Frames of one connection are handled in order: once this call is answered, every
  // notification before it was handled.
  t.equal((await c.call(echoService.echo, { seq: 1000 })).seq, 1000);
  t.same(seen, [...Array.from({ length: 100 }, (_, i) => i), 1000], 'all 100 handled, in order, before the call');

  // On the wire: a raw peer sends a notification then a call; all it gets back is the HelloAck
  // and the call's answer.
  const { sock, received } = await rawSocket(port, true);
  const m = Buffer.from(echoService.echo.name);
  sock.write(encodeRequest(0, RequestFlags.Notify, 0, m, echoService.echo.request.encode({ seq: 7 })));
  sock.write(encodeRequest(5, 0, 0, m, echoService.echo.request.encode({ seq: 8 })));
  for (let i = 0; i < 500 && framesOf(received()).length < 2; i++) await sleep(10);
  await sleep(50); // room for a stray answer to the notification to arrive too
  const got = framesOf(received());
  sock.destroy();
  t.same(got.map((f) => [f.type, f.callId]), [[FrameType.HelloAck, 0], [FrameType.Response, 5]], 'HelloAck and the call answer only');
  t.equal(seen.at(-2), 7, 'the raw notification was handled');
});

t.test('a failing handler is logged and counted, not answered; the connection lives on', async (t) => {
  class BadInputError extends defineError('test', 'TEST_BAD_INPUT') {}
  const registry = createRegistry();
  const server = new RpcServer({ registry });
  const m = unaryMethod('test.Maybe', rawCodec, rawCodec);
  let handled = 0;
  server.unary(m, async (req) => {
    handled++;
    const s = req.toString();
    if (s === 'throw') throw new Error('sync-ish failure');
    if (s === 'typed') throw new BadInputError('bad input');
    if (s === 'later') {
      await sleep(5);
      throw new Error('async failure');
    }
    return req;
  });
  server.clientStream(echoService.collect, async () => ({}));
  const { port } = await server.listen(0);
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  for (const s of ['throw', 'typed', 'later', 'ok']) await c.notify(m, Buffer.from(s));
  // A notification to a method the server does not have, and to a stream method: dropped.
  await c.notify(unaryMethod('test.Nope', rawCodec, rawCodec), Buffer.from('x'));
  await c.notify({ ...echoService.collect, kind: 'unary' }, {});
  t.equal((await c.call(m, Buffer.from('still here'))).toString(), 'still here', 'the connection still serves calls');
  for (let i = 0; i < 200 && handled < 5; i++) await sleep(5);
  await sleep(20); // the async failure settles
  t.equal(server.connectionCount, 1, 'one connection throughout');
  const text = await registry.metrics();
  const count = (method: string, code: string): number => {
    const line = text.split('\n').find((l) => l.startsWith('rpc_server_notifications_total{') && l.includes(`method="${method}"`) && l.includes(`code="${code}"`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  t.equal(count('test.Maybe', 'INTERNAL'), 2, 'untyped failures counted as INTERNAL');
  t.equal(count('test.Maybe', 'TEST_BAD_INPUT'), 1, 'a typed failure keeps its code');
  t.equal(count('test.Maybe', 'OK'), 1);
  t.equal(count('unknown', 'RPC_UNIMPLEMENTED'), 1, 'unknown method counted');
  t.equal(count(echoService.collect.name, 'RPC_PROTOCOL'), 1, 'a stream method counted, not run');
  const err = await c.notify(echoService.collect, {}).catch((e: unknown) => e);
  t.ok(err instanceof TypeError, 'notify of a stream method is refused locally');
});

t.test('notifications in flight count against the per-connection limit: reading pauses, all are handled', async (t) => {
  const server = new RpcServer({ maxConcurrentCallsPerConnection: 3 });
  let running = 0;
  let maxRunning = 0;
  let done = 0;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  server.unary(echoService.echo, async (req) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    await gate;
    running--;
    done++;
    return { seq: req.seq };
  });
  const { port } = await server.listen(0);
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  await Promise.all(Array.from({ length: 20 }, (_, i) => c.notify(echoService.echo, { seq: i })));
  for (let i = 0; i < 200 && running < 3; i++) await sleep(5);
  await sleep(50); // were reading not paused, more handlers would start now
  t.equal(running, 3, 'three handlers run: the rest wait in the socket');
  open();
  for (let i = 0; i < 400 && done < 20; i++) await sleep(5);
  t.equal(done, 20, 'all 20 handled once the handlers finished');
  t.equal(maxRunning, 3, 'never more than the limit at once');
});

t.test('unreachable or killed peer: notify rejects', async (t) => {
  const port = await freePort();
  const c = client(port);
  t.teardown(() => c.close());
  const e1 = await c.notify(echoService.echo, { seq: 1 }).catch((e: unknown) => e);
  t.ok(e1 instanceof RpcUnavailableError, `nothing listening: ${(e1 as Error).message}`);

  const { child, port: p2 } = await spawnEchoServer();
  const c2 = client(p2);
  t.teardown(async () => {
    await c2.close();
    child.kill('SIGKILL');
  });
  await c2.notify(echoService.echo, { seq: 1 });
  child.kill('SIGKILL');
  await waitExit(child);
  // The first writes after the kill may still reach the kernel before the reset is seen; within
  // a few tries the connection is found lost and every later notify fails fast.
  let err: unknown;
  for (let i = 0; i < 100 && !err; i++) {
    err = await c2.notify(echoService.echo, { seq: 2 }).then(() => undefined, (e: unknown) => e);
    if (!err) await sleep(10);
  }
  t.ok(err instanceof RpcUnavailableError, `killed server: ${(err as Error | undefined)?.message}`);
});

t.test('a server without notifications (answers the flag with RPC_PROTOCOL on call id 0): the client falls back to calls', async (t) => {
  // What a server from before RequestFlags.Notify does, frame for frame: it looks the method up,
  // finds the flags do not match a unary method and answers an error on the request's call id
  // (0) without running the handler; plain requests are answered. (An old build cannot run
  // here, so this socket server stands in for it.)
  const handled: number[] = [];
  const srv = createServer((sock: Socket) => {
    let authed = false;
    const dec = new FrameDecoder(1 << 20, (f) => {
      if (!authed) {
        authed = true;
        sock.write(encodeFrame(FrameType.HelloAck, 0, 0, HelloAck.encode({ ok: true, maxFrameBytes: 1 << 20, serverName: 'old' }).finish()));
        return;
      }
      if (f.type !== FrameType.Request) return;
      if (f.flags !== 0) {
        sock.write(encodeFrame(FrameType.Error, 0, f.callId, RpcStatus.encode({ code: 'RPC_PROTOCOL', message: `method ${f.method} is unary; request flags ${f.flags} do not match` }).finish()));
        return;
      }
      const req = echoService.echo.request.decode(f.body);
      handled.push(req.seq ?? -1);
      sock.write(encodeFrame(FrameType.Response, 0, f.callId, echoService.echo.response.encode({ seq: req.seq })));
    });
    sock.on('data', (d: Buffer) => dec.push(d));
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await new Promise((r) => srv.close(r));
  });
  await c.notify(echoService.echo, { seq: 1 }); // refused: lost, as a best-effort message may be
  t.equal((await c.call(echoService.echo, { seq: 2 })).seq, 2, 'calls still work');
  await c.notify(echoService.echo, { seq: 3 });
  await c.notify(echoService.echo, { seq: 4 });
  t.equal((await c.call(echoService.echo, { seq: 5 })).seq, 5);
  t.same(handled, [2, 3, 4, 5], 'after the refusal, notifications arrive as calls (their answers dropped)');
  t.equal(c.inFlight, 0, 'the fallback calls finished');
});
