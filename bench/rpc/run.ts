// bench/rpc: lib/rpc against @grpc/grpc-js, unary echo calls on loopback, same messages and
// codec, servers in their own processes, one load generator. Measures calls/s with C calls
// kept in flight (pipelined) and the per-call latency, interleaving rounds of both so drift
// on a noisy 2-core machine hits both alike.
//
// Bound from first principles: with 2 cores, the client and server each get about one core.
// A call costs the server a decode, a handler and an encode (~1-2 µs each) plus its share of
// syscalls; batching many frames per write makes syscalls cheap, so a few hundred thousand
// calls/s is the ceiling; grpc-js pays HTTP/2 framing and per-call stream objects, which is
// where the >= 2x target comes from.
//
//   npm run bench:rpc [-- --seconds 4 --rounds 3 --concurrency 100]
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RpcClient, echoService } from '../../lib/rpc/index.js';
import { containerstack } from '../../proto/gen/rpc.js';
import { appendResults, markdownTable, median, percentile, printResultLine, round } from '../lib/results.js';

const { EchoRequest, EchoResponse } = containerstack.rpc;
type Req = containerstack.rpc.EchoRequest.$Properties;
type Res = containerstack.rpc.EchoResponse.$Properties;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
const seconds = arg('seconds', 4);
const rounds = arg('rounds', 3);
// 100 in flight is the headline (the pipelined load); 10 is near grpc-js's own peak on
// this machine, 1 is pure round-trip latency.
const concurrencies = process.argv.includes('--concurrency') ? [arg('concurrency', 100)] : [100, 10, 1];
const MAX_SAMPLES = 2_000_000;

async function startServer(kind: 'ours' | 'grpc'): Promise<{ child: ChildProcess; port: number }> {
  const here = dirname(fileURLToPath(import.meta.url));
  const child = spawn(process.execPath, [join(here, 'server.js'), kind], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /port (\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (c) => reject(new Error(`${kind} server exited ${c}`)));
  });
  return { child, port };
}

type CallFn = (req: Req) => Promise<Res>;

async function load(call: CallFn, concurrency: number, durationMs: number): Promise<{ callsPerSec: number; p50Ms: number; p99Ms: number; errors: number }> {
  const lat = new Float64Array(MAX_SAMPLES);
  let n = 0;
  let errors = 0;
  const payload = Buffer.alloc(64, 0x61);
  const started = performance.now();
  const endAt = started + durationMs;
  let seq = 0;
  const worker = async (): Promise<void> => {
    // Bounded by time and by the sample buffer.
    while (performance.now() < endAt && n < MAX_SAMPLES) {
      const t0 = performance.now();
      try {
        await call({ payload, text: 'bench', seq: seq++ });
        lat[n++] = performance.now() - t0;
      } catch {
        errors++;
        if (errors > 1000) throw new Error('too many errors');
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - started) / 1000;
  const sample = lat.subarray(0, n);
  return { callsPerSec: n / elapsed, p50Ms: percentile(sample, 50), p99Ms: percentile(sample, 99), errors };
}

async function main(): Promise<void> {
  const ours = await startServer('ours');
  const peer = await startServer('grpc');
  const client = new RpcClient({ host: '127.0.0.1', port: ours.port });
  const GrpcClient = grpc.makeGenericClientConstructor(
    {
      echo: {
        path: '/rpc.Echo/Echo',
        requestStream: false,
        responseStream: false,
        requestSerialize: (m: Req) => Buffer.from(EchoRequest.encode(m).finish()),
        requestDeserialize: (b: Buffer) => EchoRequest.decode(b),
        responseSerialize: (m: Res) => Buffer.from(EchoResponse.encode(m).finish()),
        responseDeserialize: (b: Buffer) => EchoResponse.decode(b),
      },
    },
    'Echo',
  );
  const gclient = new GrpcClient(`127.0.0.1:${peer.port}`, grpc.credentials.createInsecure(), { 'grpc.enable_channelz': 0 }) as unknown as {
    echo: (req: Req, cb: (err: Error | null, res?: Res) => void) => void;
    close(): void;
  };
  const oursCall: CallFn = (req) => client.call(echoService.echo, req);
  const grpcCall: CallFn = (req) => new Promise((resolve, reject) => gclient.echo(req, (err, res) => (err ? reject(err) : resolve(res as Res))));

  // Warm-up: connections, JIT.
  await load(oursCall, 50, 1000);
  await load(grpcCall, 50, 1000);

  const rows: Record<string, string | number>[] = [];
  let headline: { ours: number; peer: number; p99: number; peerP99: number } | undefined;
  let bestOurs = 0;
  let bestPeer = 0;
  for (const c of concurrencies) {
    const o: Awaited<ReturnType<typeof load>>[] = [];
    const g: Awaited<ReturnType<typeof load>>[] = [];
    for (let r = 0; r < rounds; r++) {
      o.push(await load(oursCall, c, seconds * 1000));
      g.push(await load(grpcCall, c, seconds * 1000));
    }
    const oq = median(o.map((x) => x.callsPerSec));
    const gq = median(g.map((x) => x.callsPerSec));
    const op99 = median(o.map((x) => x.p99Ms));
    const gp99 = median(g.map((x) => x.p99Ms));
    rows.push(
      { concurrency: c, system: 'lib/rpc', 'calls/s': Math.round(oq), 'p50 ms': round(median(o.map((x) => x.p50Ms)), 3), 'p99 ms': round(op99, 3), errors: o.reduce((a, x) => a + x.errors, 0), ratio: round(oq / gq) },
      { concurrency: c, system: 'grpc-js', 'calls/s': Math.round(gq), 'p50 ms': round(median(g.map((x) => x.p50Ms)), 3), 'p99 ms': round(gp99, 3), errors: g.reduce((a, x) => a + x.errors, 0), ratio: 1 },
    );
    bestOurs = Math.max(bestOurs, oq);
    bestPeer = Math.max(bestPeer, gq);
    if (c === concurrencies[0]) headline = { ours: oq, peer: gq, p99: op99, peerP99: gp99 };
  }
  await client.close();
  gclient.close();
  ours.child.kill('SIGKILL');
  peer.child.kill('SIGKILL');

  const table = markdownTable(rows);
  console.log(table);
  appendResults(
    'rpc: lib/rpc vs @grpc/grpc-js unary',
    `Echo with a 64-byte payload, servers in separate processes on loopback, one client process, grpc-js with channelz off (its fastest setting here); median of ${rounds} interleaved rounds of ${seconds}s. Target: >= 2x grpc-js calls/s at equal or better p99 (100 in flight). Peak vs peak (best concurrency of each): ${Math.round(bestOurs)} vs ${Math.round(bestPeer)} calls/s, ratio ${round(bestOurs / bestPeer)}.\n\n${table}`,
  );
  const h = headline as NonNullable<typeof headline>;
  printResultLine({
    bench: 'rpc', metric: 'calls_per_sec', ours: Math.round(h.ours), peer: 'grpc-js', peerValue: Math.round(h.peer), ratio: round(h.ours / h.peer),
    p99Ms: round(h.p99, 3), peerP99Ms: round(h.peerP99, 3), concurrency: concurrencies[0] as number, peakRatio: round(bestOurs / bestPeer),
  });
}

await main();
