// The HTTP layer the generated operations run on: a client with the shape of hey-api's fetch
// client (the operations call its `get`, `post`, ...) that sends with `fetch(url, init)`.
//
// It does what hey-api's client does with an operation's options (auth per security scheme,
// path and query parameters, JSON bodies, default headers, parsing by content type), built for
// the cost of one call (measured: bench/sdk-js-cost.ts, bench/sdk-overhead.ts):
// - no `Request` object (the runtime's `fetch` builds one from `url, init` anyway);
// - headers as one plain object with lowercased names, not `Headers` objects merged per call;
// - each URL template split once, its parameters filled in by string concatenation; the spec's
//   parameters are all primitives in the default styles (path `simple`, query `form`), and any
//   other value or style goes to hey-api's own serializers, so the result is the same;
// - the credential asked for once per call, and awaited only when it is a promise.

import type { Client, Config } from '../gen/client/index.js';
import { createConfig } from '../gen/client/index.js';
import { buildUrl, createQuerySerializer, getParseAs } from '../gen/client/utils.gen.js';
import type { Auth } from '../gen/core/auth.gen.js';

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

/** The token for one security scheme: hey-api's `auth` option. */
type AuthOption = string | undefined | ((auth: Auth) => string | undefined | Promise<string | undefined>);

/** The options a generated operation passes (hey-api's request options), as far as they are used here. */
interface Options {
  method?: string;
  url: string;
  baseUrl?: string;
  path?: Record<string, unknown>;
  query?: Record<string, unknown>;
  headers?: Record<string, unknown>;
  security?: readonly Auth[];
  auth?: AuthOption;
  body?: unknown;
  bodySerializer?: ((body: unknown) => unknown) | null;
  parseAs?: Config['parseAs'];
  signal?: AbortSignal;
  fetch?: typeof fetch;
  duplex?: string;
}

/** A plain header object: lowercased names, one string value each. */
type HeaderMap = Record<string, string>;

const defaults = createConfig();
const querySerializer = createQuerySerializer(defaults.querySerializer as Parameters<typeof createQuerySerializer>[0]);
const serializeJson = defaults.bodySerializer as (body: unknown) => string;

/** A client for the generated operations: `baseUrl`, default `headers` and a `fetch` to send with. */
export function createHttpClient(settings: {
  baseUrl: string;
  headers?: Record<string, string> | undefined;
  fetch?: typeof fetch | undefined;
}): Client {
  const baseUrl = settings.baseUrl.replace(/\/$/, '');
  // hey-api's default `Content-Type: application/json` (dropped when there is no body), then the client's.
  const clientHeaders = mergeInto(mergeInto({}, defaults.headers as Record<string, unknown>), settings.headers);
  // The same without Content-Type, for requests without a body (a DELETE or a bare POST must not
  // claim JSON). Two copies rather than a `delete` per call: that makes the object a slow dictionary.
  const clientHeadersNoBody = mergeInto({}, clientHeaders, true);
  const clientFetch = settings.fetch;

  const request = async (options: Options): Promise<HttpResult> => {
    const { body } = options;
    const serializer = options.bodySerializer === undefined ? serializeJson : options.bodySerializer;
    let payload: unknown = body;
    if (body !== undefined && serializer) {
      payload = serializer(body);
      if (payload === '' || payload === undefined) payload = null;
    }
    const noBody = body === undefined || (serializer !== null && payload === null);
    const headers: HeaderMap = { ...(noBody ? clientHeadersNoBody : clientHeaders) };
    if (options.headers) mergeInto(headers, options.headers, noBody);
    let query = options.query;
    if (options.security) {
      const authorized = applyAuth(options.security, 0, options.auth, headers, query);
      query = authorized instanceof Promise ? await authorized : authorized;
    }

    const method = options.method ?? 'GET';
    const url = buildRequestUrl(options.baseUrl ?? baseUrl, options.url, options.path, query);
    const sent: SentRequest = { method, url };
    const init: RequestInit & { duplex?: string } = { method, headers };
    if (payload !== undefined) init.body = payload as BodyInit | null;
    if (options.signal) init.signal = options.signal;
    if (options.duplex) init.duplex = options.duplex;
    let response: Response;
    try {
      response = await (options.fetch ?? clientFetch ?? globalThis.fetch)(url, init);
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
      const asked = options.parseAs ?? 'auto';
      const parseAs = (asked === 'auto' ? getParseAs(response.headers.get('content-type')) : asked) ?? 'json';
      if (parseAs === 'stream') return { data: response.body, request: sent, response };
      let data: unknown;
      if (parseAs === 'json' || parseAs === 'text') {
        // An empty body (204, Content-Length: 0) is `{}`, or '' as text, as in hey-api's client.
        const text = response.status === 204 ? '' : await response.text();
        data = parseAs === 'text' ? text : text ? JSON.parse(text) : {};
      } else if (response.status === 204 || response.headers.get('content-length') === '0') {
        data = {};
      } else {
        data = await (response as unknown as Record<string, () => Promise<unknown>>)[parseAs]!();
      }
      return { data, request: sent, response };
    } catch (error) {
      // The body broke off, or was not what it claimed (JSON that does not parse).
      return { error, request: sent, response };
    }
  };

  const method = (name: string) => (options: Options) => {
    options.method = name;
    return request(options);
  };
  return {
    request,
    get: method('GET'),
    post: method('POST'),
    put: method('PUT'),
    patch: method('PATCH'),
    delete: method('DELETE'),
    head: method('HEAD'),
    options: method('OPTIONS'),
    getConfig: () => ({ ...defaults, baseUrl, headers: { ...clientHeaders } }),
  } as unknown as Client;
}

/**
 * Merges `headers` into `into` as hey-api's `mergeHeaders` does into a `Headers` object: names
 * case-insensitive, a later value replaces an earlier one, `null` removes the header, an array
 * gives every value (joined as `fetch` joins repeated headers), an object is sent as JSON.
 * `withoutContentType` leaves Content-Type out.
 */
export function mergeInto(
  into: HeaderMap,
  headers: Record<string, unknown> | Headers | undefined,
  withoutContentType = false,
): HeaderMap {
  if (!headers) return into;
  if (typeof Headers !== 'undefined' && headers instanceof Headers) {
    headers.forEach((value, name) => {
      if (!(withoutContentType && name === 'content-type')) into[name] = value;
    });
    return into;
  }
  for (const name in headers) {
    const value = (headers as Record<string, unknown>)[name];
    if (value === undefined) continue;
    const key = name.toLowerCase();
    if (withoutContentType && key === 'content-type') continue;
    if (value === null) delete into[key];
    else if (Array.isArray(value)) into[key] = value.join(', ');
    else into[key] = typeof value === 'object' ? JSON.stringify(value) : String(value);
  }
  return into;
}

/**
 * Sets the credential of each security scheme the operation accepts (from the `from`th on), as
 * hey-api's `setAuthParams` does: skipped when the request already carries that header, query
 * parameter or cookie; `Bearer`/`Basic` prefixes by scheme. Returns the query (a credential may
 * go there); a promise only when a token is one (the client is logging in).
 */
function applyAuth(
  security: readonly Auth[],
  from: number,
  auth: AuthOption,
  headers: HeaderMap,
  query: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined | Promise<Record<string, unknown> | undefined> {
  for (let i = from; i < security.length; i++) {
    const scheme = security[i]!;
    const name = scheme.name;
    if (name && (headers[lower(name)] !== undefined || query?.[name] || headers.cookie?.includes(`${name}=`))) continue;
    const token = typeof auth === 'function' ? auth(scheme) : auth;
    if (token instanceof Promise) {
      return token.then((value: string | undefined) => {
        query = setToken(scheme, value, headers, query);
        return applyAuth(security, i + 1, auth, headers, query);
      });
    }
    query = setToken(scheme, token, headers, query);
  }
  return query;
}

function setToken(scheme: Auth, token: string | undefined, headers: HeaderMap, query: Record<string, unknown> | undefined) {
  if (!token) return query;
  if (scheme.scheme === 'bearer') token = `Bearer ${token}`;
  else if (scheme.scheme === 'basic') token = `Basic ${btoa(token)}`;
  const name = scheme.name ?? 'Authorization';
  if (scheme.in === 'query') return { ...query, [name]: token };
  if (scheme.in === 'cookie') headers.cookie = headers.cookie === undefined ? `${name}=${token}` : `${headers.cookie}, ${name}=${token}`;
  else headers[lower(name)] = token;
  return query;
}

// Header names of security schemes, lowercased once.
const lowered = new Map<string, string>();
function lower(name: string): string {
  let result = lowered.get(name);
  if (result === undefined) {
    result = name.toLowerCase();
    lowered.set(name, result);
  }
  return result;
}

/** A URL template split at its parameters: literal, name, literal, ...; `null` when it uses a style other than `simple`. */
type Template = string[] | null;
const templates = new Map<string, Template>();

function compile(url: string): Template {
  const parts: string[] = [];
  let rest = url.startsWith('/') ? url : `/${url}`;
  for (let open = rest.indexOf('{'); open >= 0; open = rest.indexOf('{')) {
    const close = rest.indexOf('}', open);
    if (close < 0) break;
    const name = rest.slice(open + 1, close);
    if (/^[.;]|\*$/.test(name)) return null; // label, matrix or exploded: hey-api's serializer
    parts.push(rest.slice(0, open), name);
    rest = rest.slice(close + 1);
  }
  parts.push(rest);
  return parts;
}

const isPrimitive = (value: unknown): value is string | number | boolean | bigint =>
  typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol';

/** The request URL: the same string hey-api's `buildUrl` gives, without its per-call parsing. */
export function buildRequestUrl(
  baseUrl: string,
  url: string,
  path: Record<string, unknown> | undefined,
  query: Record<string, unknown> | undefined,
): string {
  let template = templates.get(url);
  if (template === undefined) {
    template = compile(url);
    templates.set(url, template);
  }
  if (template === null) return heyApiUrl(baseUrl, url, path, query);
  let result = baseUrl + template[0]!;
  for (let i = 1; i < template.length; i += 2) {
    const value = path?.[template[i]!];
    if (value === undefined || value === null) result += `{${template[i]!}}`;
    else if (isPrimitive(value)) result += encodeURIComponent(value as string);
    else return heyApiUrl(baseUrl, url, path, query);
    result += template[i + 1]!;
  }
  if (!query) return result;
  let search = '';
  for (const name in query) {
    const value = query[name];
    if (value === undefined || value === null) continue;
    if (!isPrimitive(value)) return heyApiUrl(baseUrl, url, path, query);
    search += `${search ? '&' : '?'}${name}=${encodeURIComponent(value as string)}`;
  }
  return result + search;
}

function heyApiUrl(baseUrl: string, url: string, path: Record<string, unknown> | undefined, query: Record<string, unknown> | undefined): string {
  return buildUrl({ baseUrl, url, path, query, querySerializer } as Parameters<typeof buildUrl>[0]);
}
