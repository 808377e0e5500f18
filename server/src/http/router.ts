import { Router } from '@koa/router';
import type { AppState } from './context.js';

/**
 * Every router of the app. Paths match exactly (case and trailing slash): the app decides which
 * middleware a path gets (authentication, rate limiting) from its exact spelling, so a route must
 * not also answer to `/API/V1/...` or `/metrics/`.
 */
export function createRouter(prefix?: string): Router<AppState> {
  return new Router<AppState>({ sensitive: true, strict: true, ...(prefix && { prefix }) });
}
