import { pino, type DestinationStream, type Logger } from 'pino';
import { redactText, redactValue } from './redact.js';

export type { Logger };

/**
 * One JSON line per event. Every string that reaches a line is passed through the redaction
 * patterns, and known secret-bearing fields are censored outright, whatever the caller logs.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: 'msg',
      redact: {
        paths: ['password', '*.password', 'token', '*.token', 'key', '*.key', 'authorization', '*.authorization', 'headers', '*.headers', 'jwt_secret', '*.jwt_secret', 'admin_password', '*.admin_password'],
        censor: '[REDACTED]',
      },
      formatters: {
        level: (label) => ({ level: label }),
        log: (record) => redactValue(record) as Record<string, unknown>,
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
          method.apply(this, args.map((arg) => (typeof arg === 'string' ? redactText(arg) : arg)) as Parameters<typeof method>);
        },
      },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
