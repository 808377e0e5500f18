import type { ServerResponse } from 'node:http';
import { redactText } from '../logging/redact.js';
import { REDACTED_ALREADY, type Logger } from '../logging/logger.js';
import type { InferenceLogFields, Telemetry } from '../observability/telemetry.js';
import type { AppContext, AppMiddleware, Principal } from './context.js';

/** The request whose response this is, for the one `close` listener (no closure per request). */
const ENTRY = Symbol('inferno.access');

/** One request on its way to its log line. */
class AccessEntry {
  /** Set once the response is over (finished, or the client left). */
  responseOver = false;
  /** Set once the middleware chain has returned. */
  handled = false;
  logged = false;
  constructor(
    readonly ctx: AppContext,
    readonly started: bigint,
    // Read at once: when the client has gone the socket (and so the address) may be gone too.
    readonly ip: string,
    readonly logger: Logger,
    readonly telemetry: Telemetry,
  ) {}

  log(): void {
    if (this.logged || !this.responseOver || !this.handled) return;
    this.logged = true;
    const { ctx } = this;
    const elapsedMs = Number(process.hrtime.bigint() - this.started) / 1e6;
    this.telemetry.httpFinished(ctx, elapsedMs / 1000);
    const { requestId, principal, inference } = ctx.state;
    logRequest(this.logger, { requestId, ip: this.ip, principal, method: ctx.method, path: ctx.path, status: ctx.status, inference }, elapsedMs);
  }
}

/** What a request's log line tells of it. */
export interface AnsweredRequest {
  requestId: string;
  ip: string;
  principal?: Principal;
  method: string;
  path: string;
  status: number;
  inference?: InferenceLogFields;
}

/** The request's line in the access log (`requestLog`; the liveness probe writes the same). */
export function logRequest(logger: Logger, request: AnsweredRequest, elapsedMs: number): void {
  if (!logger.isLevelEnabled('info')) return;
  const { principal, inference } = request;
  // Flat, and every string that a client can shape (its request id, its address behind a proxy,
  // the path, an inference's model name) is redacted here: the logger need not walk the record.
  const line: Record<string | symbol, unknown> = {
    request_id: redactText(request.requestId),
    ip: redactText(request.ip),
    user_id: principal?.user.id ?? null,
    key_id: principal?.apiKey?.id ?? null,
    method: request.method,
    endpoint: redactText(request.path),
    status: request.status,
    response_time_ms: Number(elapsedMs.toFixed(2)),
  };
  if (inference) for (const [key, value] of Object.entries(inference)) line[key] = typeof value === 'string' ? redactText(value) : value;
  line[REDACTED_ALREADY] = true;
  logger.info(line, 'request');
}

/** The response is over: 'close' follows 'finish' on a normal end, and comes alone when the client goes away mid-stream. */
function onClose(this: ServerResponse & { [ENTRY]?: AccessEntry }) {
  const entry = this[ENTRY];
  if (!entry) return;
  entry.responseOver = true;
  entry.log();
}

/**
 * One line per request when the response is over: time, client IP, user, method, endpoint
 * (path only: query strings can carry anything), status, response time and request id; for an
 * inference request also its model, tokens and speed (never its text). Never headers, never
 * bodies. The same moment feeds the metrics.
 */
export function requestLog(logger: Logger, telemetry: Telemetry): AppMiddleware {
  return async (ctx, next) => {
    const entry = new AccessEntry(ctx, process.hrtime.bigint(), ctx.ip, logger, telemetry);
    telemetry.httpStarted();
    // Logged once the response is over and the route has returned: a cancelled stream's
    // generation ends after its client has gone, and its tokens belong here.
    (ctx.res as ServerResponse & { [ENTRY]?: AccessEntry })[ENTRY] = entry;
    ctx.res.on('close', onClose);
    try {
      await next();
    } finally {
      entry.handled = true;
      // Koa writes the body after the middleware returns: usually the response is not over yet.
      entry.log();
    }
  };
}
