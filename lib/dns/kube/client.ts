// A minimal Kubernetes REST client for the watcher: paginated lists and watch streams of core
// v1 resources, bearer token and CA file auth, every body and line bounded. No client library:
// we need two resources and exact control over resourceVersion, 410 and reconnect semantics.
import { request as httpRequest, type IncomingMessage, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { defineError } from '../../common/index.js';

/** The API server could not be reached, timed out, or sent something unreadable. */
export class KubeUnavailableError extends defineError('dns', 'DNS_KUBE_UNAVAILABLE') {}
/** The API server answered an error status (`status` holds it); 410 means the version is gone. */
export class KubeStatusError extends defineError('dns', 'DNS_KUBE_STATUS') {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
/** A list or watch message went past a configured bound. */
export class KubeLimitError extends defineError('dns', 'DNS_KUBE_LIMIT') {}

export interface KubeClientOptions {
  /** `https://10.96.0.1:443` or, for tests, `http://127.0.0.1:port`. */
  server: string;
  /** Bearer token (a service account token). */
  token?: string;
  /**
   * File holding the token, re-read at most once a minute: projected service account tokens
   * rotate, and a token read once at start would expire under a long-running watcher.
   */
  tokenFile?: string;
  /** PEM CA bundle to verify the API server with. */
  ca?: string | Buffer;
  /** Skip TLS verification (only for debugging). */
  insecureSkipVerify?: boolean;
  requestTimeoutMs?: number;
  maxResponseBytes?: number;
  maxLineBytes?: number;
}

export interface KubeObjectMeta {
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  [k: string]: unknown;
}

export interface KubeObject {
  kind?: string;
  metadata?: KubeObjectMeta;
  [k: string]: unknown;
}

export interface KubeList {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: KubeObject[];
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
export interface KubeWatchEvent {
  type: WatchEventType;
  object: KubeObject & { code?: number; reason?: string; message?: string };
}

export interface KubeWatchStream {
  /** Resolves when the stream ends: server closed it (timeoutSeconds), error, or close(). */
  readonly done: Promise<{ error?: Error }>;
  close(): void;
}

export class KubeClient {
  private readonly base: URL;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly maxLineBytes: number;
  private fileToken: { value: string; readAtMs: number } | undefined;

  constructor(private readonly opts: KubeClientOptions) {
    this.base = new URL(opts.server);
    this.timeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.maxResponseBytes = opts.maxResponseBytes ?? 256 * 1024 * 1024;
    this.maxLineBytes = opts.maxLineBytes ?? 16 * 1024 * 1024;
  }

  private open(pathAndQuery: string, timeoutMs: number | undefined): ClientRequest {
    const https = this.base.protocol === 'https:';
    const headers: Record<string, string> = { accept: 'application/json' };
    const token = this.currentToken();
    if (token) headers.authorization = `Bearer ${token}`;
    const req = (https ? httpsRequest : httpRequest)({
      host: this.base.hostname.replace(/^\[|\]$/g, ''),
      port: this.base.port === '' ? (https ? 443 : 80) : Number(this.base.port),
      path: this.base.pathname.replace(/\/$/, '') + pathAndQuery,
      method: 'GET',
      headers,
      timeout: timeoutMs,
      ...(https ? { ca: this.opts.ca, rejectUnauthorized: this.opts.insecureSkipVerify !== true } : {}),
    });
    req.end();
    return req;
  }

  private currentToken(): string | undefined {
    if (this.opts.tokenFile === undefined) return this.opts.token;
    const now = Date.now();
    if (!this.fileToken || now - this.fileToken.readAtMs > 60_000) {
      try {
        this.fileToken = { value: readFileSync(this.opts.tokenFile, 'utf8').trim(), readAtMs: now };
      } catch (e) {
        // Keep using the last token we had; the API server will say 401 if it expired.
        if (!this.fileToken) throw new KubeUnavailableError(`cannot read token file ${this.opts.tokenFile}: ${(e as Error).message}`, { cause: e });
      }
    }
    return this.fileToken?.value;
  }

  /** GET returning parsed JSON; non-2xx is a KubeStatusError. */
  get(pathAndQuery: string, signal?: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new KubeUnavailableError(`GET ${pathAndQuery}: aborted`));
      const req = this.open(pathAndQuery, this.timeoutMs);
      // Stopping the watcher must not wait for a slow list to finish.
      const onAbort = (): void => {
        req.destroy(new KubeUnavailableError(`GET ${pathAndQuery}: aborted`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('close', () => signal?.removeEventListener('abort', onAbort));
      req.on('timeout', () => req.destroy(new KubeUnavailableError(`GET ${pathAndQuery} timed out after ${this.timeoutMs}ms`)));
      req.on('error', (e) => reject(e instanceof KubeUnavailableError || e instanceof KubeLimitError ? e : new KubeUnavailableError(`GET ${pathAndQuery}: ${e.message}`, { cause: e })));
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > this.maxResponseBytes) req.destroy(new KubeLimitError(`GET ${pathAndQuery}: answer exceeds ${this.maxResponseBytes} bytes`));
          else chunks.push(c);
        });
        res.on('error', (e) => reject(new KubeUnavailableError(`GET ${pathAndQuery}: ${e.message}`, { cause: e })));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) >= 300) {
            reject(new KubeStatusError(res.statusCode ?? 0, `GET ${pathAndQuery}: HTTP ${res.statusCode}: ${statusMessage(text)}`));
            return;
          }
          try {
            resolve(JSON.parse(text) as unknown);
          } catch {
            reject(new KubeUnavailableError(`GET ${pathAndQuery}: answer is not JSON`));
          }
        });
      });
    });
  }

  /**
   * Opens a watch. Events are delivered in order through onEvent; a non-200 answer ends the
   * stream with a KubeStatusError (410 when the resourceVersion is too old).
   */
  watch(pathAndQuery: string, onEvent: (e: KubeWatchEvent) => void): KubeWatchStream {
    let req: ClientRequest | undefined;
    let closed = false;
    const done = new Promise<{ error?: Error }>((resolve) => {
      let settled = false;
      const finish = (error?: Error): void => {
        if (settled) return;
        settled = true;
        resolve(error ? { error } : {});
      };
      try {
        req = this.open(pathAndQuery, undefined);
      } catch (e) {
        finish(e as Error);
        return;
      }
      // Connect timeout only; the stream itself may idle (the informer watches for stalls).
      const timer = setTimeout(() => req?.destroy(new KubeUnavailableError(`watch ${pathAndQuery}: no answer within ${this.timeoutMs}ms`)), this.timeoutMs);
      req.on('error', (e) => {
        clearTimeout(timer);
        finish(closed ? undefined : e);
      });
      let response: IncomingMessage | undefined;
      req.on('close', () => {
        clearTimeout(timer);
        // A body cut before its last chunk is a broken connection, not the server's clean end.
        finish(!closed && response && !response.complete ? new KubeUnavailableError(`watch ${pathAndQuery}: stream cut`) : undefined);
      });
      req.on('response', (res: IncomingMessage) => {
        response = res;
        clearTimeout(timer);
        res.socket.setKeepAlive(true, 15_000);
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            if (chunks.length < 64) chunks.push(c);
          });
          res.on('end', () => finish(new KubeStatusError(res.statusCode ?? 0, `watch ${pathAndQuery}: HTTP ${res.statusCode}: ${statusMessage(Buffer.concat(chunks).toString())}`)));
          res.on('error', (e) => finish(e));
          return;
        }
        res.setEncoding('utf8');
        let buf = '';
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while (!closed && (nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (line === '') continue;
            let ev: KubeWatchEvent;
            try {
              ev = JSON.parse(line) as KubeWatchEvent;
            } catch {
              req?.destroy();
              finish(new KubeUnavailableError(`watch ${pathAndQuery}: unreadable event ${line.slice(0, 100)}`));
              return;
            }
            if (ev === null || typeof ev !== 'object' || typeof ev.type !== 'string' || ev.object === null || typeof ev.object !== 'object') continue;
            onEvent(ev);
          }
          if (buf.length > this.maxLineBytes) {
            req?.destroy();
            finish(new KubeLimitError(`watch ${pathAndQuery}: event exceeds ${this.maxLineBytes} bytes`));
          }
        });
        res.on('error', (e) => finish(closed ? undefined : e));
        res.on('close', () => finish(!closed && !res.complete ? new KubeUnavailableError(`watch ${pathAndQuery}: stream cut`) : undefined));
      });
    });
    return {
      done,
      close: () => {
        closed = true;
        req?.destroy();
      },
    };
  }
}

function statusMessage(text: string): string {
  try {
    const o = JSON.parse(text) as { message?: unknown };
    if (typeof o.message === 'string') return o.message;
  } catch {
    // not a Status object
  }
  return text.slice(0, 200);
}
