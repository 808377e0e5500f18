// The HTTP layer the generated operations run on: a client with the shape of hey-api's fetch
// client (the operations call its `get`, `post`, ...), built from hey-api's own generated helpers
// (configuration, headers, auth, URL and body serialization, content-type sniffing), which sends
// with `fetch(url, init)`. hey-api's client builds a `Request` first and fetches that, and the
// runtime's `fetch` then builds a second one from it: measured (bench/sdk-overhead.ts) that second
// object is most of the generated path's cost over a raw fetch. The transport needs only what a
// `Request` would tell it: the method and the URL.

import type { Client, Config } from '../gen/client/index.js';
import { createConfig, mergeHeaders } from '../gen/client/index.js';
import { buildUrl, createQuerySerializer, getParseAs, setAuthParams } from '../gen/client/utils.gen.js';
import { getValidRequestBody } from '../gen/core/utils.gen.js';

/** What was sent, as far as the transport cares. */
export interface SentRequest {
  method: string;
  url: string;
}

/** What one operation resolves to: hey-api's `{data, error, request, response}`. */
export interface HttpResult {
  data?: unknown;
  error?: unknown;
  request?: SentRequest;
  response?: Response;
}

type Options = Record<string, unknown> & { headers?: unknown; method?: string };

/** A client for the generated operations: `baseUrl`, default `headers` and a `fetch` to send with. */
export function createHttpClient(settings: { baseUrl: string; headers?: Record<string, string> | undefined; fetch?: typeof fetch | undefined }): Client {
  const defaults = createConfig();
  const config: Config = {
    ...defaults,
    baseUrl: settings.baseUrl.replace(/\/$/, ''),
    headers: mergeHeaders(defaults.headers, settings.headers),
    // Built once: given as options, buildUrl would build it again for every request.
    querySerializer: createQuerySerializer(defaults.querySerializer as Parameters<typeof createQuerySerializer>[0]),
  };

  const request = async (options: Options): Promise<HttpResult> => {
    const opts = { ...config, ...options, headers: mergeHeaders(config.headers, options.headers as Config['headers']) } as Record<string, any>;
    if (opts.security) await setAuthParams(opts as Parameters<typeof setAuthParams>[0]);
    if (opts.body !== undefined && opts.bodySerializer) opts.serializedBody = opts.bodySerializer(opts.body);
    // No body, no Content-Type (a DELETE or a bare POST must not claim JSON).
    if (opts.body === undefined || opts.serializedBody === '') opts.headers.delete('Content-Type');
    const url = buildUrl(opts as Parameters<typeof buildUrl>[0]);
    const sent: SentRequest = { method: String(opts.method ?? 'GET'), url };
    const init: RequestInit & { duplex?: string } = {
      method: sent.method,
      headers: opts.headers,
      body: getValidRequestBody(opts) as BodyInit | null | undefined,
      redirect: 'follow',
    };
    if (opts.signal) init.signal = opts.signal;
    if (opts.duplex) init.duplex = opts.duplex;
    let response: Response;
    try {
      response = await ((opts.fetch as typeof fetch | undefined) ?? settings.fetch ?? globalThis.fetch)(url, init);
    } catch (error) {
      return { error, request: sent };
    }
    try {
      if (!response.ok) {
        const text = await response.text();
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        return { error: parsed ?? text, request: sent, response };
      }
      const parseAs = (opts.parseAs === 'auto' ? getParseAs(response.headers.get('Content-Type')) : opts.parseAs) ?? 'json';
      if (parseAs === 'stream') return { data: response.body, request: sent, response };
      if (response.status === 204 || response.headers.get('Content-Length') === '0') {
        return { data: parseAs === 'text' ? '' : {}, request: sent, response };
      }
      let data: unknown;
      if (parseAs === 'json') {
        const text = await response.text();
        data = text ? JSON.parse(text) : {};
      } else {
        data = await (response as unknown as Record<string, () => Promise<unknown>>)[parseAs]!();
      }
      return { data, request: sent, response };
    } catch (error) {
      // The body broke off, or was not what it claimed (JSON that does not parse).
      return { error, request: sent, response };
    }
  };

  const method = (name: string) => (options: Options) => request({ ...options, method: name });
  return {
    request,
    get: method('GET'),
    post: method('POST'),
    put: method('PUT'),
    patch: method('PATCH'),
    delete: method('DELETE'),
    head: method('HEAD'),
    options: method('OPTIONS'),
    getConfig: () => ({ ...config }),
  } as unknown as Client;
}
