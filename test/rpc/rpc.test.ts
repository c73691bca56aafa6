// lib/rpc against real sockets on loopback: multiplexing, deadlines, cancellation, crashes,
// reconnects, hostile input, auth, TLS, streams with backpressure, graceful shutdown.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  RpcServer, RpcPool, echoService, RpcDeadlineError, RpcUnavailableError, RpcAuthError, RpcCancelledError,
  RpcRemoteError, RpcUnimplementedError, unaryMethod, rawCodec, RpcClosedError, clientStreamMethod, MAX_STREAM_WINDOW_BYTES,
} from '../../lib/rpc/index.js';
import { createRegistry, defineError, sleep } from '../../lib/common/index.js';
import { FrameType, encodeFrame, encodeRequest } from '../../lib/rpc/frame.js';
import { client, rawSocket, spawnEchoServer, startEchoServer, waitExit } from './helpers.js';
import { tempDirFor } from '../lib/tmp.js';

t.test('many concurrent calls multiplexed on one connection', async (t) => {
  const { server, port } = await startEchoServer();
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const n = 2000;
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => c.call(echoService.echo, { seq: i, text: `m${i}`, payload: Buffer.alloc(i % 300, i % 251), delayMs: i % 7 === 0 ? 3 : 0 })),
  );
  let ok = 0;
  for (let i = 0; i < n; i++) {
    const r = results[i]!;
    if (r.seq === i && r.text === `m${i}` && r.payload?.length === i % 300 && (i % 300 === 0 || r.payload[0] === i % 251)) ok++;
  }
  t.equal(ok, n, 'every answer matches its own request');
  t.equal(server.connectionCount, 1, 'all calls shared one connection');
});

t.test('deadline expiry fails the call and aborts the handler', async (t) => {
  const { server, port, aborted } = await startEchoServer();
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const err = await c.call(echoService.echo, { text: 'slow', delayMs: 2000 }, { deadlineMs: 50 }).catch((e: unknown) => e);
  t.ok(err instanceof RpcDeadlineError, 'RpcDeadlineError');
  t.equal((err as RpcDeadlineError).code, 'RPC_DEADLINE_EXCEEDED');
  for (let i = 0; i < 100 && aborted.length === 0; i++) await sleep(10);
  t.ok(aborted.some((a) => a.startsWith('slow:')), `server handler saw the abort (${aborted.join(',')})`);
  const ok = await c.call(echoService.echo, { text: 'fast', seq: 5 }, { deadlineMs: 1000 });
  t.equal(ok.seq, 5, 'connection still usable after a deadline');
});

t.test('cancellation through AbortSignal reaches the server', async (t) => {
  const { server, port, aborted } = await startEchoServer();
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const ac = new AbortController();
  const p = c.call(echoService.echo, { text: 'cancel-me', delayMs: 5000 }, { signal: ac.signal });
  await sleep(30);
  ac.abort();
  const err = await p.catch((e: unknown) => e);
  t.ok(err instanceof RpcCancelledError, 'RpcCancelledError');
  for (let i = 0; i < 100 && !aborted.some((a) => a.startsWith('cancel-me')); i++) await sleep(10);
  t.ok(aborted.some((a) => a === 'cancel-me:RPC_CANCELLED'), 'handler aborted with RPC_CANCELLED');
});

t.test('handler errors keep their code; unknown methods are unimplemented', async (t) => {
  class NotLeaderError extends defineError('raft', 'RAFT_NOT_LEADER') {}
  const server = new RpcServer();
  const m = unaryMethod('test.Leader', rawCodec, rawCodec);
  server.unary(m, () => {
    const e = new NotLeaderError('not leader') as NotLeaderError & { details: Uint8Array };
    e.details = Buffer.from('node-2');
    throw e;
  });
  const { port } = await server.listen(0);
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const err = await c.call(m, Buffer.from('x')).catch((e: unknown) => e);
  t.ok(err instanceof RpcRemoteError);
  t.equal((err as RpcRemoteError).remoteCode, 'RAFT_NOT_LEADER');
  t.equal(Buffer.from((err as RpcRemoteError).details!).toString(), 'node-2', 'details cross the wire');
  const err2 = await c.call(echoService.echo, {}).catch((e: unknown) => e);
  t.ok(err2 instanceof RpcUnimplementedError, 'unknown method -> RpcUnimplementedError');
});

t.test('peer killed mid-call: callers get an error, not a hang; reconnect after restart', async (t) => {
  const { child, port } = await spawnEchoServer();
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    child.kill('SIGKILL');
  });
  t.equal((await c.call(echoService.echo, { seq: 1 })).seq, 1);
  const inflight = Array.from({ length: 50 }, (_, i) => c.call(echoService.echo, { seq: i, delayMs: 5000 }).catch((e: unknown) => e));
  await sleep(50);
  child.kill('SIGKILL');
  const errs = await Promise.all(inflight);
  t.ok(errs.every((e) => e instanceof RpcUnavailableError), 'all 50 in-flight calls failed with RpcUnavailableError');
  await waitExit(child);
  // Nothing listens now: fail fast, no hang.
  const down = await c.call(echoService.echo, { seq: 2 }).catch((e: unknown) => e);
  t.ok(down instanceof RpcUnavailableError, 'call while down fails fast');
  const again = await spawnEchoServer(port);
  t.teardown(() => again.child.kill('SIGKILL'));
  const r = await c.call(echoService.echo, { seq: 3 }, { waitForReady: true, deadlineMs: 5000 });
  t.equal(r.seq, 3, 'client reconnected to the restarted server');
});

t.test('waitForReady waits through a restart within the deadline', async (t) => {
  const { child, port } = await spawnEchoServer();
  const c = client(port);
  t.teardown(() => c.close());
  await c.call(echoService.echo, { seq: 1 });
  child.kill('SIGKILL');
  await waitExit(child);
  const pending = c.call(echoService.echo, { seq: 7 }, { waitForReady: true, deadlineMs: 8000 });
  await sleep(300);
  const again = await spawnEchoServer(port);
  t.teardown(() => again.child.kill('SIGKILL'));
  t.equal((await pending).seq, 7);
  const noServer = client(1, { connectTimeoutMs: 500 });
  const e = await noServer.call(echoService.echo, {}, { waitForReady: true, deadlineMs: 300 }).catch((x: unknown) => x);
  t.ok(e instanceof RpcDeadlineError || e instanceof RpcUnavailableError, `unreachable peer ends by the deadline (${(e as Error).name})`);
  await noServer.close();
});

t.test('oversized frame closes only that connection', async (t) => {
  const registry = createRegistry({ defaultMetrics: false });
  const { server, port } = await startEchoServer({ maxFrameBytes: 64 * 1024, registry });
  const good = client(port);
  t.teardown(async () => {
    await good.close();
    await server.close();
  });
  await good.call(echoService.echo, { seq: 1 });
  const raw = await rawSocket(port, true);
  const hdr = Buffer.alloc(10);
  hdr.writeUInt32BE(10 * 1024 * 1024, 0); // claims 10 MiB, limit is 64 KiB
  hdr[4] = FrameType.Request;
  raw.sock.write(hdr);
  await raw.closed;
  t.pass('server closed the connection that sent an oversized frame');
  t.equal((await good.call(echoService.echo, { seq: 2 })).seq, 2, 'other connections unaffected');
  // A legitimate call whose request is too big: the server drops that connection; the caller gets an error.
  const big = await good.call(echoService.echo, { payload: Buffer.alloc(100 * 1024) }).catch((e: unknown) => e);
  t.ok(big instanceof RpcUnavailableError, 'oversized request fails with RpcUnavailableError');
  t.equal((await good.call(echoService.echo, { seq: 3 }, { waitForReady: true, deadlineMs: 3000 })).seq, 3, 'client recovers');
  t.match(await registry.metrics(), /rpc_server_protocol_errors_total [1-9]/);
});

t.test('garbage, truncated and out-of-order frames never crash the server', async (t) => {
  const { server, port } = await startEchoServer();
  const good = client(port);
  t.teardown(async () => {
    await good.close();
    await server.close();
  });
  // Pure garbage before any handshake.
  let raw = await rawSocket(port, false);
  raw.sock.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await raw.closed;
  t.pass('HTTP request instead of Hello: closed');
  // A request before the handshake.
  raw = await rawSocket(port, false);
  raw.sock.write(encodeRequest(1, 0, 0, Buffer.from('rpc.Echo')));
  await raw.closed;
  t.pass('request before Hello: closed');
  // Unknown frame type after the handshake.
  raw = await rawSocket(port, true);
  raw.sock.write(encodeFrame(99 as FrameType, 0, 1));
  await raw.closed;
  t.pass('unknown frame type: closed');
  // Frame length shorter than the header.
  raw = await rawSocket(port, true);
  raw.sock.write(Buffer.from([0, 0, 0, 2, 3, 0]));
  await raw.closed;
  t.pass('impossible frame length: closed');
  // Truncated frame then EOF.
  raw = await rawSocket(port, true);
  const full = encodeRequest(1, 0, 0, Buffer.from('rpc.Echo'), Buffer.alloc(100));
  raw.sock.end(full.subarray(0, 40));
  await raw.closed;
  t.pass('truncated frame then EOF: closed');
  // A well-framed request with an undecodable protobuf body gets an error reply, not a crash.
  raw = await rawSocket(port, true);
  raw.sock.write(encodeRequest(7, 0, 0, Buffer.from('rpc.Echo'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])));
  for (let i = 0; i < 100 && raw.received().length < 30; i++) await sleep(10);
  t.match(raw.received().toString('latin1'), /RPC_DECODE/, 'bad body answered with RPC_DECODE');
  raw.sock.destroy();
  // Seeded random bytes.
  let seed = 12345;
  const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
  for (let k = 0; k < 20; k++) {
    raw = await rawSocket(port, k % 2 === 0);
    raw.sock.write(Buffer.from(Array.from({ length: 64 + k * 13 }, rnd)));
    raw.sock.end();
    await raw.closed;
  }
  t.equal((await good.call(echoService.echo, { seq: 9 })).seq, 9, 'server still serves after 25 hostile connections');
});

t.test('auth: wrong or missing token refused, right token served', async (t) => {
  const { server, port } = await startEchoServer({ token: 's3cret' });
  t.teardown(() => server.close());
  const bad = client(port, { token: 'wrong' });
  const e1 = await bad.call(echoService.echo, {}).catch((e: unknown) => e);
  t.ok(e1 instanceof RpcAuthError, 'wrong token -> RpcAuthError');
  t.equal((e1 as RpcAuthError).code, 'RPC_UNAUTHENTICATED');
  const none = client(port);
  const e2 = await none.call(echoService.echo, {}).catch((e: unknown) => e);
  t.ok(e2 instanceof RpcAuthError, 'no token -> RpcAuthError');
  const good = client(port, { token: 's3cret' });
  t.equal((await good.call(echoService.echo, { seq: 4 })).seq, 4);
  await Promise.all([bad.close(), none.close(), good.close()]);
  // Silent connection: closed after the handshake timeout.
  const s2 = await startEchoServer({ handshakeTimeoutMs: 100 });
  const raw = await rawSocket(s2.port, false);
  await raw.closed;
  t.pass('connection that never says Hello is closed');
  await s2.server.close();
});

t.test('TLS with a token', async (t) => {
  const dir = tempDirFor(t, 'rpc-tls-');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const key = readFileSync(join(dir, 'key.pem'));
  const cert = readFileSync(join(dir, 'cert.pem'));
  const { server, port } = await startEchoServer({ tls: { key, cert }, token: 'tok' });
  t.teardown(() => server.close());
  const c = client(port, { tls: { ca: cert, servername: 'localhost' }, token: 'tok' });
  t.equal((await c.call(echoService.echo, { seq: 11, text: 'over tls' })).text, 'over tls');
  await c.close();
  const untrusted = client(port, { tls: {}, token: 'tok', connectTimeoutMs: 2000 });
  const e = await untrusted.call(echoService.echo, {}).catch((x: unknown) => x);
  t.ok(e instanceof RpcUnavailableError, 'a client that does not trust the cert cannot connect');
  await untrusted.close();
  const plain = client(port, { token: 'tok', connectTimeoutMs: 1000 });
  const e2 = await plain.call(echoService.echo, {}, { deadlineMs: 2000 }).catch((x: unknown) => x);
  t.ok(e2 instanceof Error, 'plain TCP client against a TLS server fails');
  await plain.close();
});

t.test('server stream: slow consumer bounds what the server sends', async (t) => {
  const server = new RpcServer();
  let written = 0;
  server.serverStream(echoService.echoStream, async (req, out) => {
    for (let i = 0; i < 400; i++) {
      await out.write({ payload: req.payload, seq: i });
      written++;
    }
  });
  const { port } = await server.listen(0);
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const chunk = Buffer.alloc(64 * 1024, 7); // 400 x 64 KiB = 25 MiB if unbounded
  const stream = c.serverStream(echoService.echoStream, { payload: chunk });
  const it = stream[Symbol.asyncIterator]();
  const first = await it.next();
  t.equal(first.value?.seq, 0);
  await sleep(200);
  // Window 1 MiB = 16 messages, plus what was in flight when credit ran out.
  t.ok(written < 40, `server blocked by the window while the client does not read (wrote ${written} of 400)`);
  let got = 1;
  let seqOk = true;
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    if (r.value.seq !== got) seqOk = false;
    got++;
  }
  t.equal(got, 400, 'all messages arrive once the client reads');
  t.ok(seqOk, 'in order');
  t.equal(written, 400);
});

t.test('client stream: slow server bounds what the client sends', async (t) => {
  const server = new RpcServer();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  server.clientStream(echoService.collect, async (reqs) => {
    await gate;
    let total = 0;
    for await (const r of reqs) total += r.payload?.length ?? 0;
    return { seq: total };
  });
  const { port } = await server.listen(0);
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const call = c.clientStream(echoService.collect);
  const chunk = Buffer.alloc(64 * 1024, 1);
  let sent = 0;
  const writer = (async () => {
    for (let i = 0; i < 100; i++) {
      await call.write({ payload: chunk });
      sent++;
    }
  })();
  await sleep(200);
  t.ok(sent < 40, `client blocked by the window while the server does not read (sent ${sent} of 100)`);
  release();
  await writer;
  const res = await call.end();
  t.equal(res.seq, 100 * 64 * 1024, 'server counted every byte');
});

t.test("client stream: a method's own receive window (granted at open) lets that much through, and no more", async (t) => {
  const wide = clientStreamMethod('w.Collect', rawCodec, rawCodec, { windowBytes: 4 * 1024 * 1024 });
  t.throws(() => clientStreamMethod('w.Bad', rawCodec, rawCodec, { windowBytes: 1000 }), RangeError, 'below the initial window');
  t.throws(() => clientStreamMethod('w.Bad', rawCodec, rawCodec, { windowBytes: MAX_STREAM_WINDOW_BYTES + 1 }), RangeError, 'above the maximum');
  const server = new RpcServer();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  server.clientStream(wide, async (reqs) => {
    await gate;
    let total = 0;
    for await (const r of reqs) total += (r as Uint8Array).length;
    return Buffer.from(String(total));
  });
  const { port } = await server.listen(0);
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const call = c.clientStream(wide);
  const chunk = Buffer.alloc(64 * 1024, 1);
  let sent = 0;
  const writer = (async () => {
    for (let i = 0; i < 100; i++) {
      await call.write(chunk);
      sent++;
    }
  })();
  await sleep(300);
  // 4 MiB of 64 KiB messages is 64: the default 1 MiB window would stop the client near 16.
  t.ok(sent >= 60 && sent <= 66, `the client sent the method's window while the server did not read (${sent} of 100)`);
  release();
  await writer;
  t.equal(Buffer.from((await call.end()) as Uint8Array).toString(), String(100 * 64 * 1024), 'server counted every byte');
});

t.test('stream cancel and abandoned iteration stop the server', async (t) => {
  const { server, port } = await startEchoServer();
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const s = c.serverStream(echoService.echoStream, { seq: 1_000_000, payload: Buffer.alloc(1000) });
  let n = 0;
  for await (const m of s) {
    n++;
    if (m.seq === 10) break;
  }
  t.equal(n, 11);
  for (let i = 0; i < 100 && c.inFlight > 0; i++) await sleep(10);
  t.equal(c.inFlight, 0, 'breaking out of the loop ended the call');
  const r = await c.call(echoService.echo, { seq: 12 });
  t.equal(r.seq, 12, 'connection fine afterwards');
});

t.test('per-connection concurrency limit pauses reading but completes all calls', async (t) => {
  const { server, port } = await startEchoServer({ maxConcurrentCallsPerConnection: 8 });
  const c = client(port);
  t.teardown(async () => {
    await c.close();
    await server.close();
  });
  const rs = await Promise.all(Array.from({ length: 200 }, (_, i) => c.call(echoService.echo, { seq: i, delayMs: 2 })));
  t.equal(rs.filter((r, i) => r.seq === i).length, 200);
});

t.test('graceful close lets in-flight calls finish; closed client refuses calls', async (t) => {
  const { server, port } = await startEchoServer();
  const c = client(port);
  await c.call(echoService.echo, {});
  const inflight = c.call(echoService.echo, { seq: 42, delayMs: 100 });
  await sleep(10);
  await server.close(2000);
  t.equal((await inflight).seq, 42, 'call in flight at shutdown completed');
  await c.close();
  const e = await c.call(echoService.echo, {}).catch((x: unknown) => x);
  t.ok(e instanceof RpcClosedError);
});

t.test('pool shares one client per address and bounds the count', async (t) => {
  const a = await startEchoServer();
  const b = await startEchoServer();
  const pool = new RpcPool({ maxClients: 1 });
  t.teardown(async () => {
    await pool.close();
    await a.server.close();
    await b.server.close();
  });
  const ca = pool.get(`127.0.0.1:${a.port}`);
  t.equal(pool.get(`127.0.0.1:${a.port}`), ca, 'same client for the same address');
  t.equal((await ca.call(echoService.echo, { seq: 1 })).seq, 1);
  const cb = pool.get(`127.0.0.1:${b.port}`);
  t.equal((await cb.call(echoService.echo, { seq: 2 })).seq, 2);
  t.equal(pool.size, 1, 'least recently used client evicted');
  t.throws(() => pool.get('nonsense'), TypeError);
});
