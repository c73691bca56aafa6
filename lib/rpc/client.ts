// RpcClient: one logical channel to one server address. It connects lazily, multiplexes any
// number of calls on one connection, reconnects with jittered backoff after a failure, and
// fails every call of a lost connection at once (a crashed peer gives an error, not a hang).
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { silentLogger, jitteredBackoffMs, Counter, type Logger, type Registry } from '../common/index.js';
import { containerstack } from '../../proto/gen/rpc.js';
import { Connection } from './connection.js';
import { borrowedReads, READ_BUFFER_BYTES } from './socket.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameType, PROTOCOL_VERSION, RequestFlags, encodeFrame, encodeWindow, type Frame } from './frame.js';
import { RecvQueue, SendWindow } from './stream.js';
import type { MethodDef } from './codec.js';
import {
  RpcAuthError, RpcCancelledError, RpcClosedError, RpcDeadlineError, RpcDecodeError, RpcProtocolError,
  RpcResourceExhaustedError, RpcUnavailableError, errorFromStatus,
} from './errors.js';

const { Hello, HelloAck, RpcStatus } = containerstack.rpc;

export interface RpcClientOptions {
  host: string;
  port: number;
  token?: string;
  /** Connect with TLS using these options (ca, cert, key, servername, rejectUnauthorized). */
  tls?: TlsConnectionOptions;
  /** Sent in the handshake, for the server's logs. */
  name?: string;
  maxFrameBytes?: number;
  connectTimeoutMs?: number;
  /** Applied to calls that give no deadlineMs; undefined means no deadline. */
  defaultDeadlineMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Calls in flight on the connection; further calls wait in a queue of the same size. */
  maxConcurrentCalls?: number;
  writeHighWaterBytes?: number;
  logger?: Logger;
  registry?: Registry;
}

export interface CallOptions {
  deadlineMs?: number;
  signal?: AbortSignal;
  /** Wait for a connection (within the deadline) instead of failing fast while reconnecting. */
  waitForReady?: boolean;
  /**
   * A unary call's large answer (64 KiB and up, read as plain TCP) is assembled in the buffer
   * this gives for its frame's length, instead of a fresh one: a raw answer is then a view of
   * it. For callers that reuse their buffers (a pool): fresh MiB-sized buffers drive V8's
   * full collections (external memory pressure), which were ~40% of a block-group reader's CPU.
   * The caller owns the buffer and must not reuse it while it still uses the answer. Must
   * answer exactly `frameBytes` bytes (undefined: a fresh buffer after all).
   */
  bodyBuffer?: (frameBytes: number) => Buffer | undefined;
}

export interface NotifyOptions {
  /**
   * Longest wait for a connection that can take the message (connecting, backoff with
   * waitForReady, a full socket); default the client's defaultDeadlineMs. Once the message is
   * written there is no timer: nothing comes back to wait for.
   */
  deadlineMs?: number;
  waitForReady?: boolean;
}

export interface ClientStreamCall<Req, Res> {
  /** Resolves when the message fits in the stream window; await each write. */
  write(msg: Req): Promise<void>;
  /** Half-closes and resolves with the server's response. */
  end(): Promise<Res>;
  cancel(): void;
}

export type ServerStreamCall<Res> = AsyncIterable<Res> & { cancel(): void };

type Pending =
  | { kind: 'unary'; def: MethodDef<unknown, unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void; timer?: NodeJS.Timeout; signal?: AbortSignal; onAbort?: () => void; bodyBuffer?: (frameBytes: number) => Buffer | undefined }
  | { kind: 'serverStream'; def: MethodDef<unknown, unknown>; queue: RecvQueue<unknown>; timer?: NodeJS.Timeout; signal?: AbortSignal; onAbort?: () => void }
  | { kind: 'clientStream'; def: MethodDef<unknown, unknown>; window: SendWindow; resolve: (v: unknown) => void; reject: (e: unknown) => void; timer?: NodeJS.Timeout; signal?: AbortSignal; onAbort?: () => void };

const methodBytesCache = new Map<string, Buffer>();
function methodBytes(name: string): Buffer {
  let b = methodBytesCache.get(name);
  if (!b) {
    b = Buffer.from(name);
    if (methodBytesCache.size < 4096) methodBytesCache.set(name, b);
  }
  return b;
}

type Resolved = Required<Omit<RpcClientOptions, 'token' | 'tls' | 'defaultDeadlineMs' | 'logger' | 'registry'>>;

/** A handshaken connection and the calls in flight on it. */
class ClientConnection {
  readonly pending = new Map<number, Pending>();
  private nextId = 1;
  draining = false;
  /** The server predates notifications (it refused one): send them as calls whose answer is dropped. */
  notifyUnsupported = false;
  constructor(
    readonly conn: Connection,
    private readonly maxFrameBytes: number,
    private readonly onIdleDrained: (c: ClientConnection) => void,
    private readonly log: Logger = silentLogger,
  ) {}

  get usable(): boolean {
    return !this.conn.isClosed && !this.draining;
  }

  allocId(): number {
    // Call ids wrap at 2^32; skip 0 (connection frames) and ids still in flight.
    for (;;) {
      const id = this.nextId;
      this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  arm(id: number, p: Pending, deadlineMs: number | undefined, signal: AbortSignal | undefined): void {
    if (deadlineMs !== undefined) {
      p.timer = setTimeout(() => this.fail(id, new RpcDeadlineError(`${p.def.name} exceeded its deadline of ${deadlineMs}ms`), true), deadlineMs);
    }
    if (signal) {
      p.signal = signal;
      p.onAbort = () => this.fail(id, new RpcCancelledError(`${p.def.name} cancelled`), true);
      signal.addEventListener('abort', p.onAbort, { once: true });
    }
    this.pending.set(id, p);
  }

  unary(def: MethodDef<unknown, unknown>, req: unknown, deadlineMs: number | undefined, signal: AbortSignal | undefined, bodyBuffer?: (frameBytes: number) => Buffer | undefined): Promise<unknown> {
    const payload = def.request.encode(req);
    const id = this.allocId();
    return new Promise((resolve, reject) => {
      this.arm(id, bodyBuffer ? { kind: 'unary', def, resolve, reject, bodyBuffer } : { kind: 'unary', def, resolve, reject }, deadlineMs, signal);
      this.conn.sendRequest(id, RequestFlags.None, deadlineMs ?? 0, methodBytes(def.name), payload);
    });
  }

  /**
   * Writes a one-way request (call id 0, RequestFlags.Notify): no entry in `pending`, no timer.
   * Resolves once the socket has taken the bytes, rejects when it never will (connection lost).
   * `fallbackDeadlineMs` bounds the call an older server gets instead (see notifyUnsupported).
   */
  notify(def: MethodDef<unknown, unknown>, req: unknown, fallbackDeadlineMs: number): Promise<void> {
    if (this.notifyUnsupported) {
      // Settles once queued (an encoding error rejects), as a notification would.
      return new Promise<void>((resolve) => {
        this.unary(def, req, fallbackDeadlineMs, undefined).catch(() => undefined);
        resolve();
      });
    }
    return new Promise<void>((resolve, reject) => {
      const payload = def.request.encode(req);
      // The write callback runs once the kernel has the bytes, or once it never will (the
      // connection was destroyed first, which marks it closed before failing its writes).
      this.conn.sendRequest(0, RequestFlags.Notify, 0, methodBytes(def.name), payload, () => {
        if (this.conn.isClosed) reject(new RpcUnavailableError(`${def.name} notification to ${this.conn.remote} not sent: connection lost`));
        else resolve();
      });
    });
  }

  serverStream(def: MethodDef<unknown, unknown>, req: unknown, deadlineMs: number | undefined, signal: AbortSignal | undefined): ServerStreamCall<unknown> {
    const payload = def.request.encode(req);
    const id = this.allocId();
    const queue = new RecvQueue<unknown>((n) => this.conn.send(encodeWindow(id, n)), this.maxFrameBytes, () => this.fail(id, new RpcCancelledError('stream abandoned'), true));
    this.arm(id, { kind: 'serverStream', def, queue }, deadlineMs, signal);
    this.conn.sendRequest(id, RequestFlags.ServerStream, deadlineMs ?? 0, methodBytes(def.name), payload);
    return Object.assign(queue, { cancel: () => this.fail(id, new RpcCancelledError('stream cancelled'), true) });
  }

  clientStream(def: MethodDef<unknown, unknown>, deadlineMs: number | undefined, signal: AbortSignal | undefined): ClientStreamCall<unknown, unknown> {
    const id = this.allocId();
    const window = new SendWindow();
    let resolveRes!: (v: unknown) => void;
    let rejectRes!: (e: unknown) => void;
    const result = new Promise<unknown>((resolve, reject) => {
      resolveRes = resolve;
      rejectRes = reject;
    });
    result.catch(() => undefined); // observed through end(); avoid unhandled rejections before that
    this.arm(id, { kind: 'clientStream', def, window, resolve: resolveRes, reject: rejectRes }, deadlineMs, signal);
    this.conn.sendRequest(id, RequestFlags.ClientStream, deadlineMs ?? 0, methodBytes(def.name));
    let ended = false;
    return {
      write: async (msg) => {
        if (ended) throw new RpcProtocolError('write after end');
        const wait = window.ready();
        if (wait) await wait;
        if (!this.conn.writable) await this.conn.waitWritable();
        if (!this.pending.has(id)) return result.then(() => undefined); // already failed: surface that error
        const parts = def.request.encodeParts?.(msg);
        if (parts) {
          let n = 0;
          for (const b of parts) n += b.length;
          window.consume(n);
          this.conn.sendFrameParts(FrameType.Data, 0, id, parts, n);
          return;
        }
        const body = def.request.encode(msg);
        window.consume(body.length);
        this.conn.sendFrame(FrameType.Data, 0, id, body);
      },
      end: () => {
        if (!ended) {
          ended = true;
          if (this.pending.has(id)) this.conn.send(encodeFrame(FrameType.End, 0, id));
        }
        return result;
      },
      cancel: () => this.fail(id, new RpcCancelledError('stream cancelled'), true),
    };
  }

  /** Completes call `id` with an error; tells the server when the call is abandoned by us. */
  fail(id: number, err: Error, tellServer: boolean): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.finish(id, p);
    // Its answer may be arriving into the caller's buffer, which the caller may reuse as soon
    // as it sees this failure: the rest of that frame goes to a buffer of its own.
    if (p.kind === 'unary' && p.bodyBuffer) this.conn.divertFrame(id);
    if (tellServer && !this.conn.isClosed) this.conn.send(encodeFrame(FrameType.Cancel, 0, id));
    if (p.kind === 'serverStream') p.queue.fail(err);
    else {
      if (p.kind === 'clientStream') p.window.fail(err);
      p.reject(err);
    }
  }

  private finish(id: number, p: Pending): void {
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    if (this.draining && this.pending.size === 0) this.onIdleDrained(this);
  }

  onFrame(f: Frame): void {
    switch (f.type) {
      case FrameType.Response: {
        const p = this.pending.get(f.callId);
        if (!p || p.kind === 'serverStream') return; // late answer to a call we gave up on
        this.finish(f.callId, p);
        let res: unknown;
        try {
          res = p.def.response.decode(f.body);
        } catch (err) {
          p.reject(new RpcDecodeError(`cannot decode ${p.def.name} response`, { cause: err }));
          return;
        }
        p.resolve(res);
        return;
      }
      case FrameType.Error: {
        if (f.callId === 0) {
          this.onNotifyRefused(f);
          return;
        }
        const p = this.pending.get(f.callId);
        if (!p) return;
        let err: Error;
        try {
          const st = RpcStatus.decode(f.body);
          err = errorFromStatus(st.code, st.message, st.details);
        } catch (e) {
          err = new RpcDecodeError('cannot decode error status', { cause: e });
        }
        this.fail(f.callId, err, false);
        return;
      }
      case FrameType.Data: {
        const p = this.pending.get(f.callId);
        if (!p || p.kind !== 'serverStream') return;
        let msg: unknown;
        try {
          msg = f.parts && p.def.response.decodeParts ? p.def.response.decodeParts(f.parts) : p.def.response.decode(f.body);
        } catch (err) {
          this.fail(f.callId, new RpcDecodeError(`cannot decode ${p.def.name} stream message`, { cause: err }), true);
          return;
        }
        p.queue.push(msg, f.bodyLength);
        return;
      }
      case FrameType.End: {
        const p = this.pending.get(f.callId);
        if (!p || p.kind !== 'serverStream') return;
        this.finish(f.callId, p);
        p.queue.end();
        return;
      }
      case FrameType.Window: {
        const p = this.pending.get(f.callId);
        if (p?.kind === 'clientStream') p.window.grant(f.credit);
        return;
      }
      case FrameType.GoAway:
        this.draining = true;
        if (this.pending.size === 0) this.onIdleDrained(this);
        return;
      case FrameType.HelloAck:
        return;
      default:
        throw new RpcProtocolError(`unexpected frame type ${f.type} from server`);
    }
  }

  /**
   * Only a server without notifications answers on call id 0: it refuses the Notify flag as not
   * matching the method (RPC_PROTOCOL). From then on this connection sends them as calls.
   */
  private onNotifyRefused(f: Frame): void {
    let code = '';
    let message = '';
    try {
      const st = RpcStatus.decode(f.body);
      code = st.code;
      message = st.message;
    } catch {
      // undecodable: treated as any other refusal below
    }
    if (code === 'RPC_PROTOCOL' && !this.notifyUnsupported) {
      this.notifyUnsupported = true;
      this.log.warn({ remote: this.conn.remote, message }, 'rpc: server does not take notifications; sending them as calls');
    } else this.log.debug({ remote: this.conn.remote, code, message }, 'rpc: a notification was refused');
  }

  failAll(err: Error): void {
    for (const id of [...this.pending.keys()]) this.fail(id, err, false);
  }
}

/** Deadline of the call an older server gets instead of a notification, when no deadline was given. */
const NOTIFY_FALLBACK_DEADLINE_MS = 30_000;

export class RpcClient {
  readonly address: string;
  private readonly o: Resolved;
  private readonly log: Logger;
  private current: ClientConnection | undefined;
  private connecting: Promise<ClientConnection> | undefined;
  private failures = 0;
  private retryAtMs = 0;
  private lastError: Error | undefined;
  private closed = false;
  private waiting = 0;
  private readonly callsCounter: Counter<'method' | 'code'> | undefined;

  constructor(private readonly options: RpcClientOptions) {
    this.address = `${options.host.includes(':') ? `[${options.host}]` : options.host}:${options.port}`;
    this.log = options.logger ?? silentLogger;
    this.o = {
      host: options.host,
      port: options.port,
      name: options.name ?? 'rpc-client',
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 20_000,
      keepaliveTimeoutMs: options.keepaliveTimeoutMs ?? 10_000,
      backoffBaseMs: options.backoffBaseMs ?? 100,
      backoffMaxMs: options.backoffMaxMs ?? 5000,
      maxConcurrentCalls: options.maxConcurrentCalls ?? 10_000,
      writeHighWaterBytes: options.writeHighWaterBytes ?? 4 * 1024 * 1024,
    };
    if (options.registry) {
      this.callsCounter = new Counter({ name: 'rpc_client_calls_total', help: 'RPC calls made, by method and result code', labelNames: ['method', 'code'], registers: [options.registry] });
    }
  }

  get isConnected(): boolean {
    return this.current?.usable ?? false;
  }

  /** Calls in flight on the current connection. */
  get inFlight(): number {
    return this.current?.pending.size ?? 0;
  }

  call<Req, Res>(def: MethodDef<Req, Res>, req: Req, opts?: CallOptions): Promise<Res> {
    const deadlineMs = opts?.deadlineMs ?? this.options.defaultDeadlineMs;
    const c = this.current;
    // Fast path: a ready connection with room. Everything else goes through slowCall.
    if (c !== undefined && c.usable && c.conn.writable && c.pending.size < this.o.maxConcurrentCalls && this.waiting === 0 && !opts?.signal?.aborted) {
      const p = c.unary(def as MethodDef<unknown, unknown>, req, deadlineMs, opts?.signal, opts?.bodyBuffer) as Promise<Res>;
      return this.callsCounter ? this.count(def.name, p) : p;
    }
    const p = this.slowCall(def, req, deadlineMs, opts);
    return this.callsCounter ? this.count(def.name, p) : p;
  }

  private count<T>(method: string, p: Promise<T>): Promise<T> {
    return p.then(
      (v) => {
        this.callsCounter?.inc({ method, code: 'OK' });
        return v;
      },
      (e: unknown) => {
        this.callsCounter?.inc({ method, code: (e as { code?: string }).code ?? 'UNKNOWN' });
        throw e;
      },
    );
  }

  /**
   * Sends `req` to unary method `def` one way: the server runs the handler and answers nothing,
   * not even an error (it logs and counts them). Resolves once the request is written to the
   * socket; rejects when no connection can be had (as a call would) or it is lost before the
   * bytes go out. For messages whose loss the caller tolerates (raft retries its own), half the
   * frames of a call and its reply.
   */
  notify<Req, Res>(def: MethodDef<Req, Res>, req: Req, opts?: NotifyOptions): Promise<void> {
    if (def.kind !== 'unary') return Promise.reject(new TypeError(`rpc: notify needs a unary method; ${def.name} is ${def.kind}`));
    const waitMs = opts?.deadlineMs ?? this.options.defaultDeadlineMs;
    const fallbackMs = waitMs ?? NOTIFY_FALLBACK_DEADLINE_MS;
    const c = this.current;
    const p =
      c !== undefined && c.usable && c.conn.writable && c.pending.size < this.o.maxConcurrentCalls && this.waiting === 0
        ? c.notify(def as MethodDef<unknown, unknown>, req, fallbackMs)
        : this.ready(waitMs, opts).then((c2) => c2.notify(def as MethodDef<unknown, unknown>, req, fallbackMs));
    return this.callsCounter ? this.count(def.name, p) : p;
  }

  private async slowCall<Req, Res>(def: MethodDef<Req, Res>, req: Req, deadlineMs: number | undefined, opts?: CallOptions): Promise<Res> {
    const started = performance.now();
    const c = await this.ready(deadlineMs, opts);
    const left = deadlineMs === undefined ? undefined : Math.max(1, deadlineMs - (performance.now() - started));
    return c.unary(def as MethodDef<unknown, unknown>, req, left, opts?.signal, opts?.bodyBuffer) as Promise<Res>;
  }

  serverStream<Req, Res>(def: MethodDef<Req, Res>, req: Req, opts?: CallOptions): ServerStreamCall<Res> {
    const deadlineMs = opts?.deadlineMs ?? this.options.defaultDeadlineMs;
    let inner: ServerStreamCall<unknown> | undefined;
    let cancelled = false;
    const self = this;
    async function* gen(): AsyncGenerator<Res> {
      const started = performance.now();
      const c = await self.ready(deadlineMs, opts);
      if (cancelled) throw new RpcCancelledError('stream cancelled');
      const left = deadlineMs === undefined ? undefined : Math.max(1, deadlineMs - (performance.now() - started));
      inner = c.serverStream(def as MethodDef<unknown, unknown>, req, left, opts?.signal);
      for await (const m of inner) yield m as Res;
    }
    const it = gen();
    return Object.assign(it, {
      cancel: () => {
        cancelled = true;
        inner?.cancel();
      },
    });
  }

  clientStream<Req, Res>(def: MethodDef<Req, Res>, opts?: CallOptions): ClientStreamCall<Req, Res> {
    const deadlineMs = opts?.deadlineMs ?? this.options.defaultDeadlineMs;
    const started = performance.now();
    const inner = this.ready(deadlineMs, opts).then((c) =>
      c.clientStream(def as MethodDef<unknown, unknown>, deadlineMs === undefined ? undefined : Math.max(1, deadlineMs - (performance.now() - started)), opts?.signal),
    );
    inner.catch(() => undefined); // surfaced by write/end
    return {
      write: async (msg) => (await inner).write(msg),
      end: async () => (await inner).end() as Promise<Res>,
      cancel: () => {
        inner.then((s) => s.cancel(), () => undefined);
      },
    };
  }

  /** A usable connection, connecting if needed; honours backoff, deadline and queue bounds. */
  private async ready(deadlineMs: number | undefined, opts?: CallOptions): Promise<ClientConnection> {
    if (this.closed) throw new RpcClosedError(`client for ${this.address} is closed`);
    if (opts?.signal?.aborted) throw new RpcCancelledError('call cancelled before it started');
    if (this.waiting >= this.o.maxConcurrentCalls) {
      throw new RpcResourceExhaustedError(`more than ${this.o.maxConcurrentCalls} calls waiting for ${this.address}`);
    }
    const deadlineAt = deadlineMs === undefined ? Infinity : performance.now() + deadlineMs;
    this.waiting++;
    try {
      for (;;) {
        const c = this.current;
        if (c?.usable) {
          if (c.conn.writable && c.pending.size < this.o.maxConcurrentCalls) return c;
          await Promise.race([c.conn.waitWritable(), sleepUntil(Math.min(deadlineAt, performance.now() + 5))]);
        } else {
          const now = performance.now();
          if (!this.connecting && now < this.retryAtMs) {
            if (!opts?.waitForReady) {
              throw new RpcUnavailableError(
                `cannot reach ${this.address}: ${this.lastError?.message ?? 'not connected'}; next attempt in ${Math.ceil(this.retryAtMs - now)}ms`,
                { cause: this.lastError },
              );
            }
            await sleepUntil(Math.min(this.retryAtMs, deadlineAt));
          } else {
            const p = this.connect();
            const timeLeft = deadlineAt - performance.now();
            if (timeLeft === Infinity) await p;
            else {
              let t: NodeJS.Timeout | undefined;
              await Promise.race([p, new Promise<void>((resolve) => (t = setTimeout(resolve, Math.max(0, timeLeft))))]).finally(() => clearTimeout(t));
            }
          }
        }
        if (this.closed) throw new RpcClosedError(`client for ${this.address} is closed`);
        if (opts?.signal?.aborted) throw new RpcCancelledError('call cancelled while waiting for a connection');
        if (performance.now() >= deadlineAt) throw new RpcDeadlineError(`deadline passed while waiting for a connection to ${this.address}`);
      }
    } catch (err) {
      if (err instanceof RpcAuthError || err instanceof RpcUnavailableError || err instanceof RpcProtocolError) {
        if (opts?.waitForReady && !(err instanceof RpcAuthError) && performance.now() < deadlineAt && !this.closed) {
          return this.ready(deadlineAt === Infinity ? undefined : deadlineAt - performance.now(), opts);
        }
      }
      throw err;
    } finally {
      this.waiting--;
    }
  }

  /** Starts (or joins) a connection attempt; resolves once handshaken. */
  private connect(): Promise<ClientConnection> {
    if (this.connecting) return this.connecting;
    const p = this.dial().then(
      (c) => {
        this.failures = 0;
        this.retryAtMs = 0;
        this.lastError = undefined;
        this.current = c;
        return c;
      },
      (err: Error) => {
        this.failures++;
        this.lastError = err;
        this.retryAtMs = performance.now() + Math.max(this.o.backoffBaseMs / 2, jitteredBackoffMs(this.failures, this.o.backoffBaseMs, this.o.backoffMaxMs));
        this.log.debug({ address: this.address, err, failures: this.failures }, 'rpc: connect failed');
        throw err;
      },
    );
    this.connecting = p;
    p.then(
      () => (this.connecting = undefined),
      () => (this.connecting = undefined),
    );
    return p;
  }

  private dial(): Promise<ClientConnection> {
    return new Promise<ClientConnection>((resolve, reject) => {
      let settled = false;
      let cc: ClientConnection | undefined;
      // Plain TCP reads into one reused buffer per connection (onread), and the body of a large
      // answer (block reads) straight into its own buffer: one allocation per frame, no join.
      const readBuffer = this.options.tls ? undefined : Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
      const reads = readBuffer ? borrowedReads(readBuffer) : undefined;
      const socket: Socket = reads
        ? netConnect({ host: this.o.host, port: this.o.port, onread: reads.onread })
        : tlsConnect({ host: this.o.host, port: this.o.port, ...this.options.tls });
      const timer = setTimeout(() => done(new RpcUnavailableError(`connect to ${this.address} timed out after ${this.o.connectTimeoutMs}ms`)), this.o.connectTimeoutMs);
      const done = (err: Error | undefined, c?: ClientConnection): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          conn.destroy(err);
          reject(err);
        } else resolve(c as ClientConnection);
      };
      const conn = new Connection(socket, {
        ...(readBuffer ? { readBuffer } : {}),
        // An answer's frame goes where its call asked (CallOptions.bodyBuffer), if it did.
        allocateFrame: (type, callId, total) => {
          if (type !== FrameType.Response || !cc) return undefined;
          const p = cc.pending.get(callId);
          const b = p?.kind === 'unary' ? p.bodyBuffer?.(total) : undefined;
          // The call may have failed inside bodyBuffer (an abort): then nothing may land in it.
          return b && cc.pending.has(callId) ? b : undefined;
        },
        maxFrameBytes: this.o.maxFrameBytes,
        writeHighWaterBytes: this.o.writeHighWaterBytes,
        keepaliveIntervalMs: this.o.keepaliveIntervalMs,
        keepaliveTimeoutMs: this.o.keepaliveTimeoutMs,
        logger: this.log,
        onFrame: (f) => {
          if (!settled) {
            if (f.type !== FrameType.HelloAck) throw new RpcProtocolError(`expected HelloAck, got frame type ${f.type}`);
            const ack = HelloAck.decode(f.body);
            if (!ack.ok) {
              const Err = /authentication/.test(ack.error) ? RpcAuthError : RpcProtocolError;
              done(new Err(`${this.address} refused the connection: ${ack.error}`));
              return;
            }
            cc = new ClientConnection(conn, this.o.maxFrameBytes, (idle) => idle.conn.end(), this.log);
            done(undefined, cc);
            return;
          }
          cc?.onFrame(f);
        },
        onClose: (err) => {
          const reason = new RpcUnavailableError(`connection to ${this.address} lost${err ? `: ${err.message}` : ''}`, { cause: err });
          if (!settled) {
            done(new RpcUnavailableError(`cannot connect to ${this.address}${err ? `: ${err.message}` : ''}`, { cause: err }));
            return;
          }
          if (cc) {
            cc.failAll(reason);
            if (this.current === cc) {
              this.current = undefined;
              // A connection that dies right after working is retried at once; repeated
              // failures back off (connect() counts them).
              this.lastError = reason;
            }
          }
        },
      });
      if (reads) reads.target = conn;
      const sayHello = (): void => {
        conn.send(encodeFrame(FrameType.Hello, 0, 0, Hello.encode({ version: PROTOCOL_VERSION, token: this.options.token ?? '', peerName: this.o.name }).finish()));
      };
      socket.once(this.options.tls ? 'secureConnect' : 'connect', sayHello);
    });
  }

  /** Fails calls in flight with RpcClosedError and closes the connection. */
  async close(): Promise<void> {
    this.closed = true;
    const c = this.current;
    this.current = undefined;
    if (c) {
      c.failAll(new RpcClosedError(`client for ${this.address} closed`));
      c.conn.destroy(undefined);
    }
    if (this.connecting) {
      await this.connecting.then(
        (c2) => c2.conn.destroy(undefined),
        () => undefined,
      );
    }
  }
}

function sleepUntil(atMs: number): Promise<void> {
  const ms = atMs - performance.now();
  if (!(ms > 0)) return Promise.resolve();
  return new Promise((resolve) => setTimeout(resolve, Math.min(ms, 2 ** 31 - 1)));
}
