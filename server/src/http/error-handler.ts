import type { Logger } from '../logging/logger.js';
import type { AppMiddleware } from './context.js';
import { ApiError } from './errors.js';

/**
 * Turns every thrown error into the documented body `{"error": {code, message, details}}`.
 * Unexpected errors are logged (redacted) and answered as INTERNAL_ERROR without internals.
 */
export function errorHandler(logger: Logger): AppMiddleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (thrown) {
      const error = toApiError(thrown);
      if (error.status >= 500) {
        logger.error({ err: thrown, request_id: ctx.state.requestId }, 'request failed');
      }
      if (ctx.headerSent || !ctx.writable) return;
      ctx.status = error.status;
      for (const [name, value] of Object.entries(error.headers)) ctx.set(name, value);
      ctx.body = { error: { code: error.code, message: error.message, details: error.details } };
    }
  };
}

function toApiError(thrown: unknown): ApiError {
  if (thrown instanceof ApiError) return thrown;
  const status = (thrown as { status?: unknown } | null)?.status;
  const expose = (thrown as { expose?: unknown } | null)?.expose === true;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return ApiError.fromHttpStatus(status, expose ? String((thrown as Error).message) : 'The request was refused');
  }
  return new ApiError('INTERNAL_ERROR', 'An internal error occurred');
}
