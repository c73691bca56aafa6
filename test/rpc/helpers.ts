// Shared pieces of the rpc tests: an in-process echo server and a child-process one, a client
// with quick reconnects, and a raw socket for writing frames by hand.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { RpcClient, RpcServer, echoService, type RpcServerOptions } from '../../lib/rpc/index.js';
import { FrameType, encodeFrame, PROTOCOL_VERSION } from '../../lib/rpc/frame.js';
import { containerstack } from '../../proto/gen/rpc.js';
import { sleep } from '../../lib/common/index.js';

export async function startEchoServer(opts: RpcServerOptions = {}): Promise<{ server: RpcServer; port: number; aborted: string[] }> {
  const server = new RpcServer(opts);
  const aborted: string[] = [];
  server.unary(echoService.echo, async (req, ctx) => {
    if (req.delayMs) {
      try {
        await sleep(req.delayMs, ctx.signal);
      } catch (e) {
        aborted.push(`${req.text}:${(e as { code?: string }).code ?? 'unknown'}`);
        throw e;
      }
    }
    if (req.text === 'fail') {
      const err = new Error('handler exploded') as Error & { code?: string };
      throw err;
    }
    return { payload: req.payload, text: req.text, seq: req.seq };
  });
  server.serverStream(echoService.echoStream, async (req, out) => {
    for (let i = 0; i < (req.seq ?? 0); i++) await out.write({ payload: req.payload, seq: i });
  });
  server.clientStream(echoService.collect, async (reqs) => {
    let total = 0;
    for await (const r of reqs) total += r.payload?.length ?? 0;
    return { seq: total };
  });
  const addr = await server.listen(0);
  return { server, port: addr.port, aborted };
}

export async function spawnEchoServer(port = 0, token?: string): Promise<{ child: ChildProcess; port: number }> {
  const here = dirname(fileURLToPath(import.meta.url));
  const child = spawn(process.execPath, [join(here, 'echo-server.fixture.js'), String(port), ...(token ? [token] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('echo server did not start')), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /port (\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)));
  });
  return { child, port: got };
}

export function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** A client to 127.0.0.1:port that reconnects quickly (tests kill and restart servers). */
export function client(port: number, extra: Partial<ConstructorParameters<typeof RpcClient>[0]> = {}): RpcClient {
  return new RpcClient({ host: '127.0.0.1', port, backoffBaseMs: 20, backoffMaxMs: 200, ...extra });
}

/** A raw TCP socket that has done the handshake (or not), for sending frames by hand. */
export async function rawSocket(port: number, handshake: boolean): Promise<{ sock: Socket; closed: Promise<void>; received: () => Buffer }> {
  const sock = connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  if (handshake) sock.write(encodeFrame(FrameType.Hello, 0, 0, containerstack.rpc.Hello.encode({ version: PROTOCOL_VERSION, token: '' }).finish()));
  return { sock, closed, received: () => Buffer.concat(chunks) };
}
