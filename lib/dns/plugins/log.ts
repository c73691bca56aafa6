// log: one structured line per query at debug level. When debug is off the plugin removes
// itself from the chain, so it costs nothing on the hot path.
import type { Handler, Plugin } from '../chain.js';
import { isPromise } from '../chain.js';
import type { Logger } from '../../common/index.js';
import { RCODE_NAMES, TYPE_NAMES } from '../wire.js';

export function logPlugin(log: Logger): Plugin {
  return (next: Handler): Handler => {
    if (!log.isLevelEnabled('debug')) return next;
    return (ctx) => {
      const entry = { client: ctx.client, transport: ctx.transport, name: ctx.q.name(ctx.msg), type: TYPE_NAMES[ctx.q.qtype] ?? ctx.q.qtype };
      const t0 = performance.now();
      const done = (b: Buffer | null): Buffer | null => {
        const rcode = b && b.length >= 4 ? (RCODE_NAMES[b[3]! & 0xf] ?? b[3]! & 0xf) : 'dropped';
        log.debug({ ...entry, rcode, cached: ctx.cacheHit, ms: Math.round((performance.now() - t0) * 1000) / 1000 }, 'dns query');
        return b;
      };
      const r = next(ctx);
      return isPromise(r) ? r.then(done) : done(r);
    };
  };
}
