// RpcServer: serves registered methods over framed TCP (optionally TLS) connections.
// Bounded everywhere: connections, calls in flight per connection (reading pauses at the
// limit, so a flooding client is slowed by TCP rather than buffered), frame size, handshake
// time, and stream windows.
import { createServer as createTcpServer, type Server as NetServer, type Socket, type AddressInfo } from 'node:net';
import { createServer as createTlsServer, type TlsOptions } from 'node:tls';
import { createHash, timingSafeEqual } from 'node:crypto';
import { ContainerStackError, silentLogger, Counter, Gauge, Histogram, LATENCY_BUCKETS_S, type Logger, type Registry } from '../common/index.js';
import { containerstack } from '../../proto/gen/rpc.js';
import { Connection } from './connection.js';
import { adoptForBorrowedReads, borrowedReads, READ_BUFFER_BYTES } from './socket.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameType, PROTOCOL_VERSION, RequestFlags, encodeFrame, encodeWindow, type Frame } from './frame.js';
import { RecvQueue, SendWindow } from './stream.js';
import type { MethodDef } from './codec.js';
import { RpcCancelledError, RpcClosedError, RpcDeadlineError, RpcDecodeError, RpcProtocolError } from './errors.js';

const { Hello, HelloAck, RpcStatus } = containerstack.rpc;

export interface RpcServerOptions {
  /** Shown to clients and in logs. */
  name?: string;
  /** Shared token; when set, a client whose Hello carries another token is refused. */
  token?: string;
  tls?: Pick<TlsOptions, 'key' | 'cert' | 'ca' | 'requestCert' | 'rejectUnauthorized'>;
  maxFrameBytes?: number;
  maxConnections?: number;
  /** Calls in flight per connection before the server stops reading from it. */
  maxConcurrentCallsPerConnection?: number;
  handshakeTimeoutMs?: number;
  writeHighWaterBytes?: number;
  keepaliveIntervalMs?: number;
  keepaliveTimeoutMs?: number;
  logger?: Logger;
  registry?: Registry;
}

export interface CallContext {
  readonly method: string;
  readonly peer: string;
  readonly peerName: string;
  /** performance.now() time by which the caller wants an answer, if it set a deadline. */
  readonly deadlineAt: number | undefined;
  /** Aborted on cancel, deadline or connection loss. Created on first use. */
  readonly signal: AbortSignal;
  /**
   * Unary and client-stream calls: runs `fn` once the answer has been handed to the kernel, or
   * will never be (an error was sent instead, the connection closed). A handler answering with
   * memory it wants back (a pooled buffer, sent by reference) releases it here, never earlier.
   */
  onResponseSent(fn: () => void): void;
}

export interface StreamWriter<T> {
  /** Resolves when the message is queued within the stream window; await it (backpressure). */
  write(msg: T): Promise<void>;
}

export type UnaryHandler<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res> | Res;
export type ServerStreamHandler<Req, Res> = (req: Req, out: StreamWriter<Res>, ctx: CallContext) => Promise<void>;
export type ClientStreamHandler<Req, Res> = (reqs: AsyncIterable<Req>, ctx: CallContext) => Promise<Res>;

type AnyDef = MethodDef<unknown, unknown>;
type Registered =
  | { def: AnyDef; kind: 'unary'; fn: UnaryHandler<unknown, unknown> }
  | { def: AnyDef; kind: 'serverStream'; fn: ServerStreamHandler<unknown, unknown> }
  | { def: AnyDef; kind: 'clientStream'; fn: ClientStreamHandler<unknown, unknown> };

class ServerCallContext implements CallContext {
  private ctrl: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private abortReason: Error | undefined;
  inbound: RecvQueue<unknown> | undefined;
  outbound: SendWindow | undefined;
  private sentHooks: (() => void)[] | undefined;
  constructor(
    readonly method: string,
    readonly peer: string,
    readonly peerName: string,
    readonly deadlineAt: number | undefined,
  ) {}
  get signal(): AbortSignal {
    if (!this.ctrl) {
      this.ctrl = new AbortController();
      if (this.abortReason) this.ctrl.abort(this.abortReason);
      else if (this.deadlineAt !== undefined) {
        const remaining = this.deadlineAt - performance.now();
        const fire = (): void => this.abort(new RpcDeadlineError(`deadline of ${this.method} passed`));
        if (remaining <= 0) fire();
        else {
          this.timer = setTimeout(fire, remaining);
          this.timer.unref();
        }
      }
    }
    return this.ctrl.signal;
  }
  abort(reason: Error): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.ctrl?.abort(reason);
    this.inbound?.fail(reason);
    this.outbound?.fail(reason);
  }
  finish(): void {
    if (this.timer) clearTimeout(this.timer);
  }
  onResponseSent(fn: () => void): void {
    (this.sentHooks ??= []).push(fn);
  }
  /** The write callback of the answer, or undefined when no hook wants one. */
  get sentCallback(): (() => void) | undefined {
    const hooks = this.sentHooks;
    if (!hooks) return undefined;
    this.sentHooks = undefined;
    return () => {
      for (const h of hooks) h();
    };
  }
}

interface Metrics {
  calls: Counter<'method' | 'code'>;
  notifications: Counter<'method' | 'code'>;
  seconds: Histogram<'method'>;
  connections: Gauge;
  protocolErrors: Counter;
  refused: Counter<'reason'>;
}

function makeMetrics(registry: Registry | undefined): Metrics | undefined {
  if (!registry) return undefined;
  return {
    calls: new Counter({ name: 'rpc_server_calls_total', help: 'RPC calls finished, by method and result code', labelNames: ['method', 'code'], registers: [registry] }),
    notifications: new Counter({ name: 'rpc_server_notifications_total', help: 'One-way requests handled (never answered), by method and result code', labelNames: ['method', 'code'], registers: [registry] }),
    seconds: new Histogram({ name: 'rpc_server_call_duration_seconds', help: 'RPC handler time', labelNames: ['method'], buckets: LATENCY_BUCKETS_S, registers: [registry] }),
    connections: new Gauge({ name: 'rpc_server_connections', help: 'Open RPC connections', registers: [registry] }),
    protocolErrors: new Counter({ name: 'rpc_server_protocol_errors_total', help: 'Connections closed for malformed input', registers: [registry] }),
    refused: new Counter({ name: 'rpc_server_refused_total', help: 'Connections refused', labelNames: ['reason'], registers: [registry] }),
  };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export class RpcServer {
  private readonly methods = new Map<string, Registered>();
  private readonly conns = new Set<ServerConnection>();
  private netServer: NetServer | undefined;
  private closing = false;
  readonly log: Logger;
  readonly metrics: Metrics | undefined;
  readonly opts: Required<Omit<RpcServerOptions, 'token' | 'tls' | 'logger' | 'registry'>>;
  private readonly tokenHash: Buffer | undefined;

  constructor(private readonly options: RpcServerOptions = {}) {
    this.log = options.logger ?? silentLogger;
    this.metrics = makeMetrics(options.registry);
    this.tokenHash = options.token ? sha256(options.token) : undefined;
    this.opts = {
      name: options.name ?? 'rpc-server',
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      maxConnections: options.maxConnections ?? 1024,
      maxConcurrentCallsPerConnection: options.maxConcurrentCallsPerConnection ?? 1024,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5000,
      writeHighWaterBytes: options.writeHighWaterBytes ?? 4 * 1024 * 1024,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 20_000,
      keepaliveTimeoutMs: options.keepaliveTimeoutMs ?? 10_000,
    };
  }

  unary<Req, Res>(def: MethodDef<Req, Res>, fn: UnaryHandler<Req, Res>): this {
    return this.register({ def: def as AnyDef, kind: 'unary', fn: fn as UnaryHandler<unknown, unknown> }, 'unary');
  }
  serverStream<Req, Res>(def: MethodDef<Req, Res>, fn: ServerStreamHandler<Req, Res>): this {
    return this.register({ def: def as AnyDef, kind: 'serverStream', fn: fn as ServerStreamHandler<unknown, unknown> }, 'serverStream');
  }
  clientStream<Req, Res>(def: MethodDef<Req, Res>, fn: ClientStreamHandler<Req, Res>): this {
    return this.register({ def: def as AnyDef, kind: 'clientStream', fn: fn as ClientStreamHandler<unknown, unknown> }, 'clientStream');
  }

  private register(r: Registered, kind: string): this {
    if (r.def.kind !== kind) throw new TypeError(`rpc: method ${r.def.name} is ${r.def.kind}, registered as ${kind}`);
    if (this.methods.has(r.def.name)) throw new TypeError(`rpc: method ${r.def.name} registered twice`);
    if (Buffer.byteLength(r.def.name) > 255) throw new TypeError(`rpc: method name too long: ${r.def.name}`);
    this.methods.set(r.def.name, r);
    return this;
  }

  lookup(name: string): Registered | undefined {
    return this.methods.get(name);
  }

  async listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    const onSocket = (socket: Socket): void => this.accept(socket);
    // Plain TCP: accepted paused, so accept() can move each socket onto onread (reused buffer).
    const srv = this.options.tls ? createTlsServer(this.options.tls, onSocket) : createTcpServer({ pauseOnConnect: true }, onSocket);
    if (this.options.tls) {
      srv.on('tlsClientError', (err) => {
        this.metrics?.refused.inc({ reason: 'tls' });
        this.log.warn({ err }, 'rpc: TLS handshake failed');
      });
    }
    // TLS sockets stay counted by the net.Server; plain ones are handed over at once (see
    // adoptForBorrowedReads) and accept() counts them.
    srv.maxConnections = this.opts.maxConnections;
    this.netServer = srv;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    srv.on('error', (err) => this.log.error({ err }, 'rpc: server socket error'));
    return srv.address() as AddressInfo;
  }

  get address(): AddressInfo | undefined {
    return (this.netServer?.address() as AddressInfo | null) ?? undefined;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  private accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (this.conns.size >= this.opts.maxConnections) {
      this.metrics?.refused.inc({ reason: 'max_connections' });
      socket.destroy();
      return;
    }
    if (this.options.tls) {
      this.conns.add(new ServerConnection(this, socket, this.tokenHash));
      this.metrics?.connections.inc();
      return;
    }
    const buffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
    const reads = borrowedReads(buffer);
    const adopted = adoptForBorrowedReads(socket, reads.onread);
    const conn = new ServerConnection(this, adopted ?? socket, this.tokenHash, adopted ? buffer : undefined);
    reads.target = conn.conn;
    this.conns.add(conn);
    this.metrics?.connections.inc();
    (adopted ?? socket).resume();
  }

  /** Called by a connection when it closes. */
  forget(conn: ServerConnection): void {
    if (this.conns.delete(conn)) this.metrics?.connections.dec();
  }

  /**
   * Stops accepting, tells clients to go away, lets calls in flight finish for up to graceMs,
   * then closes what is left.
   */
  async close(graceMs = 2000): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const srv = this.netServer;
    const closed = srv ? new Promise<void>((resolve) => srv.close(() => resolve())) : Promise.resolve();
    for (const c of this.conns) c.goAway();
    const deadline = performance.now() + graceMs;
    while (performance.now() < deadline && [...this.conns].some((c) => c.inFlight > 0)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const c of [...this.conns]) c.conn.destroy(new RpcClosedError('server shutting down'));
    await closed;
  }
}

class ServerConnection {
  readonly conn: Connection;
  private readonly calls = new Map<number, ServerCallContext>();
  /** Notifications whose handler is still running: they count against the same limit as calls. */
  private readonly notifying = new Set<ServerCallContext>();
  private authed = false;
  private peerName = '';
  private paused = false;
  private readonly handshakeTimer: NodeJS.Timeout;

  constructor(
    private readonly server: RpcServer,
    socket: Socket,
    private readonly tokenHash: Buffer | undefined,
    readBuffer?: Buffer,
  ) {
    const o = server.opts;
    this.conn = new Connection(socket, {
      ...(readBuffer !== undefined ? { readBuffer } : {}),
      maxFrameBytes: o.maxFrameBytes,
      writeHighWaterBytes: o.writeHighWaterBytes,
      keepaliveIntervalMs: o.keepaliveIntervalMs,
      keepaliveTimeoutMs: o.keepaliveTimeoutMs,
      logger: server.log,
      onFrame: (f) => this.onFrame(f),
      onClose: (err) => this.onClose(err),
    });
    this.handshakeTimer = setTimeout(() => {
      if (!this.authed) {
        server.metrics?.refused.inc({ reason: 'handshake_timeout' });
        server.log.warn({ remote: this.conn.remote }, 'rpc: no handshake in time, closing');
        this.conn.destroy(new RpcProtocolError('handshake timeout'));
      }
    }, o.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    socket.on('drain', () => this.maybeResume());
  }

  get inFlight(): number {
    return this.calls.size + this.notifying.size;
  }

  goAway(): void {
    this.conn.send(encodeFrame(FrameType.GoAway, 0, 0));
  }

  private onClose(err: Error | undefined): void {
    clearTimeout(this.handshakeTimer);
    if (err instanceof RpcProtocolError || (err && /frame/.test(err.message))) this.server.metrics?.protocolErrors.inc();
    const reason = new RpcCancelledError('connection closed');
    for (const c of this.calls.values()) c.abort(reason);
    this.calls.clear();
    for (const c of this.notifying) c.abort(reason);
    this.notifying.clear();
    this.server.forget(this);
  }

  private onFrame(f: Frame): void {
    if (!this.authed) {
      if (f.type !== FrameType.Hello) throw new RpcProtocolError(`expected Hello, got frame type ${f.type}`);
      this.handshake(f);
      return;
    }
    switch (f.type) {
      case FrameType.Request:
        this.onRequest(f);
        return;
      case FrameType.Data: {
        const c = this.calls.get(f.callId);
        if (!c?.inbound) return; // late data for a finished call
        const def = this.server.lookup(c.method)?.def;
        if (!def) return;
        let msg: unknown;
        try {
          msg = f.parts && def.request.decodeParts ? def.request.decodeParts(f.parts) : def.request.decode(f.body);
        } catch (err) {
          c.abort(new RpcDecodeError(`cannot decode ${c.method} stream message`, { cause: err }));
          return;
        }
        c.inbound.push(msg, f.bodyLength);
        return;
      }
      case FrameType.End:
        this.calls.get(f.callId)?.inbound?.end();
        return;
      case FrameType.Cancel:
        this.calls.get(f.callId)?.abort(new RpcCancelledError('cancelled by caller'));
        return;
      case FrameType.Window:
        this.calls.get(f.callId)?.outbound?.grant(f.credit);
        return;
      case FrameType.GoAway:
        return;
      default:
        throw new RpcProtocolError(`unexpected frame type ${f.type} from client`);
    }
  }

  private handshake(f: Frame): void {
    let hello;
    try {
      hello = Hello.decode(f.body);
    } catch (err) {
      throw new RpcProtocolError('malformed Hello', { cause: err });
    }
    const refuse = (why: string, reason: string): void => {
      this.server.metrics?.refused.inc({ reason });
      this.server.log.warn({ remote: this.conn.remote, peer: hello.peerName, why }, 'rpc: refused connection');
      this.conn.send(encodeFrame(FrameType.HelloAck, 0, 0, HelloAck.encode({ ok: false, error: why }).finish()));
      this.conn.end();
      setTimeout(() => this.conn.destroy(undefined), 1000).unref();
    };
    if (hello.version !== PROTOCOL_VERSION) return refuse(`protocol version ${hello.version} not supported (want ${PROTOCOL_VERSION})`, 'version');
    if (this.tokenHash && !timingSafeEqual(this.tokenHash, sha256(hello.token))) return refuse('authentication failed: bad token', 'auth');
    this.authed = true;
    this.peerName = hello.peerName;
    clearTimeout(this.handshakeTimer);
    this.conn.send(
      encodeFrame(FrameType.HelloAck, 0, 0, HelloAck.encode({ ok: true, maxFrameBytes: this.server.opts.maxFrameBytes, serverName: this.server.opts.name }).finish()),
    );
  }

  private onRequest(f: Frame): void {
    if (f.flags & RequestFlags.Notify) {
      this.onNotify(f);
      return;
    }
    if (this.calls.has(f.callId)) throw new RpcProtocolError(`call id ${f.callId} reused while in flight`);
    const reg = this.server.lookup(f.method);
    if (!reg) {
      this.sendError(f.callId, 'RPC_UNIMPLEMENTED', `no method ${f.method}`);
      this.server.metrics?.calls.inc({ method: 'unknown', code: 'RPC_UNIMPLEMENTED' });
      return;
    }
    const wantFlags = reg.kind === 'unary' ? 0 : reg.kind === 'serverStream' ? RequestFlags.ServerStream : RequestFlags.ClientStream;
    if (f.flags !== wantFlags) {
      this.sendError(f.callId, 'RPC_PROTOCOL', `method ${f.method} is ${reg.kind}; request flags ${f.flags} do not match`);
      return;
    }
    if (this.inFlight >= this.server.opts.maxConcurrentCallsPerConnection * 2) {
      // Far past the soft limit (reading is already paused): refuse rather than grow.
      this.sendError(f.callId, 'RPC_RESOURCE_EXHAUSTED', 'too many calls in flight on this connection');
      return;
    }
    const ctx = new ServerCallContext(f.method, this.conn.remote, this.peerName, f.deadlineMs > 0 ? performance.now() + f.deadlineMs : undefined);
    this.calls.set(f.callId, ctx);
    this.maybePause();
    const start = this.server.metrics ? performance.now() : 0;
    const callId = f.callId;
    const def = reg.def;
    let run: Promise<unknown>;
    try {
      switch (reg.kind) {
        case 'unary': {
          const req = this.decodeRequest(def, f.body);
          run = Promise.resolve(reg.fn(req, ctx)).then((res) => this.conn.sendFrame(FrameType.Response, 0, callId, def.response.encode(res), ctx.sentCallback));
          break;
        }
        case 'serverStream': {
          const req = this.decodeRequest(def, f.body);
          const win = new SendWindow();
          ctx.outbound = win;
          const writer: StreamWriter<unknown> = {
            write: async (msg) => {
              const wait = win.ready();
              if (wait) await wait;
              if (!this.conn.writable) await this.conn.waitWritable();
              if (this.conn.isClosed) throw new RpcCancelledError('connection closed');
              const body = def.response.encode(msg);
              win.consume(body.length);
              this.conn.sendFrame(FrameType.Data, 0, callId, body);
            },
          };
          run = reg.fn(req, writer, ctx).then(() => this.conn.send(encodeFrame(FrameType.End, 0, callId)));
          break;
        }
        case 'clientStream': {
          ctx.inbound = new RecvQueue<unknown>((n) => this.conn.send(encodeWindow(callId, n)), this.server.opts.maxFrameBytes, undefined, def.streamWindowBytes);
          run = reg.fn(ctx.inbound, ctx).then((res) => this.conn.sendFrame(FrameType.Response, 0, callId, def.response.encode(res), ctx.sentCallback));
          break;
        }
      }
    } catch (err) {
      run = Promise.reject(err);
    }
    run.then(
      () => this.done(callId, ctx, 'OK', start),
      (err: unknown) => {
        const code = err instanceof ContainerStackError ? err.code : 'INTERNAL';
        if (code === 'INTERNAL') this.server.log.error({ err, method: ctx.method }, 'rpc: handler failed');
        const details = (err as { details?: unknown }).details;
        this.sendError(callId, code, err instanceof Error ? err.message : String(err), details instanceof Uint8Array ? details : undefined);
        this.done(callId, ctx, code, start);
      },
    );
  }

  /**
   * A one-way request: the handler runs as for a unary call, but nothing is sent back whatever
   * happens (the caller has no call waiting), so every failure is logged and counted here.
   */
  private onNotify(f: Frame): void {
    const m = this.server.metrics;
    const reg = this.server.lookup(f.method);
    if (!reg || reg.kind !== 'unary' || f.flags !== RequestFlags.Notify) {
      const code = reg ? 'RPC_PROTOCOL' : 'RPC_UNIMPLEMENTED';
      m?.notifications.inc({ method: reg ? f.method : 'unknown', code });
      this.server.log.debug({ method: f.method, flags: f.flags, code, remote: this.conn.remote }, 'rpc: notification dropped');
      return;
    }
    if (this.inFlight >= this.server.opts.maxConcurrentCallsPerConnection * 2) {
      // Far past the soft limit (reading is already paused): drop rather than grow; the sender
      // chose a message it can afford to lose.
      m?.notifications.inc({ method: f.method, code: 'RPC_RESOURCE_EXHAUSTED' });
      return;
    }
    const ctx = new ServerCallContext(f.method, this.conn.remote, this.peerName, undefined);
    const start = m ? performance.now() : 0;
    let res: unknown;
    try {
      res = reg.fn(this.decodeRequest(reg.def, f.body), ctx);
    } catch (err) {
      this.notified(ctx, err, start);
      return;
    }
    // A handler that answers at once (raft.Step) finishes here: no promise, no set entry.
    if (typeof (res as PromiseLike<unknown> | undefined)?.then !== 'function') {
      this.notified(ctx, undefined, start);
      return;
    }
    this.notifying.add(ctx);
    this.maybePause();
    (res as PromiseLike<unknown>).then(
      () => this.notified(ctx, undefined, start),
      (err: unknown) => this.notified(ctx, err, start),
    );
  }

  private notified(ctx: ServerCallContext, err: unknown, start: number): void {
    ctx.finish();
    ctx.sentCallback?.(); // hooks waiting for an answer that is never sent
    if (this.notifying.delete(ctx)) this.maybeResume();
    const code = err === undefined ? 'OK' : err instanceof ContainerStackError ? err.code : 'INTERNAL';
    if (code === 'INTERNAL') this.server.log.error({ err, method: ctx.method }, 'rpc: notification handler failed');
    else if (err !== undefined) this.server.log.debug({ err, method: ctx.method }, 'rpc: notification handler failed');
    const m = this.server.metrics;
    if (m) {
      m.notifications.inc({ method: ctx.method, code });
      m.seconds.observe({ method: ctx.method }, (performance.now() - start) / 1000);
    }
  }

  private decodeRequest(def: AnyDef, body: Buffer): unknown {
    try {
      return def.request.decode(body);
    } catch (err) {
      throw new RpcDecodeError(`cannot decode ${def.name} request`, { cause: err });
    }
  }

  private done(callId: number, ctx: ServerCallContext, code: string, start: number): void {
    ctx.finish();
    // Hooks not taken by a sent answer (the call failed, or its encoding threw) run now.
    ctx.sentCallback?.();
    this.calls.delete(callId);
    this.maybeResume();
    const m = this.server.metrics;
    if (m) {
      m.calls.inc({ method: ctx.method, code });
      m.seconds.observe({ method: ctx.method }, (performance.now() - start) / 1000);
    }
  }

  private sendError(callId: number, code: string, message: string, details?: Uint8Array): void {
    this.conn.send(encodeFrame(FrameType.Error, 0, callId, RpcStatus.encode({ code, message, details: details ?? new Uint8Array(0) }).finish()));
  }

  private maybePause(): void {
    if (!this.paused && (this.inFlight >= this.server.opts.maxConcurrentCallsPerConnection || !this.conn.writable)) {
      this.paused = true;
      this.conn.pause();
    }
  }

  private maybeResume(): void {
    if (this.paused && this.inFlight < this.server.opts.maxConcurrentCallsPerConnection && this.conn.writable) {
      this.paused = false;
      this.conn.resume();
    }
  }
}
