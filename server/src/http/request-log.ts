import type { Logger } from '../logging/logger.js';
import type { ServerMetrics } from '../metrics.js';
import type { AppMiddleware } from './context.js';

/**
 * One line per request when the response is finished: time, client IP, user, method, endpoint
 * (path only: query strings can carry anything), status, response time and request id.
 * Never headers, never bodies. The same moment feeds the metrics.
 */
export function requestLog(logger: Logger, metrics: ServerMetrics): AppMiddleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    // Read now: once the client has gone the socket (and so the address) may be gone too.
    const ip = ctx.ip;
    metrics.requestsTotal++;
    metrics.inFlight++;
    let logged = false;
    const log = () => {
      if (logged) return;
      logged = true;
      metrics.inFlight--;
      const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
      metrics.recordResponse(ctx.status, elapsedMs);
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
        },
        'request',
      );
    };
    // 'close' covers clients that go away mid-stream; 'finish' the normal end.
    ctx.res.once('finish', log);
    ctx.res.once('close', log);
    await next();
  };
}
