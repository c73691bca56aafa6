// What every daemon shares: config from file + env + flags, a logger, a metrics registry,
// the admin endpoint (/metrics, /health, /ready), and signal handling that shuts down cleanly
// on SIGINT/SIGTERM (a second signal forces the exit).
import {
  createLogger, createRegistry, loadConfigFile, parseConfig, startAdminServer, parseHostPort, errorMessage,
  type AdminServer, type ConfigOf, type ConfigSpec, type HealthReport, type Logger, type LogLevel, type Registry,
} from '../../lib/common/index.js';

export interface DaemonContext<S extends ConfigSpec> {
  config: ConfigOf<S>;
  log: Logger;
  registry: Registry;
}

/** Loads config (file named by flags.config, then env, then flags) or exits with a clear message. */
export function loadDaemonConfig<S extends ConfigSpec>(name: string, spec: S, flags: Record<string, unknown>): ConfigOf<S> {
  try {
    const file = typeof flags.config === 'string' ? loadConfigFile(flags.config) : undefined;
    const { config: _c, ...rest } = flags;
    return parseConfig(spec, { ...(file ? { file } : {}), env: process.env, flags: rest });
  } catch (err) {
    console.error(`${name}: ${errorMessage(err)}`);
    process.exit(2);
  }
}

export interface RunOptions {
  name: string;
  logLevel: LogLevel;
  adminListen: string;
  /** Starts the work; returns a function that stops it. */
  start: (ctx: { log: Logger; registry: Registry }) => Promise<() => Promise<void>>;
  health?: () => HealthReport | Promise<HealthReport>;
  ready?: () => boolean;
  shutdownTimeoutMs?: number;
  /**
   * Runs (synchronously) when stop() did not finish within shutdownTimeoutMs, just before the
   * process exits: what must not be left behind, whatever stop() was waiting for (a mount).
   */
  onShutdownTimeout?: () => void;
}

export async function runDaemon(opts: RunOptions): Promise<{ admin: AdminServer; log: Logger }> {
  const log = createLogger({ name: opts.name, level: opts.logLevel });
  const registry = createRegistry({ labels: { daemon: opts.name } });
  let stop: (() => Promise<void>) | undefined;
  let stopping = false;
  const { host, port } = parseHostPort(opts.adminListen, 'adminListen');
  let admin: AdminServer;
  try {
    stop = await opts.start({ log, registry });
    admin = await startAdminServer({
      host, port, registry, logger: log,
      ...(opts.health ? { health: opts.health } : {}),
      ready: () => !stopping && (opts.ready ? opts.ready() : true),
    });
  } catch (err) {
    log.fatal({ err }, `${opts.name}: failed to start`);
    console.error(`${opts.name}: failed to start: ${errorMessage(err)}`);
    if (stop) await stop().catch(() => undefined);
    log.flush();
    process.exit(1);
  }
  const shutdown = (signal: string): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      log.flush();
      process.exit(130);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      log.error('shutdown timed out; exiting');
      try {
        opts.onShutdownTimeout?.();
      } catch (err) {
        log.error({ err }, 'shutdown: last-resort cleanup failed');
      }
      log.flush();
      process.exit(1);
    }, opts.shutdownTimeoutMs ?? 10_000);
    timer.unref();
    (async () => {
      await stop?.();
      await admin.close();
    })().then(
      () => {
        log.info('stopped');
        log.flush();
        process.exitCode = 0;
        clearTimeout(timer);
        // Give pino's async destination a moment to write, then leave even if a handle lingers.
        setTimeout(() => process.exit(0), 50).unref();
      },
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        log.flush();
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  return { admin, log };
}
