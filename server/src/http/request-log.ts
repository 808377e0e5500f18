import type { Logger } from '../logging/logger.js';
import type { Telemetry } from '../observability/telemetry.js';
import type { AppMiddleware } from './context.js';

/**
 * One line per request when the response is finished: time, client IP, user, method, endpoint
 * (path only: query strings can carry anything), status, response time and request id; for an
 * inference request also its model, tokens and speed (never its text). Never headers, never
 * bodies. The same moment feeds the metrics.
 */
export function requestLog(logger: Logger, telemetry: Telemetry): AppMiddleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    // Read now: once the client has gone the socket (and so the address) may be gone too.
    const ip = ctx.ip;
    telemetry.httpStarted();
    // Logged once the response is over (finished, or the client left) and the route has returned:
    // a cancelled stream's generation ends after its client has gone, and its tokens belong here.
    let responseOver = false;
    let handled = false;
    let logged = false;
    const log = () => {
      if (logged || !responseOver || !handled) return;
      logged = true;
      const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
      telemetry.httpFinished(ctx, elapsedMs / 1000);
      logger.info(
        {
          request_id: ctx.state.requestId,
          ip,
          user_id: ctx.state.principal?.user.id ?? null,
          key_id: ctx.state.principal?.apiKey?.id ?? null,
          method: ctx.method,
          endpoint: ctx.path,
          status: ctx.status,
          response_time_ms: Number(elapsedMs.toFixed(2)),
          ...ctx.state.inference,
        },
        'request',
      );
    };
    const over = () => {
      responseOver = true;
      log();
    };
    // 'close' covers clients that go away mid-stream; 'finish' the normal end.
    ctx.res.once('finish', over);
    ctx.res.once('close', over);
    try {
      await next();
    } finally {
      handled = true;
      // Koa writes the body after the middleware returns: usually the response is not over yet.
      log();
    }
  };
}
