// Public API of containerstack/common: the pieces every library and daemon shares.
export { ContainerStackError, defineError, AssertionFailedError, ConfigError, LimitExceededError, isContainerStackError, errorMessage } from './errors.js';
export type { ErrorOptions } from './errors.js';
export { assert, assertSafeInteger, assertNever } from './assert.js';
export { systemClock, ManualClock } from './clock.js';
export type { Clock } from './clock.js';
export { Prng, randomSeed } from './prng.js';
export { parseConfig, loadConfigFile, describeConfig, parseDurationMs, parseBytes, parseHostPort } from './config.js';
export type { ConfigSpec, ConfigOf, ConfigSources, FieldSpec, FieldType, HostPort } from './config.js';
export { createLogger, silentLogger, LOG_LEVELS } from './log.js';
export type { Logger, LogLevel, LoggerOptions } from './log.js';
export { createRegistry, Counter, Gauge, Histogram, Summary, LATENCY_BUCKETS_S } from './metrics.js';
export type { Registry } from './metrics.js';
export { startAdminServer } from './http.js';
export type { AdminServer, AdminServerOptions, HealthReport, HealthState, RouteHandler } from './http.js';
export { LruMap, BoundedQueue } from './bounded.js';
export { sleep, withTimeout, jitteredBackoffMs } from './async.js';
export { buildNativeAddon, compileNative, loadNativeAddon, disableNativeAddons } from './native.js';
export type { NativeAddonSpec, NativeBuild, NativeCompileSpec, NativeLoad } from './native.js';
