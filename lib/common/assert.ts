// Assertions state invariants. A failed assertion is a bug in this code and throws
// AssertionFailedError; operating errors (bad input, a dead peer) are values or typed errors.
import { AssertionFailedError } from './errors.js';

export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionFailedError(message);
}

export function assertSafeInteger(n: number, what: string): void {
  if (!Number.isSafeInteger(n)) throw new AssertionFailedError(`${what} is not a safe integer: ${n}`);
}

export function assertNever(x: never, what = 'value'): never {
  throw new AssertionFailedError(`unexpected ${what}: ${JSON.stringify(x)}`);
}
