// Structured logging (pino, JSON lines). Libraries take a Logger and default to a silent one;
// daemons create the real one.
import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino';

export type Logger = PinoLogger;
export type LogLevel = LevelWithSilent;
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoggerOptions {
  name: string;
  level?: LogLevel;
  /** File descriptor to write to; 2 (stderr) by default so stdout stays for command output. */
  fd?: number;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    { name: opts.name, level: opts.level ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ fd: opts.fd ?? 2, sync: false }),
  );
}

/** A logger that drops everything: the default inside libraries. */
export const silentLogger: Logger = pino({ level: 'silent' });
