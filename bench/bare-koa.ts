/**
 * The HTTP floor's baseline: a bare Koa app on the same Node, answering `GET /api/v1/models` with a
 * fixed body (the one our server gave, from BARE_MODELS_BODY) and `GET /health` with a small JSON.
 * No middleware at all. Prints `listening on <url>` on stdout. Used by bench/http-floor.ts.
 */
import Koa from 'koa';

const modelsBody = JSON.parse(process.env.BARE_MODELS_BODY ?? '{"object":"list","data":[]}') as unknown;
// The response headers our server sent with that body (BARE_HEADERS, a JSON object), for
// `/with-headers/api/v1/models`: what answering with them alone costs Koa (a fresh request id each time).
const extraHeaders = Object.entries(JSON.parse(process.env.BARE_HEADERS ?? '{}') as Record<string, string>);
const startedAt = Date.now();
const app = new Koa();
app.use((ctx) => {
  if (ctx.method !== 'GET') return;
  if (ctx.path === '/api/v1/models') ctx.body = modelsBody;
  else if (ctx.path === '/with-headers/api/v1/models') {
    for (const [name, value] of extraHeaders) ctx.set(name, name === 'x-request-id' ? crypto.randomUUID() : value);
    ctx.body = modelsBody;
  }
  else if (ctx.path === '/health') ctx.body = { status: 'ok', version: 'bare', uptime_seconds: (Date.now() - startedAt) / 1000 };
});
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  process.stdout.write(`listening on http://127.0.0.1:${address.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
