// A small node:http server per test, answering whatever the test needs on demand, and recording
// every request it receives.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** `performance.now()` when the request arrived. */
  at: number;
}

export type Handler = (
  req: IncomingMessage & { body: string },
  res: ServerResponse,
  index: number,
) => void | Promise<void>;

export interface LocalServer {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function startLocalServer(handler: Handler): Promise<LocalServer> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const index = requests.length;
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, at: performance.now() });
      Promise.resolve(handler(Object.assign(req, { body }), res, index)).catch((error: unknown) => {
        res.destroy(error instanceof Error ? error : new Error(String(error)));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers JSON with a request id, like the real server. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string | number> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-request-id': `req-${Math.random().toString(36).slice(2, 10)}`,
    ...headers,
  });
  res.end(text);
}

/** The API's error body. */
export function apiError(code: string, message: string, details: unknown = null) {
  return { error: { code, message, details } };
}

export const MODEL_LIST = {
  object: 'list',
  data: [
    {
      id: 'demo-tiny',
      object: 'model',
      size_bytes: 1234,
      modified_at: '2026-11-28T06:00:00.000Z',
      loaded: false,
      state: 'available',
      invalid_reason: null,
      architecture: 'llama',
      context_length: 512,
      parameter_count: 1000,
      file_type: 'Q8_0',
    },
  ],
};

/** Rate-limit headers as the server sends them. */
export function rateLimitHeaders(limit: number, remaining: number, resetUnixSeconds: number) {
  return {
    'x-ratelimit-limit': limit,
    'x-ratelimit-remaining': remaining,
    'x-ratelimit-reset': resetUnixSeconds,
  };
}
