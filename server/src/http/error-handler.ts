import type { Logger } from '../logging/logger.js';
import type { AppContext, AppMiddleware } from './context.js';
import { ApiError } from './errors.js';
import { StreamClosedError } from './event-stream.js';
import { isOpenAIPath, openAIErrorBody } from './openai-errors.js';

/**
 * Turns every thrown error into the documented body `{"error": {code, message, details}}`
 * (under `/v1`, OpenAI's `{"error": {message, type, param, code}}`).
 * Unexpected errors are logged (redacted) and answered as INTERNAL_ERROR without internals.
 */
export function errorHandler(logger: Logger): AppMiddleware {
  return async (ctx, next) => {
    try {
      await next();
    } catch (thrown) {
      if (thrown instanceof StreamClosedError) {
        logger.warn({ err: thrown.reason, request_id: ctx.state.requestId }, 'event stream ended with an error event');
        return;
      }
      // A client that went away (while waiting or mid-stream) is no server failure: nothing to answer.
      if (!ctx.headerSent && !ctx.writable) {
        logger.debug({ request_id: ctx.state.requestId }, 'client closed the connection before the answer');
        return;
      }
      const error = toApiError(thrown);
      // An overload or a drain is expected under load: a warning with its reason, no stack.
      if (error.code === 'SERVICE_UNAVAILABLE') {
        logger.warn({ code: error.code, reason: error.message, request_id: ctx.state.requestId }, 'request refused: service unavailable');
      } else if (error.status >= 500) {
        logger.error({ err: thrown, request_id: ctx.state.requestId }, 'request failed');
      }
      if (ctx.headerSent || !ctx.writable) return;
      ctx.status = error.status;
      for (const [name, value] of Object.entries(error.headers)) ctx.set(name, value);
      ctx.body = errorBody(ctx, error);
    }
  };
}

/** The error body for this request's API family: under /v1 OpenAI clients parse it, so it takes OpenAI's shape. */
export function errorBody(ctx: AppContext, error: ApiError): unknown {
  return isOpenAIPath(ctx.path) ? openAIErrorBody(error) : { error: { code: error.code, message: error.message, details: error.details } };
}

export function toApiError(thrown: unknown): ApiError {
  if (thrown instanceof ApiError) return thrown;
  const status = (thrown as { status?: unknown } | null)?.status;
  const expose = (thrown as { expose?: unknown } | null)?.expose === true;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return ApiError.fromHttpStatus(status, expose ? String((thrown as Error).message) : 'The request was refused');
  }
  return new ApiError('INTERNAL_ERROR', 'An internal error occurred');
}
