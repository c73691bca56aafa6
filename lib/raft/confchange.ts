// Encoding of membership changes inside 'confChange' log entries. JSON: small, rare, and easy to
// inspect in a dump of the log.
import { InvalidMessageError } from './errors.js';
import type { ConfChange } from './types.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return enc.encode(JSON.stringify(cc));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  let v: unknown;
  try {
    v = JSON.parse(dec.decode(data));
  } catch (e) {
    throw new InvalidMessageError('conf change entry is not JSON', { cause: e });
  }
  const o = v as { type?: unknown; nodeId?: unknown };
  if (
    typeof o !== 'object' || o === null ||
    (o.type !== 'addNode' && o.type !== 'addLearner' && o.type !== 'removeNode') ||
    typeof o.nodeId !== 'number' || !Number.isSafeInteger(o.nodeId) || o.nodeId <= 0
  ) {
    throw new InvalidMessageError(`bad conf change ${dec.decode(data).slice(0, 100)}`);
  }
  return { type: o.type, nodeId: o.nodeId };
}
