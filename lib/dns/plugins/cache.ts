// cache: the wire-level answer cache on the hot path. Key: the lower-cased question bytes, the
// EDNS/DO flags (they change the OPT we append) and the pick variant; value: the encoded answer.
// A hit copies the bytes, patches the ID, writes the client's question bytes back (0x20 case
// echo; owner names point at the question, so they follow) and re-shuffles `all`-mode address
// records. Every index change clears it: correctness over cleverness, changes are rare.
import type { Handler, Plugin, QueryCtx } from '../chain.js';
import { isPromise } from '../chain.js';
import type { ZoneIndex } from '../zoneindex.js';
import { HEADER_LEN } from '../wire.js';

export interface CacheCounts {
  hits: number;
  misses: number;
  entries: number;
}

interface Entry {
  buf: Buffer;
  shufOff: number;
  shufCount: number;
  shufSize: number;
}

export interface CachePluginOptions {
  index: ZoneIndex;
  /** Entries kept; the oldest inserted is evicted first. */
  maxEntries: number;
  /** Returns the pick variant for the key (the pick plugin's prepare). */
  variant: (ctx: QueryCtx) => string;
  random?: () => number;
}

const FLAG_CHARS = ['0', '1', '2', '3'];
// Scratch for re-shuffling records of one answer (records are at most a few dozen bytes each).
const tmp = Buffer.allocUnsafe(65535);

export interface CachePlugin {
  plugin: Plugin;
  counts: CacheCounts;
  clear(): void;
  /** Stops following the index (the plugin is being replaced). */
  dispose(): void;
}

export function cachePlugin(opts: CachePluginOptions): CachePlugin {
  const map = new Map<string, Entry>();
  const counts: CacheCounts = { hits: 0, misses: 0, entries: 0 };
  const random = opts.random ?? Math.random;
  const clear = (): void => {
    map.clear();
    counts.entries = 0;
  };
  const off = opts.index.onChange(clear);

  const materialize = (e: Entry, ctx: QueryCtx): Buffer => {
    const src = e.buf;
    const out = Buffer.allocUnsafe(src.length);
    src.copy(out, 0, 0, src.length);
    const msg = ctx.msg;
    out[0] = msg[0]!;
    out[1] = msg[1]!;
    // RD and CD follow the request, as in a freshly built answer.
    out[2] = (out[2]! & 0xfe) | (msg[2]! & 0x01);
    out[3] = (out[3]! & 0xef) | (msg[3]! & 0x10);
    msg.copy(out, HEADER_LEN, HEADER_LEN, ctx.q.qEnd);
    if (e.shufCount > 1) shuffleRecords(out, e.shufOff, e.shufCount, e.shufSize, random);
    return out;
  };

  const plugin: Plugin = (next: Handler): Handler => (ctx) => {
    const q = ctx.q;
    const variant = opts.variant(ctx);
    const key = q.wireKey + FLAG_CHARS[(q.edns ? 1 : 0) | (q.ednsDo ? 2 : 0)]! + variant;
    const e = map.get(key);
    if (e !== undefined) {
      counts.hits++;
      ctx.cacheHit = true;
      return materialize(e, ctx);
    }
    counts.misses++;
    const startGen = opts.index.gen;
    const r = next(ctx);
    // Asynchronous answers come from the forwarder, which keeps its own TTL-aware cache.
    if (isPromise(r) || r === null || ctx.noCache) return r;
    // An answer built while the index changed under it must not outlive the change.
    if (startGen !== opts.index.gen) return r;
    if (map.size >= opts.maxEntries) {
      const oldest = map.keys().next();
      if (!oldest.done) map.delete(oldest.value);
    }
    map.set(key, { buf: r, shufOff: ctx.shufOff, shufCount: ctx.shufCount, shufSize: ctx.shufSize });
    counts.entries = map.size;
    return r;
  };
  return { plugin, counts, clear, dispose: () => { off(); clear(); } };
}

/** Fisher-Yates over fixed-size records in place. */
function shuffleRecords(buf: Buffer, off: number, count: number, size: number, random: () => number): void {
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    if (j === i) continue;
    const a = off + i * size;
    const b = off + j * size;
    buf.copy(tmp, 0, a, a + size);
    buf.copy(buf, a, b, b + size);
    tmp.copy(buf, b, 0, size);
  }
}
