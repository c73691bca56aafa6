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

/**
 * Per question: one slot per EDNS/DO combination, each either the single answer (no picking)
 * or a map from pick variant to answer. Nesting avoids building a concatenated key string per
 * query (V8 must flatten and hash a cons-string on every lookup).
 */
interface Node {
  slots: (Entry | Map<string, Entry> | undefined)[];
}
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
  const map = new Map<string, Node>();
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
    const msg = ctx.msg;
    // TypedArray#set is a plain memcpy, without Buffer#copy's argument handling.
    out.set(src);
    out[0] = msg[0]!;
    out[1] = msg[1]!;
    // RD and CD follow the request, as in a freshly built answer.
    out[2] = (out[2]! & 0xfe) | (msg[2]! & 0x01);
    out[3] = (out[3]! & 0xef) | (msg[3]! & 0x10);
    const qEnd = ctx.q.qEnd;
    for (let i = HEADER_LEN; i < qEnd; i++) out[i] = msg[i]!;
    if (e.shufCount > 1) shuffleRecords(out, e.shufOff, e.shufCount, e.shufSize, random);
    return out;
  };

  const plugin: Plugin = (next: Handler): Handler => (ctx) => {
    const q = ctx.q;
    const variant = opts.variant(ctx);
    const flags = (q.edns ? 1 : 0) | (q.ednsDo ? 2 : 0);
    const node = map.get(q.wireKey);
    const slot = node?.slots[flags];
    const e = slot === undefined ? undefined : slot instanceof Map ? slot.get(variant) : variant === '' ? slot : undefined;
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
    const entry: Entry = { buf: r, shufOff: ctx.shufOff, shufCount: ctx.shufCount, shufSize: ctx.shufSize };
    let n = node;
    if (n === undefined) {
      // Bounded by questions; each question's variants are bounded by the name's IP count.
      if (map.size >= opts.maxEntries) {
        const oldest = map.keys().next();
        if (!oldest.done) {
          counts.entries -= countNode(map.get(oldest.value)!);
          map.delete(oldest.value);
        }
      }
      n = { slots: [undefined, undefined, undefined, undefined] };
      map.set(q.wireKey, n);
    }
    const cur = n.slots[flags];
    if (variant === '') {
      if (!(cur instanceof Map)) {
        if (cur === undefined) counts.entries++;
        n.slots[flags] = entry;
      }
    } else {
      let vm = cur instanceof Map ? cur : undefined;
      if (vm === undefined) {
        vm = new Map();
        n.slots[flags] = vm;
      }
      if (!vm.has(variant)) counts.entries++;
      vm.set(variant, entry);
    }
    return r;
  };
  return { plugin, counts, clear, dispose: () => { off(); clear(); } };
}

function countNode(n: Node): number {
  let c = 0;
  for (const s of n.slots) c += s === undefined ? 0 : s instanceof Map ? s.size : 1;
  return c;
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
