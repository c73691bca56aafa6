// Typed configuration from three sources with fixed precedence: defaults < config file < env <
// flags. The library never reads process.env or argv itself: cmd/ passes them in. Every
// rejection is a ConfigError naming the field and the source it came from.
import { readFileSync } from 'node:fs';
import { ConfigError } from './errors.js';

export type FieldType = 'string' | 'int' | 'number' | 'boolean' | 'string[]' | 'duration' | 'bytes' | 'hostport';

interface FieldBase {
  description: string;
  /** Environment variable that sets the field (e.g. `CONTAINERDNS_LISTEN`). */
  env?: string;
  required?: boolean;
}

export interface StringField extends FieldBase { type: 'string'; default?: string; enum?: readonly string[] }
export interface IntField extends FieldBase { type: 'int'; default?: number; min?: number; max?: number }
export interface NumberField extends FieldBase { type: 'number'; default?: number; min?: number; max?: number }
export interface BooleanField extends FieldBase { type: 'boolean'; default?: boolean }
export interface StringListField extends FieldBase { type: 'string[]'; default?: readonly string[]; maxItems?: number }
/** Milliseconds; accepts numbers (ms) or strings like `250ms`, `2s`, `1m`, `1h`. */
export interface DurationField extends FieldBase { type: 'duration'; default?: number; min?: number; max?: number }
/** Bytes; accepts numbers or strings like `4KiB`, `64MiB`, `1GiB`, `10MB`. */
export interface BytesField extends FieldBase { type: 'bytes'; default?: number; min?: number; max?: number }
/** `host:port`, `[v6]:port` or `:port`; the port must be 0..65535. */
export interface HostPortField extends FieldBase { type: 'hostport'; default?: string }

export type FieldSpec =
  | StringField
  | IntField
  | NumberField
  | BooleanField
  | StringListField
  | DurationField
  | BytesField
  | HostPortField;

export type ConfigSpec = Record<string, FieldSpec>;

type ValueOf<F extends FieldSpec> = F extends { type: 'boolean' }
  ? boolean
  : F extends { type: 'string[]' }
    ? string[]
    : F extends { type: 'int' | 'number' | 'duration' | 'bytes' }
      ? number
      : string;

type IsPresent<F extends FieldSpec> = F extends { required: true } ? true : F extends { default: unknown } ? true : false;

export type ConfigOf<S extends ConfigSpec> = {
  [K in keyof S]: IsPresent<S[K]> extends true ? ValueOf<S[K]> : ValueOf<S[K]> | undefined;
};

export interface ConfigSources {
  /** Parsed config file contents (see loadConfigFile). */
  file?: Record<string, unknown>;
  /** Usually process.env, passed in by cmd/. */
  env?: Record<string, string | undefined>;
  /** Flags already parsed by the CLI; undefined values are ignored. Keys are field names. */
  flags?: Record<string, unknown>;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const BYTE_UNITS: Record<string, number> = {
  '': 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
};

export function parseDurationMs(v: unknown, field = ''): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(v);
    if (m) return Number(m[1]) * (DURATION_UNITS[m[2] ?? 'ms'] ?? 1);
  }
  throw new ConfigError(field, `expected a duration like 500ms, 2s or 1m, got ${JSON.stringify(v)}`);
}

export function parseBytes(v: unknown, field = ''): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
    const unit = BYTE_UNITS[(m?.[2] ?? '').toLowerCase()];
    if (m && unit !== undefined) return Math.round(Number(m[1]) * unit);
  }
  throw new ConfigError(field, `expected a size like 4096, 64KiB or 1GiB, got ${JSON.stringify(v)}`);
}

export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(v: string, field = '', defaultHost = '127.0.0.1'): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new ConfigError(field, `expected host:port (e.g. 127.0.0.1:7000 or [::1]:7000), got ${JSON.stringify(v)}`);
  }
  const host = m[1] ?? (m[2] === '' || m[2] === undefined ? defaultHost : m[2]);
  return { host, port };
}

function coerce(spec: FieldSpec, raw: unknown, field: string, fromText: boolean): unknown {
  const bad = (what: string): never => {
    throw new ConfigError(field, `expected ${what}, got ${JSON.stringify(raw)}`);
  };
  switch (spec.type) {
    case 'string': {
      if (typeof raw !== 'string') return bad('a string');
      if (spec.enum && !spec.enum.includes(raw)) return bad(`one of ${spec.enum.join(', ')}`);
      return raw;
    }
    case 'int':
    case 'number': {
      const n = typeof raw === 'string' && fromText && raw.trim() !== '' ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isFinite(n)) return bad('a number');
      if (spec.type === 'int' && !Number.isSafeInteger(n)) return bad('an integer');
      return checkRange(spec, n, field);
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return raw;
      if (fromText && typeof raw === 'string') {
        if (/^(1|true|yes|on)$/i.test(raw)) return true;
        if (/^(0|false|no|off)$/i.test(raw)) return false;
      }
      return bad('true or false');
    }
    case 'string[]': {
      let list: unknown = raw;
      if (typeof raw === 'string') list = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
      if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) return bad('a list of strings');
      if (spec.maxItems !== undefined && list.length > spec.maxItems) return bad(`at most ${spec.maxItems} items`);
      return [...list];
    }
    case 'duration':
      return checkRange(spec, parseDurationMs(raw, field), field);
    case 'bytes':
      return checkRange(spec, parseBytes(raw, field), field);
    case 'hostport': {
      if (typeof raw !== 'string') return bad('host:port');
      parseHostPort(raw, field);
      return raw;
    }
  }
}

function checkRange(spec: { min?: number; max?: number }, n: number, field: string): number {
  if (spec.min !== undefined && n < spec.min) throw new ConfigError(field, `must be >= ${spec.min}, got ${n}`);
  if (spec.max !== undefined && n > spec.max) throw new ConfigError(field, `must be <= ${spec.max}, got ${n}`);
  return n;
}

/**
 * Builds a typed config from the sources. Unknown keys in the file are rejected (a typo in a
 * config file should not be silently ignored).
 */
export function parseConfig<S extends ConfigSpec>(spec: S, sources: ConfigSources = {}): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  if (sources.file) {
    for (const key of Object.keys(sources.file)) {
      if (!(key in spec)) {
        throw new ConfigError(key, `unknown field in config file (known: ${Object.keys(spec).join(', ')})`);
      }
    }
  }
  for (const [name, field] of Object.entries(spec)) {
    let value: unknown = field.default === undefined ? undefined : Array.isArray(field.default) ? [...field.default] : field.default;
    const fileVal = sources.file?.[name];
    if (fileVal !== undefined) value = coerce(field, fileVal, name, false);
    const envVal = field.env === undefined ? undefined : sources.env?.[field.env];
    if (envVal !== undefined && envVal !== '') value = coerce(field, envVal, `${name} (env ${field.env})`, true);
    const flagVal = sources.flags?.[name];
    if (flagVal !== undefined) value = coerce(field, flagVal, `${name} (flag)`, typeof flagVal === 'string');
    if (value === undefined && field.required) throw new ConfigError(name, 'is required');
    out[name] = value;
  }
  return out as ConfigOf<S>;
}

/** Reads a JSON config file; errors name the file and say what is wrong with it. */
export function loadConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError('', `cannot read config file ${path}: ${(e as Error).message}`, { cause: e });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError('', `config file ${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('', `config file ${path} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/** One line per field, for --help texts. */
export function describeConfig(spec: ConfigSpec): string {
  const lines: string[] = [];
  for (const [name, f] of Object.entries(spec)) {
    const def = f.default === undefined ? '' : ` (default ${JSON.stringify(f.default)})`;
    const env = f.env ? ` [env ${f.env}]` : '';
    lines.push(`  ${name.padEnd(22)} ${f.type.padEnd(9)} ${f.description}${def}${env}`);
  }
  return lines.join('\n');
}
