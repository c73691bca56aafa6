// The admin HTTP endpoint every daemon serves: /metrics (Prometheus text), /health (liveness
// plus named checks), /ready (ready to serve traffic). Extra routes may be added by a daemon
// (the DNS REST API mounts on its own server; this one is for operators and probes).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from './metrics.js';
import type { Logger } from './log.js';
import { silentLogger } from './log.js';

export type HealthState = 'ok' | 'degraded' | 'down';
export interface HealthReport {
  status: HealthState;
  checks?: Record<string, { status: HealthState; detail?: string }>;
}

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface AdminServerOptions {
  host?: string;
  port: number;
  registry: Registry;
  /** Liveness: degraded still answers 200 so an orchestrator does not restart a working node. */
  health?: () => HealthReport | Promise<HealthReport>;
  ready?: () => boolean | Promise<boolean>;
  routes?: Record<string, RouteHandler>;
  logger?: Logger;
}

export interface AdminServer {
  readonly server: Server;
  readonly port: number;
  readonly host: string;
  url(path?: string): string;
  close(): Promise<void>;
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const log = opts.logger ?? silentLogger;
  const health = opts.health ?? (() => ({ status: 'ok' as const }));
  const ready = opts.ready ?? (() => true);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method !== 'GET' && req.method !== 'HEAD' && !(path in (opts.routes ?? {}))) {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    switch (path) {
      case '/metrics': {
        const body = await opts.registry.metrics();
        res.writeHead(200, { 'content-type': opts.registry.contentType }).end(body);
        return;
      }
      case '/health':
      case '/healthz': {
        const report = await health();
        res.writeHead(report.status === 'down' ? 503 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(report) + '\n');
        return;
      }
      case '/ready':
      case '/readyz': {
        const ok = await ready();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready: ok }) + '\n');
        return;
      }
      default: {
        const route = opts.routes?.[path];
        if (route) {
          await route(req, res);
          return;
        }
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found', path }) + '\n');
      }
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, url: req.url }, 'admin: request failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'internal error' }) + '\n');
    });
  });
  // Slow or idle clients must not hold sockets forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    host,
    url: (p = '/') => `http://${host.includes(':') ? `[${host}]` : host}:${port}${p}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
