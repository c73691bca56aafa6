// Base error type for the whole project. Every failure an operator or caller can act on is a
// subclass with a stable `code` (for programs) and a message prefixed by its subsystem
// (for people): `rpc: deadline exceeded after 500ms`.

export interface ErrorOptions {
  cause?: unknown;
}

export class ContainerStackError extends Error {
  /** Stable, machine-readable identifier, e.g. `RPC_DEADLINE`. Never changes once released. */
  readonly code: string;
  /** The library that raised it: `rpc`, `raft`, `config`, ... */
  readonly subsystem: string;

  constructor(subsystem: string, code: string, message: string, options?: ErrorOptions) {
    super(`${subsystem}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.subsystem = subsystem;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message };
  }
}

/**
 * Declares an error class in one line while keeping one class per failure:
 *   export class DeadlineError extends defineError('rpc', 'RPC_DEADLINE') {}
 * Subclasses may add fields and their own constructor that calls super(message, options).
 */
export function defineError(subsystem: string, code: string) {
  return class extends ContainerStackError {
    constructor(message: string, options?: ErrorOptions) {
      super(subsystem, code, message, options);
    }
  };
}

/** An invariant was broken: a bug in this code, never an operating condition. */
export class AssertionFailedError extends defineError('assert', 'ASSERTION_FAILED') {}

/** Configuration could not be loaded or a field is invalid; `field` names it. */
export class ConfigError extends defineError('config', 'CONFIG_INVALID') {
  constructor(
    readonly field: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(field === '' ? message : `${field}: ${message}`, options);
  }
}

/** A bounded structure was asked to hold more than its limit. */
export class LimitExceededError extends defineError('limit', 'LIMIT_EXCEEDED') {
  constructor(
    readonly limitName: string,
    readonly limit: number,
    options?: ErrorOptions,
  ) {
    super(`${limitName} exceeds its limit of ${limit}`, options);
  }
}

export function isContainerStackError(e: unknown): e is ContainerStackError {
  return e instanceof ContainerStackError;
}

/** Best-effort text for logging an unknown thrown value. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
