import { Router } from '@koa/router';
import type { AppState } from './context.js';

/**
 * How many (method, path) matches a router keeps: a match tests every route's pattern in turn, and
 * the same few paths come again and again. Past the bound they are all forgotten at once (a client
 * sending ever new paths costs what it did without them); paths longer than MATCHED_PATH_MAX are never kept.
 */
const MATCHES_KEPT = 512;
const MATCHED_PATH_MAX = 256;

/**
 * Every router of the app. Paths match exactly (case and trailing slash): the app decides which
 * middleware a path gets (authentication, rate limiting) from its exact spelling, so a route must
 * not also answer to `/API/V1/...` or `/metrics/`. Its matches are remembered (MATCHES_KEPT) and
 * forgotten whenever a route is added.
 */
export function createRouter(prefix?: string): Router<AppState> {
  const router = new Router<AppState>({ sensitive: true, strict: true, ...(prefix && { prefix }) });
  const match = router.match.bind(router);
  const kept = new Map<string, ReturnType<typeof match>>();
  let layers = router.stack.length;
  router.match = (path, method) => {
    if (router.stack.length !== layers) {
      kept.clear();
      layers = router.stack.length;
    }
    if (path.length > MATCHED_PATH_MAX) return match(path, method);
    const key = `${method} ${path}`;
    let found = kept.get(key);
    if (!found) {
      found = match(path, method);
      if (kept.size >= MATCHES_KEPT) kept.clear();
      kept.set(key, found);
    }
    // Copies: the router keeps the lists it hands out on the request (`ctx.matched`), where others add to them.
    return { path: [...found.path], pathAndMethod: [...found.pathAndMethod], route: found.route };
  };
  return router;
}
