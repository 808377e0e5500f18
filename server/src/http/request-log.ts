import type { ServerResponse } from 'node:http';
import { redactText } from '../logging/redact.js';
import { REDACTED_ALREADY, type Logger } from '../logging/logger.js';
import type { Telemetry } from '../observability/telemetry.js';
import type { AppContext, AppMiddleware } from './context.js';

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
    if (!this.logger.isLevelEnabled('info')) return;
    const principal = ctx.state.principal;
    // Flat, and every string that a client can shape (its request id, its address behind a proxy,
    // the path, an inference's model name) is redacted here: the logger need not walk the record.
    const line: Record<string | symbol, unknown> = {
      request_id: redactText(ctx.state.requestId),
      ip: redactText(this.ip),
      user_id: principal?.user.id ?? null,
      key_id: principal?.apiKey?.id ?? null,
      method: ctx.method,
      endpoint: redactText(ctx.path),
      status: ctx.status,
      response_time_ms: Number(elapsedMs.toFixed(2)),
    };
    const inference = ctx.state.inference;
    if (inference) for (const [key, value] of Object.entries(inference)) line[key] = typeof value === 'string' ? redactText(value) : value;
    line[REDACTED_ALREADY] = true;
    this.logger.info(line, 'request');
  }
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
