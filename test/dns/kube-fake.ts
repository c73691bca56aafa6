// A fake Kubernetes API server for the watcher tests, faithful where the watcher depends on it:
// paginated lists (limit/continue over one consistent snapshot), list resourceVersion, watches
// that replay history after a resourceVersion and then stream chunked JSON events one per line,
// BOOKMARK events, timeoutSeconds ending the stream cleanly, 410 for a compacted version (as an
// ERROR event carrying a Status, as the real server does, or as an HTTP 410), bearer auth, and
// namespaced paths. Faults on demand: drop every watch connection, stall streams, inject 410s.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export type Resource = 'services' | 'endpoints' | 'endpointslices';
type Obj = Record<string, unknown> & { metadata: { name: string; namespace: string; resourceVersion?: string } };

interface WatchConn {
  resource: Resource;
  namespace: string | undefined;
  res: ServerResponse;
  stalled: boolean;
  timer: NodeJS.Timeout | undefined;
}

interface HistoryEntry {
  rv: number;
  resource: Resource;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

const HISTORY_MAX = 10_000;

export class FakeKubeApi {
  private server!: Server;
  port = 0;
  rv = 1000;
  /** Watches asking for a version older than this get 410 (etcd compaction). */
  compactedRv = 0;
  private readonly objects: Record<Resource, Map<string, Obj>> = { services: new Map(), endpoints: new Map(), endpointslices: new Map() };
  private readonly history: HistoryEntry[] = [];
  private readonly watches = new Set<WatchConn>();
  private readonly snapshots = new Map<string, Obj[]>();
  /** When set, list requests are never answered (a hung API server). */
  holdLists = false;
  private goneEvents = 0;
  private goneHttp = 0;
  /** Every request, for assertions: method, path, query. */
  readonly requests: { path: string; query: URLSearchParams }[] = [];

  constructor(readonly token = 'kube-token') {}

  private tls = false;

  /** With `tls` (PEM key and cert) it serves HTTPS, as a real API server does. */
  async start(tls?: { key: string | Buffer; cert: string | Buffer }): Promise<void> {
    this.tls = tls !== undefined;
    this.server = tls ? createTlsServer(tls, (req, res) => this.handle(req, res)) : createServer((req, res) => this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const w of this.watches) {
      if (w.timer) clearTimeout(w.timer);
      w.res.destroy();
    }
    this.watches.clear();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  // --- state changes (each bumps the resourceVersion and is streamed to watchers) ---

  upsert(resource: Resource, obj: Obj): void {
    const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
    const type = this.objects[resource].has(key) ? 'MODIFIED' : 'ADDED';
    const copy = structuredClone(obj);
    copy.metadata.resourceVersion = String(++this.rv);
    this.objects[resource].set(key, copy);
    this.record({ rv: this.rv, resource, type, object: copy });
  }

  remove(resource: Resource, namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const cur = this.objects[resource].get(key);
    if (!cur) return;
    this.objects[resource].delete(key);
    const copy = structuredClone(cur);
    copy.metadata.resourceVersion = String(++this.rv);
    this.record({ rv: this.rv, resource, type: 'DELETED', object: copy });
  }

  private record(e: HistoryEntry): void {
    this.history.push(e);
    if (this.history.length > HISTORY_MAX) this.history.shift();
    for (const w of this.watches) if (this.matches(w, e)) this.send(w, { type: e.type, object: e.object });
  }

  // --- faults ---

  /** Forget history: watches from older versions now get 410. */
  compact(): void {
    this.compactedRv = this.rv;
    this.history.length = 0;
  }

  /** The next n watch requests get an ERROR event with a 410 Status (then the stream ends). */
  injectGoneEvent(n = 1): void {
    this.goneEvents += n;
  }

  /** The next n watch requests get an HTTP 410 answer. */
  injectGoneHttp(n = 1): void {
    this.goneHttp += n;
  }

  /** Cuts every open watch connection mid-stream (no clean end of the chunked body). */
  dropWatches(): void {
    for (const w of this.watches) {
      if (w.timer) clearTimeout(w.timer);
      w.res.socket?.destroy();
    }
    this.watches.clear();
  }

  /** Open watch streams go silent (connections stay open, nothing more is written). */
  stallWatches(): void {
    for (const w of this.watches) w.stalled = true;
  }

  /** Sends a BOOKMARK with the current version to every open watch. */
  bookmark(): void {
    for (const w of this.watches) {
      const kind = w.resource === 'services' ? 'Service' : w.resource === 'endpoints' ? 'Endpoints' : 'EndpointSlice';
      this.send(w, { type: 'BOOKMARK', object: { kind, apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } } });
    }
  }

  /** Current objects of a resource (copies), for computing what the watcher should converge to. */
  current(resource: Resource): Obj[] {
    return [...this.objects[resource].values()].map((o) => structuredClone(o));
  }

  get openWatches(): number {
    return this.watches.size;
  }

  watchRequests(resource: Resource): URLSearchParams[] {
    return this.requests.filter((r) => r.path.endsWith(`/${resource}`) && r.query.get('watch') === '1').map((r) => r.query);
  }

  // --- HTTP ---

  private matches(w: WatchConn, e: HistoryEntry): boolean {
    return w.resource === e.resource && (w.namespace === undefined || w.namespace === e.object.metadata.namespace);
  }

  private send(w: WatchConn, ev: unknown): void {
    if (w.stalled || w.res.destroyed) return;
    w.res.write(JSON.stringify(ev) + '\n');
  }

  private status(res: ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ path: url.pathname, query: url.searchParams });
    if (req.headers.authorization !== `Bearer ${this.token}`) return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    const m = /^(?:\/api\/v1\/(?:namespaces\/([^/]+)\/)?(services|endpoints)|\/apis\/discovery\.k8s\.io\/v1\/(?:namespaces\/([^/]+)\/)?(endpointslices))$/.exec(url.pathname);
    if (!m || req.method !== 'GET') return this.status(res, 404, 'NotFound', `the server could not find the requested resource`);
    const namespace = m[1] ?? m[3];
    const resource = (m[2] ?? m[4]) as Resource;
    if (url.searchParams.get('watch') === '1' || url.searchParams.get('watch') === 'true') return this.watch(req, res, resource, namespace, url.searchParams);
    if (this.holdLists) return;
    this.list(res, resource, namespace, url.searchParams);
  }

  private list(res: ServerResponse, resource: Resource, namespace: string | undefined, q: URLSearchParams): void {
    const limit = Number(q.get('limit') ?? 0);
    const cont = q.get('continue');
    let items: Obj[];
    let offset = 0;
    let rv: string;
    if (cont) {
      const [id, off] = cont.split(':');
      const snap = this.snapshots.get(id ?? '');
      if (!snap) return this.status(res, 410, 'Expired', 'The provided continue parameter is too old');
      items = snap;
      offset = Number(off);
      rv = id!.split('-')[0]!;
    } else {
      items = [...this.objects[resource].values()]
        .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
        .sort((a, b) => (`${a.metadata.namespace}/${a.metadata.name}` < `${b.metadata.namespace}/${b.metadata.name}` ? -1 : 1))
        .map((o) => structuredClone(o));
      rv = String(this.rv);
    }
    const page = limit > 0 ? items.slice(offset, offset + limit) : items.slice(offset);
    let next = '';
    if (limit > 0 && offset + limit < items.length) {
      const id = cont ? cont.split(':')[0]! : `${rv}-${Math.random().toString(36).slice(2)}`;
      this.snapshots.set(id, items);
      if (this.snapshots.size > 100) this.snapshots.delete(this.snapshots.keys().next().value!);
      next = `${id}:${offset + limit}`;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      kind: resource === 'services' ? 'ServiceList' : resource === 'endpoints' ? 'EndpointsList' : 'EndpointSliceList',
      apiVersion: 'v1',
      metadata: { resourceVersion: rv, ...(next ? { continue: next } : {}) },
      items: page,
    }));
  }

  private watch(req: IncomingMessage, res: ServerResponse, resource: Resource, namespace: string | undefined, q: URLSearchParams): void {
    if (this.goneHttp > 0) {
      this.goneHttp--;
      return this.status(res, 410, 'Expired', 'too old resource version (injected)');
    }
    const rvParam = q.get('resourceVersion') ?? '';
    const from = rvParam === '' ? NaN : Number(rvParam);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const w: WatchConn = { resource, namespace, res, stalled: false, timer: undefined };
    const gone = (): void => {
      res.write(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${rvParam} (${this.compactedRv})`, reason: 'Expired', code: 410 } }) + '\n');
      res.end();
    };
    if (this.goneEvents > 0) {
      this.goneEvents--;
      return gone();
    }
    if (Number.isFinite(from) && from > 0 && from < this.compactedRv) return gone();
    // Replay what happened after `from` (or, with no version, the current state as ADDED).
    if (Number.isFinite(from) && from > 0) {
      for (const e of this.history) if (e.rv > from && this.matches(w, e)) this.send(w, { type: e.type, object: e.object });
    } else {
      for (const o of this.objects[resource].values()) if (namespace === undefined || o.metadata.namespace === namespace) this.send(w, { type: 'ADDED', object: o });
    }
    this.watches.add(w);
    const timeoutS = Number(q.get('timeoutSeconds') ?? 0);
    if (timeoutS > 0) {
      w.timer = setTimeout(() => {
        this.watches.delete(w);
        if (!w.stalled) res.end();
      }, timeoutS * 1000);
    }
    req.on('close', () => {
      if (w.timer) clearTimeout(w.timer);
      this.watches.delete(w);
    });
  }
}

export function service(ns: string, name: string, spec: Record<string, unknown>, status?: Record<string, unknown>): Obj {
  return { kind: 'Service', apiVersion: 'v1', metadata: { name, namespace: ns }, spec, ...(status ? { status } : {}) };
}

export function endpoints(ns: string, name: string, subsets: unknown[]): Obj {
  return { kind: 'Endpoints', apiVersion: 'v1', metadata: { name, namespace: ns }, subsets };
}

export function endpointSlice(ns: string, name: string, service: string, endpoints: unknown[], ports: unknown[]): Obj {
  return {
    kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', addressType: 'IPv4',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': service } } as Obj['metadata'],
    endpoints, ports,
  };
}
