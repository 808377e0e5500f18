import { pino, type DestinationStream, type Logger } from 'pino';
import { redactText, redactValue } from './redact.js';

export type { Logger };

/**
 * Standard output, written asynchronously and in batches: lines collect until 4 kB or 100 ms,
 * whichever comes first, then go out in one write (one write per line was a tenth of a small
 * request's CPU). Pino flushes what is left synchronously when the process exits; `close()` of
 * the server flushes too.
 */
const BUFFERED_STDOUT = { dest: 1, sync: false, minLength: 4096, periodicFlush: 100 } as const;

/**
 * Marks a record whose strings its maker has redacted already (a flat one: the access log line),
 * so that the logger does not walk it again. A symbol: never written out.
 */
export const REDACTED_ALREADY = Symbol('inferno.redacted');

/**
 * One JSON line per event. Every string that reaches a line is passed through the redaction
 * patterns, and known secret-bearing fields are censored outright, whatever the caller logs
 * (`redactValue`, one walk per record: pino's own `redact` paths walked it a second time).
 */
export function createLogger(level: string, destination?: DestinationStream, buffered = true): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: isoTimeOncePerMs(),
      messageKey: 'msg',
      formatters: {
        level: (label) => ({ level: label }),
        log: (record) => ((record as Record<symbol, unknown>)[REDACTED_ALREADY] === true ? record : (redactValue(record) as Record<string, unknown>)),
      },
      serializers: {
        err: (error: Error) => ({
          type: error?.name,
          message: redactText(String(error?.message ?? error)),
          stack: typeof error?.stack === 'string' ? redactText(error.stack) : undefined,
        }),
      },
      hooks: {
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = redactText(args[i] as string);
          method.apply(this, args);
        },
      },
    },
    // Unbuffered: every line is written before the call returns, so even a kill -9 loses none.
    destination ?? pino.destination(buffered ? BUFFERED_STDOUT : { dest: 1, sync: true }),
  );
}

/**
 * pino's `isoTime` (`,"time":"2026-01-01T00:00:00.000Z"`), formatted once per millisecond: a busy
 * server writes several lines in each (an access line per request), and formatting the date was a
 * fifth of pino's work on such a line.
 */
export function isoTimeOncePerMs(): () => string {
  let at = Number.NaN;
  let text = '';
  return () => {
    const now = Date.now();
    if (now !== at) {
      at = now;
      text = `,"time":"${new Date(now).toISOString()}"`;
    }
    return text;
  };
}

/** Writes out the lines the destination still holds; resolves once they are written (at most 2 s). */
export function flushLogs(logger: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 2_000);
    timer.unref();
    try {
      logger.flush(() => {
        clearTimeout(timer);
        resolve();
      });
    } catch {
      // A destination that is already closed has nothing left to write.
      clearTimeout(timer);
      resolve();
    }
  });
}
