/**
 * A deliberately broken server for the kit's tests: a node:http proxy in front of our real server
 * that hands each answer to `tamper` before passing it on.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxiedAnswer {
  method: string;
  /** Path and query as the client sent them. */
  path: string;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface BrokenProxy {
  url: string;
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive']);

export async function startBrokenProxy(target: string, tamper: (answer: ProxiedAnswer) => void): Promise<BrokenProxy> {
  const server = http.createServer(async (req, res) => {
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k, v]) => !HOP_BY_HOP.has(k) && typeof v === 'string')) as Record<string, string>;
      const upstream = await fetch(target + req.url, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined, redirect: 'manual' });
      const answer: ProxiedAnswer = { method: req.method!, path: req.url!, status: upstream.status, headers: {}, body: Buffer.from(await upstream.arrayBuffer()) };
      upstream.headers.forEach((value, key) => {
        if (!HOP_BY_HOP.has(key) && key !== 'content-encoding') answer.headers[key] = value;
      });
      tamper(answer);
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
    } catch (error) {
      res.writeHead(502).end(String(error));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The body as JSON, changed by `change`, written back. */
export function editJson(answer: ProxiedAnswer, change: (body: any) => unknown) {
  const body = JSON.parse(answer.body.toString('utf8'));
  const replaced = change(body);
  answer.body = Buffer.from(JSON.stringify(replaced === undefined ? body : replaced));
}
