// List + watch of one Kubernetes resource into a bounded in-memory cache, the way client-go's
// reflector does it: list (paginated) for a resourceVersion, watch from it with bookmarks and a
// server-side timeout, re-watch from the last seen version when the stream ends, relist on 410
// Gone, reconnect with jittered backoff on errors, and treat a silent stream as dead.
import { errorMessage, jitteredBackoffMs, silentLogger, sleep, type Logger } from '../../common/index.js';
import { KubeLimitError, KubeStatusError, type KubeClient, type KubeList, type KubeObject, type KubeWatchEvent } from './client.js';

export interface InformerOptions {
  client: KubeClient;
  /** Collection path, e.g. `/api/v1/services`. */
  path: string;
  /** Server-side watch timeout; the stream then ends cleanly and we re-watch. */
  watchTimeoutSeconds?: number;
  /** No event (bookmarks included) for this long means the stream is dead. */
  stallTimeoutMs?: number;
  pageSize?: number;
  /** Most objects cached; more is logged and the extra objects are ignored. */
  maxObjects?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  logger?: Logger;
  random?: () => number;
  /** Called after the cache changed (a relist or a watch event). */
  onChange: () => void;
}

export interface InformerStats {
  lists: number;
  watches: number;
  gone: number;
  reconnects: number;
  stalls: number;
  bookmarks: number;
  events: number;
}

export const objectKey = (o: KubeObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;

export class Informer {
  /** namespace/name -> object. invariant: size <= maxObjects */
  readonly cache = new Map<string, KubeObject>();
  resourceVersion = '';
  synced = false;
  readonly stats: InformerStats = { lists: 0, watches: 0, gone: 0, reconnects: 0, stalls: 0, bookmarks: 0, events: 0 };
  private stopped = false;
  private readonly abort = new AbortController();
  private stream: { close(): void } | undefined;
  private loopDone: Promise<void> | undefined;
  private readonly log: Logger;
  private overflowLogged = false;

  constructor(private readonly opts: InformerOptions) {
    this.log = (opts.logger ?? silentLogger).child({ resource: opts.path });
  }

  start(): void {
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.stream?.close();
    await this.loopDone;
  }

  private get maxObjects(): number {
    return this.opts.maxObjects ?? 200_000;
  }

  private async list(): Promise<void> {
    const pageSize = this.opts.pageSize ?? 500;
    const next = new Map<string, KubeObject>();
    let cont = '';
    let rv = '';
    // Every page of one list shares the first page's snapshot; `continue` carries it.
    for (let page = 0; page < 100_000; page++) {
      const q = new URLSearchParams({ limit: String(pageSize) });
      if (cont) q.set('continue', cont);
      const l = (await this.opts.client.get(`${this.opts.path}?${q}`, this.abort.signal)) as KubeList;
      for (const item of l.items ?? []) {
        if (next.size >= this.maxObjects) throw new KubeLimitError(`${this.opts.path} has more than ${this.maxObjects} objects`);
        next.set(objectKey(item), item);
      }
      rv = l.metadata?.resourceVersion ?? rv;
      cont = l.metadata?.continue ?? '';
      if (!cont) break;
    }
    this.cache.clear();
    for (const [k, v] of next) this.cache.set(k, v);
    this.resourceVersion = rv;
    this.synced = true;
    this.stats.lists++;
    this.log.debug({ objects: next.size, resourceVersion: rv }, 'kube: listed');
    this.opts.onChange();
  }

  private apply(ev: KubeWatchEvent): 'gone' | 'error' | undefined {
    const rv = ev.object.metadata?.resourceVersion;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const k = objectKey(ev.object);
        if (!this.cache.has(k) && this.cache.size >= this.maxObjects) {
          if (!this.overflowLogged) this.log.error({ maxObjects: this.maxObjects }, 'kube: object limit reached; ignoring new objects');
          this.overflowLogged = true;
        } else this.cache.set(k, ev.object);
        break;
      }
      case 'DELETED':
        this.cache.delete(objectKey(ev.object));
        break;
      case 'BOOKMARK':
        this.stats.bookmarks++;
        if (rv) this.resourceVersion = rv;
        return undefined;
      case 'ERROR':
        // The API server reports an expired resourceVersion as an ERROR event with a 410 Status.
        if (ev.object.code === 410) return 'gone';
        this.log.warn({ status: ev.object.code, message: ev.object.message }, 'kube: watch error event');
        return 'error';
      default:
        return undefined;
    }
    this.stats.events++;
    if (rv) this.resourceVersion = rv;
    this.opts.onChange();
    return undefined;
  }

  private async loop(): Promise<void> {
    const timeoutS = this.opts.watchTimeoutSeconds ?? 300;
    const stallMs = this.opts.stallTimeoutMs ?? timeoutS * 1000 + 30_000;
    const base = this.opts.backoffBaseMs ?? 200;
    const max = this.opts.backoffMaxMs ?? 30_000;
    let needList = true;
    let attempt = 0;
    const backoff = async (): Promise<void> => {
      const ms = jitteredBackoffMs(attempt++, base, max, this.opts.random);
      await sleep(ms, this.abort.signal).catch(() => undefined);
    };
    while (!this.stopped) {
      if (needList) {
        try {
          await this.list();
          needList = false;
        } catch (err) {
          this.log.warn({ err: errorMessage(err) }, 'kube: list failed');
          await backoff();
          continue;
        }
      }
      const q = new URLSearchParams({
        watch: '1',
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: 'true',
        timeoutSeconds: String(timeoutS),
      });
      let outcome: 'gone' | 'error' | undefined;
      let stalled = false;
      let stallTimer: NodeJS.Timeout | undefined;
      const armStall = (): void => {
        if (stallTimer) clearTimeout(stallTimer);
        stallTimer = setTimeout(() => {
          stalled = true;
          s.close();
        }, stallMs);
      };
      let gotAny = false;
      const s = this.opts.client.watch(`${this.opts.path}?${q}`, (ev) => {
        armStall();
        gotAny = true;
        if (outcome) return;
        outcome = this.apply(ev);
        if (outcome) s.close();
      });
      this.stream = s;
      this.stats.watches++;
      armStall();
      const { error } = await s.done;
      if (stallTimer) clearTimeout(stallTimer);
      this.stream = undefined;
      if (this.stopped) return;
      // A stream that delivered something was a success: start the backoff over.
      if (gotAny) attempt = 0;
      if (outcome === 'gone' || (error instanceof KubeStatusError && error.status === 410)) {
        this.stats.gone++;
        this.log.info({ resourceVersion: this.resourceVersion }, 'kube: resourceVersion gone; relisting');
        needList = true;
        continue;
      }
      if (stalled) {
        this.stats.stalls++;
        this.log.warn({ stallMs }, 'kube: watch silent too long; reconnecting');
      }
      if (stalled || error || outcome === 'error') {
        this.stats.reconnects++;
        if (error) this.log.warn({ err: errorMessage(error) }, 'kube: watch failed; reconnecting');
        await backoff();
        continue;
      }
      // A clean end (timeoutSeconds): re-watch at once from where we are.
      attempt = 0;
    }
  }
}
