// pick: decides which of a name's healthy addresses this client gets (see picker.ts). It runs
// before the answer cache looks up (the cache calls `prepare`), because the decision is part of
// the cache key: answers are cached per (question, chosen IP), so a hit is still persistent.
import type { Handler, Plugin, QueryCtx } from '../chain.js';
import { Picker } from '../picker.js';
import type { ZoneIndex } from '../zoneindex.js';
import { TYPE } from '../wire.js';

export interface PickPlugin {
  plugin: Plugin;
  /** Sets ctx.pick / ctx.pickSet once per query; returns the cache-key variant. */
  prepare(ctx: QueryCtx): string;
  picker: Picker;
}

export function pickPlugin(index: ZoneIndex, picker: Picker): PickPlugin {
  const prepare = (ctx: QueryCtx): string => {
    if (ctx.pickDone) return ctx.pick;
    ctx.pickDone = true;
    const q = ctx.q;
    if (q.qtype !== TYPE.A && q.qtype !== TYPE.AAAA) return '';
    const msg = ctx.msg;
    const set = index.pickSet(q.wireKey, () => q.name(msg), q.qtype === TYPE.A ? 4 : 6);
    if (set === null) return '';
    ctx.pickSet = set;
    ctx.pick = picker.choose(ctx.client, set, ctx.nowMs);
    return ctx.pick;
  };
  const plugin: Plugin = (next: Handler): Handler => (ctx) => {
    prepare(ctx);
    return next(ctx);
  };
  return { plugin, prepare, picker };
}
