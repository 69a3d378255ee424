// The one structured logger type every Flotilla process takes by injection (pino underneath):
// JSON lines on stderr (or a file), level from FLOTILLA_LOG_LEVEL (default info).
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env.FLOTILLA_LOG_LEVEL ?? 'info', destination: number | string = 2): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination(destination));
}

/** A logger that drops everything (tests that assert on behaviour, not logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
