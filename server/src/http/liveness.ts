import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../logging/logger.js';
import type { Telemetry } from '../observability/telemetry.js';
import { livenessBody } from '../routes/health.js';
import type { RouteDeps } from '../routes/deps.js';
import type { Drain } from './drain.js';
import { requestIdOf, standardHeaders } from './front.js';
import { logRequest } from './request-log.js';

export interface LivenessOptions {
  deps: Pick<RouteDeps, 'version' | 'startedAt'>;
  logger: Logger;
  telemetry: Telemetry;
  hsts: boolean;
  /** Koa's `proxy` ([server] trust_proxy): the client's address may then come from X-Forwarded-For. */
  proxy: boolean;
  drain?: Drain;
}

/** The route template the probe counts under in the metrics, as the Koa route does. */
const ROUTE = '/health';
const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * `GET /health`, the liveness probe (orchestrators send it every few seconds, load balancers more
 * often), answered in the server's request listener before Koa: it needs no credentials, no rate
 * limit and no routing. It sends what the Koa route sends, byte for byte but the date and the
 * request id: the same status, headers (`front`'s, then Content-Type and Content-Length) and body;
 * it counts in the metrics under the same route and writes the same access log line.
 *
 * Anything that could make the answer differ goes the full way through Koa instead: another
 * method or path (a query string too), an `Origin` (CORS), an `X-Forwarded-For` behind a trusted
 * proxy (the logged address), the drain (503). Returns whether it answered. Not used when tracing
 * is on (the request's span is Koa's).
 */
export function liveness(options: LivenessOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { deps, logger, telemetry, proxy, drain } = options;
  const fixed = standardHeaders(options).flat();
  return (req, res) => {
    if (req.method !== 'GET' || req.url !== ROUTE || drain?.draining) return false;
    const { headers } = req;
    if (headers.origin !== undefined || (proxy && headers['x-forwarded-for'] !== undefined)) return false;
    const started = process.hrtime.bigint();
    telemetry.httpStarted();
    const requestId = requestIdOf(req);
    const ip = req.socket.remoteAddress ?? '';
    const body = JSON.stringify(livenessBody(deps));
    res.writeHead(200, ['X-Request-Id', requestId, ...fixed, 'Content-Type', JSON_TYPE, 'Content-Length', String(Buffer.byteLength(body))]);
    res.end(body);
    // Counted and logged once the response is over, as requestLog does.
    res.once('close', () => {
      const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
      telemetry.httpFinishedOn(ROUTE, 'GET', 200, elapsedMs / 1000);
      logRequest(logger, { requestId, ip, method: 'GET', path: ROUTE, status: 200 }, elapsedMs);
    });
    return true;
  };
}
