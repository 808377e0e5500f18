import { randomUUID } from 'node:crypto';
import type { AppMiddleware } from './context.js';

const CLIENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Gives every request an id (the client's, when it sent a sane one) and echoes it in `X-Request-Id`. */
export function requestId(): AppMiddleware {
  return async (ctx, next) => {
    const sent = ctx.get('X-Request-Id');
    ctx.state.requestId = CLIENT_ID.test(sent) ? sent : randomUUID();
    ctx.state.input = {};
    ctx.set('X-Request-Id', ctx.state.requestId);
    await next();
  };
}
