import { afterEach, describe, expect, it } from 'vitest';
import { AuthenticationError, InfernoClient, type RateLimitInfo, RateLimitError } from '../src/index.js';
import {
  apiError,
  type LocalServer,
  MODEL_LIST,
  rateLimitHeaders,
  sendJson,
  startLocalServer,
} from './helpers/http.js';

const credentials = { username: 'admin', password: 'admin-password-1' };

/** A server with a login route that issues tok-1, tok-2, ... and accepts only the tokens in `valid`. */
async function authServer(options: { expiresInMs?: number; failLogin?: boolean } = {}) {
  const state = { logins: 0, valid: new Set<string>(), logouts: [] as string[] };
  const server = await startLocalServer((req, res) => {
    if (req.url === '/api/v1/auth/login') {
      const body = JSON.parse(req.body) as { username: string; password: string };
      if (options.failLogin || body.password !== credentials.password) {
        return sendJson(res, 401, apiError('AUTHENTICATION_FAILED', 'Invalid username or password'));
      }
      state.logins++;
      const token = `tok-${state.logins}`;
      state.valid.add(token);
      const expiresAt = new Date(Date.now() + (options.expiresInMs ?? 3_600_000)).toISOString();
      return sendJson(res, 200, { token, expires_at: expiresAt });
    }
    const bearer = req.headers.authorization?.replace(/^Bearer /, '');
    if (req.url === '/api/v1/auth/logout' && bearer && state.valid.has(bearer)) {
      state.valid.delete(bearer);
      state.logouts.push(bearer);
      res.writeHead(204).end();
      return;
    }
    const apiKeyOk = req.headers['x-api-key'] === 'inf_good';
    if (req.url?.startsWith('/health')) return sendJson(res, 200, { status: 'ok', version: '0', uptime_seconds: 1 });
    if (apiKeyOk || (bearer && state.valid.has(bearer))) return sendJson(res, 200, MODEL_LIST);
    return sendJson(res, 401, apiError('AUTHENTICATION_FAILED', 'Token expired or revoked'));
  });
  return { server, state };
}

let server: LocalServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const modelRequests = () => server!.requests.filter((r) => r.url === '/api/v1/models');

describe('API key and token', () => {
  it('sends an API key as X-API-Key only, never as Authorization', async () => {
    ({ server } = await authServer());
    await new InfernoClient({ baseUrl: server.url, apiKey: 'inf_good' }).models.list();
    const { headers } = server.requests[0]!;
    expect(headers['x-api-key']).toBe('inf_good');
    expect(headers.authorization).toBeUndefined();
  });

  it('sends a token as Authorization: Bearer only, never as X-API-Key', async () => {
    let state;
    ({ server, state } = await authServer());
    state.valid.add('jwt-abc');
    await new InfernoClient({ baseUrl: server.url, token: 'jwt-abc' }).models.list();
    const { headers } = server.requests[0]!;
    expect(headers.authorization).toBe('Bearer jwt-abc');
    expect(headers['x-api-key']).toBeUndefined();
  });

  it('sends no credentials to public routes', async () => {
    ({ server } = await authServer());
    await new InfernoClient({ baseUrl: server.url, apiKey: 'inf_good' }).health.check();
    expect(server.requests[0]!.headers['x-api-key']).toBeUndefined();
  });

  it('uses per-request credentials over the client ones', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url, credentials });
    await client.models.list({ apiKey: 'inf_good' });
    expect(state.logins).toBe(0);
    expect(server.requests[0]!.headers['x-api-key']).toBe('inf_good');
  });

  it('throws AuthenticationError on a 401 with a fixed API key, without trying to log in', async () => {
    ({ server } = await authServer());
    const error = await new InfernoClient({ baseUrl: server.url, apiKey: 'inf_revoked' }).models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as AuthenticationError).requestId).toMatch(/^req-/);
    expect(server.requests.map((r) => r.url)).toEqual(['/api/v1/models']);
  });
});

describe('credentials', () => {
  it('logs in when first needed, once for concurrent requests, and sends the token', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url, credentials });
    await client.health.check();
    expect(state.logins).toBe(0); // a public route needs no login
    await Promise.all([client.models.list(), client.models.list(), client.models.list()]);
    expect(state.logins).toBe(1);
    expect(modelRequests().map((r) => r.headers.authorization)).toEqual(Array(3).fill('Bearer tok-1'));
    expect(JSON.parse(server.requests.find((r) => r.url === '/api/v1/auth/login')!.body)).toEqual(credentials);
  });

  it('logs in again after a 401 and retries the request once with the new token', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url, credentials });
    await client.models.list();
    state.valid.delete('tok-1'); // revoked on the server
    await expect(client.models.list()).resolves.toEqual(MODEL_LIST);
    expect(state.logins).toBe(2);
    expect(modelRequests().map((r) => r.headers.authorization)).toEqual([
      'Bearer tok-1',
      'Bearer tok-1',
      'Bearer tok-2',
    ]);
  });

  it('does not loop: a second 401 after the re-login is thrown', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url, credentials });
    // Every token is refused right after it is issued.
    state.valid.add = function (this: Set<string>) {
      return this;
    };
    const error = await client.models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(state.logins).toBe(2);
    expect(modelRequests()).toHaveLength(2);
  });

  it('renews once for many requests that hit the same expired token', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url, credentials });
    await client.models.list();
    state.valid.delete('tok-1');
    await Promise.all([client.models.list(), client.models.list(), client.models.list()]);
    expect(state.logins).toBe(2);
    expect(modelRequests().filter((r) => r.headers.authorization === 'Bearer tok-2')).toHaveLength(3);
  });

  it('logs in before sending when the token has expired', async () => {
    let state;
    ({ server, state } = await authServer({ expiresInMs: -1_000 }));
    const client = new InfernoClient({ baseUrl: server.url, credentials });
    await client.models.list();
    await client.models.list();
    expect(state.logins).toBe(2);
    expect(modelRequests()).toHaveLength(2); // no request went out with a stale token
  });

  it('surfaces a failed login as the error of the request, without retrying it', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url, credentials: { username: 'admin', password: 'wrong' } });
    const error = await client.models.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).toBe('Invalid username or password');
    expect(server.requests.map((r) => r.url)).toEqual(['/api/v1/auth/login']);
    expect(state.logins).toBe(0);
  });
});

describe('client.auth', () => {
  it('login() keeps the token for later requests', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url });
    const token = await client.auth.login(credentials);
    expect(token.token).toBe('tok-1');
    expect(Date.parse(token.expires_at)).toBeGreaterThan(Date.now());
    await client.models.list();
    expect(modelRequests()[0]!.headers.authorization).toBe('Bearer tok-1');
    expect(state.logins).toBe(1);
  });

  it('logout() revokes the token; with credentials the next request logs in again', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url, credentials });
    await client.models.list();
    await client.auth.logout();
    expect(state.logouts).toEqual(['tok-1']);
    await client.models.list();
    expect(state.logins).toBe(2);
    expect(modelRequests().at(-1)!.headers.authorization).toBe('Bearer tok-2');
  });

  it('logout() without a token sends nothing', async () => {
    ({ server } = await authServer());
    await new InfernoClient({ baseUrl: server.url, apiKey: 'inf_good' }).auth.logout();
    expect(server.requests).toHaveLength(0);
  });
});

describe('logins and the throttle', () => {
  /**
   * A server allowing 1 request per wall-clock second for the user, which it says on every
   * response but a login's. Tokens: tok-1, tok-2, ...; only those in `valid` are accepted.
   */
  async function oneRequestPerSecond(expiresInMs: number) {
    const state = { logins: 0, valid: new Set<string>() };
    const server = await startLocalServer((req, res) => {
      if (req.url === '/api/v1/auth/login') {
        const token = `tok-${++state.logins}`;
        state.valid.add(token);
        return sendJson(res, 200, { token, expires_at: new Date(Date.now() + expiresInMs).toISOString() });
      }
      const headers = rateLimitHeaders(1, 0, Math.floor(Date.now() / 1000) + 1);
      const bearer = req.headers.authorization?.replace(/^Bearer /, '');
      if (bearer && state.valid.has(bearer)) return sendJson(res, 200, MODEL_LIST, headers);
      return sendJson(res, 401, apiError('AUTHENTICATION_FAILED', 'Token expired or revoked'), headers);
    });
    return { server, state };
  }

  const settled = <T,>(promise: Promise<T>, ms: number) =>
    Promise.race([promise, new Promise<'still waiting'>((r) => setTimeout(r, ms, 'still waiting'))]);

  it('logs in again after a 401 while the budget is spent, instead of waiting for ever on its own slot', async () => {
    let state;
    ({ server, state } = await oneRequestPerSecond(3_600_000));
    const client = new InfernoClient({ baseUrl: server.url, credentials, maxRetries: 0, rateLimit: { throttle: true } });
    await client.models.list(); // the budget is spent until the next second
    state.valid.delete('tok-1');
    await expect(settled(client.models.list(), 4_000)).resolves.toEqual(MODEL_LIST);
    expect(state.logins).toBe(2);
    expect(modelRequests().map((r) => r.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-1', 'Bearer tok-2']);
  });

  it('logs in again for an expired token while the budget is spent, without waiting on the throttle', async () => {
    let state;
    ({ server, state } = await oneRequestPerSecond(-1_000)); // every token has expired on arrival
    const client = new InfernoClient({ baseUrl: server.url, credentials, maxRetries: 0, rateLimit: { throttle: true } });
    await client.models.list();
    await expect(settled(client.models.list(), 4_000)).resolves.toEqual(MODEL_LIST);
    expect(state.logins).toBe(2);
  });

  it('keeps logins and 401s, counted against the client IP, out of the rate-limit state', async () => {
    const reset = Math.floor(Date.now() / 1000) + 60;
    const state = { valid: new Set<string>(), logins: 0, refuseLogin: false, used: 0 };
    server = await startLocalServer((req, res) => {
      const ipBudget = rateLimitHeaders(10, 0, reset + 30);
      if (req.url === '/api/v1/auth/login') {
        if (state.refuseLogin) {
          return sendJson(res, 429, apiError('RATE_LIMITED', 'Too many logins'), { ...ipBudget, 'retry-after': 90 });
        }
        const token = `tok-${++state.logins}`;
        state.valid.add(token);
        return sendJson(res, 200, { token, expires_at: new Date(Date.now() + 3_600_000).toISOString() }, ipBudget);
      }
      const bearer = req.headers.authorization?.replace(/^Bearer /, '');
      if (!bearer || !state.valid.has(bearer)) {
        return sendJson(res, 401, apiError('AUTHENTICATION_FAILED', 'Token revoked'), ipBudget);
      }
      return sendJson(res, 200, MODEL_LIST, rateLimitHeaders(60, 59 - state.used++, reset));
    });
    const updates: RateLimitInfo[] = [];
    const client = new InfernoClient({
      baseUrl: server.url,
      credentials,
      maxRetries: 0,
      rateLimit: { throttle: true, maxWait: 1_000 },
      onRateLimit: (info) => updates.push(info),
    });
    await client.models.list();
    state.valid.clear(); // 401, then a login, then the repeat
    await client.models.list();
    await client.models.list(); // the throttle follows the user's budget: 57 left, no wait
    expect(updates.map((u) => [u.limit, u.remaining])).toEqual([
      [60, 59],
      [60, 58],
      [60, 57],
    ]);
    // A refused login still tells its own numbers on its error, and leaves the client's alone.
    state.refuseLogin = true;
    const error = (await client.auth.login().catch((e: unknown) => e)) as RateLimitError;
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.rateLimit).toMatchObject({ limit: 10, remaining: 0 });
    expect(client.rateLimit).toMatchObject({ limit: 60, remaining: 57 });
  });
});

describe('login() while a login is under way', () => {
  it('does not hand a login as another user the token of the pending one, nor let it be overwritten', async () => {
    const logins: string[] = [];
    server = await startLocalServer(async (req, res) => {
      if (req.url === '/api/v1/auth/login') {
        const { username } = JSON.parse(req.body) as { username: string };
        logins.push(username);
        // alice's login is the slow one, so that it ends after bob's.
        await new Promise((r) => setTimeout(r, username === 'alice' ? 150 : 10));
        return sendJson(res, 200, { token: `token-of-${username}`, expires_at: new Date(Date.now() + 3_600_000).toISOString() });
      }
      return sendJson(res, 200, MODEL_LIST);
    });
    const client = new InfernoClient({ baseUrl: server.url, credentials: { username: 'alice', password: 'a' } });
    const first = client.models.list(); // logs in as alice
    await expect.poll(() => logins).toEqual(['alice']);
    const bob = await client.auth.login({ username: 'bob', password: 'b' });
    expect(bob.token).toBe('token-of-bob');
    await first;
    await client.models.list();
    expect(logins).toEqual(['alice', 'bob']);
    expect(modelRequests().at(-1)!.headers.authorization).toBe('Bearer token-of-bob');
  });

  it('shares a login under way with the same credentials', async () => {
    let state;
    ({ server, state } = await authServer());
    const client = new InfernoClient({ baseUrl: server.url, credentials });
    const [, token] = await Promise.all([client.models.list(), client.auth.login({ ...credentials })]);
    expect(token.token).toBe('tok-1');
    expect(state.logins).toBe(1);
  });
});
