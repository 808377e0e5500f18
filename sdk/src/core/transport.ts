// The one place a request is sent. Each call runs the generated operation on the client's HTTP
// client (http.ts: hey-api's fetch client without its Request object, `fetch(url, init)`) and
// wraps it in, from the outside in:
//
//   one Idempotency-Key per call (for the operations that create something)
//   -> retries (the policy and delays from retry.ts)
//     -> rate-limit slot (per credential; a FIFO queue when throttling) -> auth (log in when
//        needed; once more after a 401)
//       -> one attempt: timeout (deadlines.ts), send, rate-limit headers, error mapping
//   -> response validation (optional)
//
// The generated client neither retries nor times out by itself, so attempts never multiply.

import type { Auth, Client } from '../gen/client/index.js';
import { createHttpClient, type SentRequest } from './http.js';
import { login as loginOperation } from '../gen/sdk.gen.js';
import type { TokenResponse } from '../gen/types.gen.js';
import { anySignal, linkAbort, sleep } from './abort.js';
import { AuthSession, type Credential, type CredentialOverride } from './auth.js';
import { Deadlines } from './deadlines.js';
import {
  AbortError,
  AuthenticationError,
  ConflictError,
  ConnectionError,
  createApiError,
  InfernoError,
  ResponseValidationError,
  TimeoutError,
} from './errors.js';
import {
  type ClientOptions,
  DEFAULTS,
  type Logger,
  type RequestOptions,
  type ResponseValidator,
  type RetryEvent,
} from './options.js';
import { type AcquireOptions, OWN_CREDENTIAL, parseRateLimit, type RateLimitInfo, RateLimitTracker } from './rate-limit.js';
import { APIPromise, type CallMode, EventStream, type ResponseMeta, type WithResponse } from './response.js';
import { type AttemptFailure, DEFAULT_RETRY_TIMING, parseRetryAfter, planRetry, type RetryTiming } from './retry.js';
import { decodeEvent, readServerSentEvents, type RawServerSentEvent, type ServerSentEvent } from './sse.js';

/** What the transport passes to a generated operation: spread it into the operation's options. */
export interface OperationOptions {
  /** The client's hey-api client. */
  client: Client;
  /** Aborts this attempt (caller's signal, timeout). */
  signal: AbortSignal;
  /** Resolves the credential for each security scheme of the operation (a promise only while logging in). */
  auth: (scheme: Auth) => string | undefined | Promise<string | undefined>;
  /** Per-request headers (the client's are already in `client`). */
  headers?: Record<string, string>;
  /** Per-request server. */
  baseUrl?: string;
  /** `stream` for event streams and raw responses: the body is left unread. */
  parseAs?: 'stream';
  /** A per-request `fetch`. */
  fetch?: typeof fetch;
}

/** What a generated operation resolves to (hey-api's `{data, error, request, response}`). */
export interface OperationResult {
  /** The parsed body of a 2xx response. */
  data?: unknown;
  /** The parsed body of an error response, or what was thrown. */
  error?: unknown;
  /** What was sent (method and URL), once built. */
  request?: SentRequest;
  /** The response, when one arrived. */
  response?: Response;
}

/** A call of one generated operation, e.g. `(o) => getModel({ ...o, path: { id } })`. */
export type Operation<R extends OperationResult> = (options: OperationOptions) => Promise<R>;

/** The success data type of an operation's result. */
export type OperationData<R> = R extends { data: infer D } ? Exclude<D, undefined> : never;

/** The options of one call, resolved against the client's. */
interface CallSettings {
  signal: AbortSignal | undefined;
  timeout: number;
  maxRetries: number;
  timing: RetryTiming;
  throttle: boolean;
  throttleMaxWait: number | undefined;
  maxConcurrent: number | undefined;
  /** How a request of this call takes its rate-limit slot (from the four above; built once per call settings). */
  slot: AcquireOptions;
  idempotencyKey: string | false | undefined;
  headers: Record<string, string> | undefined;
  fetch: typeof fetch | undefined;
  baseUrl: string | undefined;
  override: CredentialOverride | undefined;
  validate: boolean;
  idleTimeout: number;
  onRetry: ((event: RetryEvent) => void) | undefined;
  logger: Logger | undefined;
}

/** What changes while one call runs. */
interface CallState {
  /** The operation id, e.g. `listModels`. */
  operationId: string;
  /** The HTTP method, learnt from the first request built (the retry policy depends on it). */
  method: string;
  /** Whether this call already logged in again after a 401 (it does so at most once). */
  renewed: boolean;
  /** The call's `Idempotency-Key`, the same on every attempt. */
  idempotencyKey: string | undefined;
  /** Leave the body unread (asResponse). */
  mode: CallMode;
  /** The latest response's request id, for errors that come after it. */
  requestId: string | undefined;
}

/** The operations that create something and take an `Idempotency-Key` (see the spec). */
const IDEMPOTENT_OPERATIONS: ReadonlySet<string> = new Set([
  'createUser',
  'createApiKey',
  'createJob',
  'uploadModel',
  'createInference',
  'createEmbeddings',
]);

/** An attempt that failed in a way the retry policy may repeat; unwrapped before it reaches the caller. */
class FailedAttempt extends Error {
  constructor(
    readonly error: unknown,
    readonly failure: AttemptFailure,
  ) {
    super('attempt failed');
  }
}

// The login operation. Logins are never throttled and never update the rate-limit state: the
// server counts them (like every request without a credential, and every 401) against the
// client's IP address, not against the budget of the key or user that the tracker follows. Kept
// out of the throttle, a login can also never wait on a slot that the request needing it holds.
const LOGIN_OPERATION = 'login';

/** A stream whose response arrived, and its first event. */
interface OpenedStream {
  events: AsyncGenerator<RawServerSentEvent, void, undefined>;
  first: IteratorResult<RawServerSentEvent, void>;
  sent: Sent;
}

/** A response that arrived, with what is needed to keep reading a stream. */
interface Sent {
  data: unknown;
  response: Response;
  rateLimit: RateLimitInfo | undefined;
  controller: AbortController;
  /** Unlinks the caller's signal from the attempt; for streams, called when the stream ends. */
  dispose: () => void;
}

/**
 * Sends the generated operations for one client, with its auth, rate-limit tracking, retries,
 * timeouts and error mapping. Resources call {@link Transport.send} (and {@link Transport.stream}
 * for event streams); nothing else sends requests.
 */
export class Transport {
  /** The hey-api client that the generated operations run on. */
  readonly client: Client;
  /** The latest rate-limit state per credential, and the throttle. */
  readonly rateLimit = new RateLimitTracker();
  /** The client's credentials. */
  readonly auth: AuthSession;
  readonly #defaults: CallSettings;
  readonly #validator: ResponseValidator | undefined;
  /** The attempts' timeouts. */
  readonly #deadlines = new Deadlines();

  /** @param options - The client's options. */
  constructor(options: ClientOptions) {
    if (options.validateResponses && !options.responseValidator) throw missingValidator();
    this.#validator = options.responseValidator;
    this.#defaults = withSlot({
      signal: options.signal,
      timeout: options.timeout ?? DEFAULTS.timeout,
      maxRetries: checkRetries(options.maxRetries ?? DEFAULTS.maxRetries),
      timing: { ...DEFAULT_RETRY_TIMING, ...definedOnly(options.retry) },
      throttle: options.rateLimit?.throttle ?? false,
      throttleMaxWait: options.rateLimit?.maxWait,
      maxConcurrent: options.rateLimit?.maxConcurrent,
      idempotencyKey: undefined,
      headers: undefined,
      fetch: undefined,
      baseUrl: undefined,
      // The client's own apiKey/token/credentials live in the AuthSession; this is per request only.
      override: undefined,
      validate: options.validateResponses ?? false,
      idleTimeout: options.streamIdleTimeout ?? DEFAULTS.streamIdleTimeout,
      onRetry: options.onRetry,
      logger: options.logger,
    });
    this.client = createHttpClient({ baseUrl: options.baseUrl, headers: options.headers, fetch: options.fetch });
    this.auth = new AuthSession(
      options,
      (credentials, requestOptions) =>
        this.request(LOGIN_OPERATION, (o) => loginOperation({ ...o, body: credentials }), requestOptions) as Promise<
          WithResponse<TokenResponse>
        >,
    );
    if (options.onRateLimit) this.rateLimit.subscribe(options.onRateLimit);
  }

  /**
   * Sends one operation; the promise resolves to its data (and offers `withResponse()` and
   * `asResponse()`), or rejects: an {@link APIError} subclass for an error response,
   * {@link ConnectionError}, {@link TimeoutError}, or {@link AbortError} when the caller aborted.
   */
  send<R extends OperationResult>(
    operationId: string,
    operation: Operation<R>,
    options?: RequestOptions,
  ): APIPromise<OperationData<R>> {
    const mode: CallMode = { raw: false };
    return new APIPromise(this.request(operationId, operation, options, mode) as Promise<WithResponse<OperationData<R>>>, mode);
  }

  /** Like {@link Transport.send}, resolving to the data with its response's metadata. */
  async request(
    operationId: string,
    operation: Operation<OperationResult>,
    options: RequestOptions | undefined,
    mode: CallMode = { raw: false },
  ): Promise<WithResponse<unknown>> {
    // One tick first: `asResponse()`, chained to the call, sets `mode.raw` before anything is sent.
    await undefined;
    const settings = this.#settings(options, operationId);
    const state = this.#state(operationId, settings, mode);
    try {
      const sent = (await this.#withRetries(operationId, settings, state, operation, false)) as Sent;
      const data = mode.raw ? undefined : sent.data;
      if (settings.validate && !mode.raw) await this.#validate(operationId, data, state.requestId);
      const { response } = sent;
      // state.requestId is the final response's (see meta()).
      return { response, status: response.status, headers: response.headers, requestId: state.requestId, rateLimit: sent.rateLimit, data };
    } catch (error) {
      throw callerAbort(error, settings, state);
    }
  }

  /**
   * Sends one operation whose response is a `text/event-stream`; the stream yields its events.
   * The request starts at the first event asked for (or `withResponse()`); it is retried (per
   * the usual policy) only until the first event arrives. Leaving the loop early, or the
   * caller's signal, aborts the request; a stream silent for `streamIdleTimeout` fails with a
   * {@link TimeoutError}. Errors carry the response's request id.
   */
  stream<TData = unknown>(
    operationId: string,
    operation: Operation<OperationResult>,
    options?: RequestOptions,
  ): EventStream<ServerSentEvent<TData>> {
    const settings = this.#settings(options, operationId);
    const state = this.#state(operationId, settings, { raw: false });
    let opened: OpenedStream | undefined;
    const open = async (): Promise<ResponseMeta> => {
      try {
        opened = (await this.#withRetries(operationId, settings, state, operation, true)) as OpenedStream;
      } catch (error) {
        throw callerAbort(error, settings, state);
      }
      return meta(opened.sent);
    };
    const read = async function* (this: void): AsyncGenerator<ServerSentEvent<TData>, void, undefined> {
      const { events, first, sent } = opened!;
      try {
        if (first.done) return;
        yield decodeEvent<TData>(first.value);
        for (;;) {
          let next: IteratorResult<RawServerSentEvent, void>;
          try {
            next = await events.next();
          } catch (error) {
            throw streamError(error, settings, state);
          }
          if (next.done) return;
          yield decodeEvent<TData>(next.value);
        }
      } finally {
        await events.return();
        sent.controller.abort();
        sent.dispose();
      }
    };
    return new EventStream(open, read);
  }

  #state(operationId: string, settings: CallSettings, mode: CallMode): CallState {
    let idempotencyKey: string | undefined;
    if (IDEMPOTENT_OPERATIONS.has(operationId) && settings.idempotencyKey !== false) {
      idempotencyKey = settings.idempotencyKey ?? headerValue(settings.headers, 'idempotency-key') ?? newIdempotencyKey();
    }
    return { operationId, method: 'GET', renewed: false, idempotencyKey, mode, requestId: undefined };
  }

  // Retries around whole attempts (for a stream: until its first event); the policy and the
  // delays come from retry.ts. (A plain loop: everything a retry library would decide is decided there.)
  async #withRetries(
    operationId: string,
    settings: CallSettings,
    state: CallState,
    operation: Operation<OperationResult>,
    stream: boolean,
  ): Promise<Sent | OpenedStream> {
    for (let retriesDone = 0; ; ) {
      try {
        const sent = await this.#attempt(operation, settings, state, stream);
        return stream ? await this.#openStream(sent, settings, state) : sent;
      } catch (error) {
        if (!(error instanceof FailedAttempt)) throw error;
        if (settings.signal?.aborted) throw error.error;
        const decision = planRetry({
          method: state.method,
          idempotencyKey: state.idempotencyKey !== undefined,
          failure: error.failure,
          retriesDone,
          maxRetries: settings.maxRetries,
          timing: settings.timing,
        });
        if (!decision.retry) {
          if (decision.reason === 'retry-after-too-long') {
            explainLongWait(error.error, decision.retryAfter ?? 0, settings.timing.maxRetryAfter);
          }
          throw error.error;
        }
        retriesDone += 1;
        const cause = error.error instanceof Error ? error.error : new Error(String(error.error));
        settings.logger?.info?.(
          `Retrying ${operationId} (retry ${retriesDone} of ${settings.maxRetries}) in ${decision.delay} ms ` +
            `after ${cause.name}: ${cause.message}`,
        );
        settings.onRetry?.({
          operation: operationId,
          retry: retriesDone,
          maxRetries: settings.maxRetries,
          delay: decision.delay,
          reason: decision.reason,
          error: cause,
        });
        await sleep(decision.delay, settings.signal);
      }
    }
  }

  // One attempt, with the throttle and the single re-login after a 401.
  async #attempt(
    operation: Operation<OperationResult>,
    settings: CallSettings,
    state: CallState,
    stream: boolean,
  ): Promise<Sent> {
    const bucket = rateLimitBucket(settings.override);
    for (;;) {
      const slot = this.rateLimit.acquire(settings.slot, bucket);
      // No wait when nothing holds the request back.
      const release = typeof slot === 'function' ? slot : await slot;
      const used: { credential?: Credential | undefined } = {};
      let rejected: { error: FailedAttempt; token: string };
      try {
        return await this.#sendOnce(operation, settings, state, used, stream, bucket);
      } catch (error) {
        const credential = used.credential;
        if (
          !(error instanceof FailedAttempt) ||
          !(error.error instanceof AuthenticationError) ||
          !credential?.renewable ||
          state.renewed
        ) {
          throw error;
        }
        rejected = { error, token: credential.value };
      } finally {
        // Given back before any re-login: the slot is this request's, and the repeat takes a new one.
        release();
      }
      state.renewed = true;
      if (!(await this.auth.renewAfterRejection(rejected.token, settings.signal))) throw rejected.error;
    }
  }

  // Sends the request once: timeout, credential, rate-limit headers, error mapping.
  async #sendOnce(
    operation: Operation<OperationResult>,
    settings: CallSettings,
    state: CallState,
    used: { credential?: Credential | undefined },
    stream: boolean,
    bucket: string,
  ): Promise<Sent> {
    const controller = new AbortController();
    const unlink = linkAbort(settings.signal, controller);
    let timedOut = false;
    const deadline =
      settings.timeout > 0 && Number.isFinite(settings.timeout)
        ? this.#deadlines.start(settings.timeout, () => {
            timedOut = true;
            controller.abort();
          })
        : undefined;
    // Asked once per security scheme; resolved (and maybe logged in) once per attempt, and a
    // promise only while logging in.
    let credential: Credential | undefined | Promise<Credential | undefined> | null = null;
    const auth = (scheme: Auth): string | undefined | Promise<string | undefined> => {
      if (credential === null) {
        const known = this.auth.credential(settings.override, controller.signal);
        credential = known instanceof Promise ? known.then((c) => (used.credential = c)) : (used.credential = known);
      }
      return credential instanceof Promise ? credential.then((c) => AuthSession.tokenFor(scheme, c)) : AuthSession.tokenFor(scheme, credential);
    };
    const started = settings.logger?.debug ? Date.now() : 0;
    let result: OperationResult;
    try {
      result = await operation(this.#operationOptions(controller.signal, auth, settings, state, stream));
    } catch (error) {
      result = { error };
    } finally {
      this.#deadlines.cancel(deadline);
    }
    const { request, response } = result;
    if (request) state.method = request.method;
    if (response) state.requestId = response.headers.get('x-request-id') ?? undefined;

    if (!response || (response.ok && result.error !== undefined)) {
      unlink();
      throw this.#failureWithoutResponse(result, settings, state, timedOut, response !== undefined);
    }
    // Only responses that spent the budget of the credential the tracker follows update it (see LOGIN_OPERATION).
    const ownBudget =
      state.operationId !== LOGIN_OPERATION && used.credential !== undefined && response.status !== 401;
    const rateLimit = ownBudget ? this.rateLimit.update(response.headers, bucket) : parseRateLimit(response.headers);
    settings.logger?.debug?.(
      `${state.method} ${response.url || request?.url} -> ${response.status} in ${Date.now() - started} ms`,
    );
    if (!response.ok) {
      unlink();
      const retryAfter = parseRetryAfter(response.headers.get('retry-after'));
      const error = createApiError({
        status: response.status,
        statusText: response.statusText,
        headers: response.headers,
        body: result.error,
        rateLimit,
        retryAfter: retryAfter === undefined ? undefined : retryAfter / 1000,
      });
      const inFlight = error instanceof ConflictError && isRecord(error.details) && error.details.reason === 'idempotency_key_in_flight';
      throw new FailedAttempt(error, { kind: 'response', status: response.status, retryAfter, inFlight });
    }
    if (!stream) unlink();
    const data = response.status === 204 ? undefined : result.data;
    return { data, response, rateLimit, controller, dispose: unlink };
  }

  #failureWithoutResponse(
    result: OperationResult,
    settings: CallSettings,
    state: CallState,
    timedOut: boolean,
    responseStarted: boolean,
  ): unknown {
    const { error, request } = result;
    if (settings.signal?.aborted) return new AbortError(settings.signal.reason, { requestId: state.requestId });
    const target = request ? `${request.method} ${request.url}` : 'the request';
    const requestId = responseStarted ? state.requestId : undefined;
    if (timedOut) {
      const timeout = new TimeoutError(`${target} got no response within ${settings.timeout} ms`, settings.timeout, { requestId });
      return new FailedAttempt(timeout, { kind: 'timeout' });
    }
    // Thrown before anything was sent (building the request, logging in): not a network problem.
    if (!request || error instanceof InfernoError) return error;
    if (responseStarted) {
      if (error instanceof SyntaxError) {
        return new ResponseValidationError(state.operationId, [{ path: '', message: `the body is not valid JSON (${error.message})` }], { requestId });
      }
      const cut = new ConnectionError(`${target}: the response was cut off (${describe(error)})`, { cause: error, requestId });
      return new FailedAttempt(cut, { kind: 'interrupted' });
    }
    const failed = new ConnectionError(`${target} failed: ${describe(error)}`, { cause: error });
    return new FailedAttempt(failed, { kind: 'connection', notSent: provesNotSent(error) });
  }

  async #openStream(sent: Sent, settings: CallSettings, state: CallState): Promise<OpenedStream> {
    const body = sent.data as ReadableStream<Uint8Array> | null | undefined;
    const events = body
      ? readServerSentEvents(body, {
          idleTimeout: settings.idleTimeout,
          onIdle: () => sent.controller.abort(),
        })
      : emptyEvents();
    try {
      const first = await events.next();
      return { events, first, sent };
    } catch (error) {
      sent.controller.abort();
      sent.dispose();
      if (settings.signal?.aborted) throw new AbortError(settings.signal.reason, { requestId: state.requestId });
      // Nothing was delivered yet, so the stream may be opened again (see retry.ts for which
      // methods). But its response did arrive: the server may be at work on it, so this is an
      // interrupted response, which only idempotent requests repeat, not a connection failure.
      if (error instanceof TimeoutError) {
        throw new FailedAttempt(new TimeoutError(error.message, error.timeout, { requestId: state.requestId }), { kind: 'timeout' });
      }
      const dropped = new ConnectionError(`The stream broke off before its first event: ${describe(error)}`, {
        cause: error,
        requestId: state.requestId,
      });
      throw new FailedAttempt(dropped, { kind: 'interrupted' });
    }
  }

  #operationOptions(
    signal: AbortSignal,
    auth: OperationOptions['auth'],
    settings: CallSettings,
    state: CallState,
    stream: boolean,
  ): OperationOptions {
    // Only defined keys: hey-api spreads these over its config, so an `undefined` would erase it.
    const options: OperationOptions = { client: this.client, signal, auth };
    if (settings.headers) options.headers = settings.headers;
    if (settings.baseUrl) options.baseUrl = settings.baseUrl;
    if (settings.fetch) options.fetch = settings.fetch;
    if (state.idempotencyKey !== undefined) options.headers = { ...options.headers, 'Idempotency-Key': state.idempotencyKey };
    if (stream) {
      options.parseAs = 'stream';
      options.headers = { accept: 'text/event-stream', ...options.headers };
    } else if (state.mode.raw) {
      options.parseAs = 'stream';
    }
    return options;
  }

  async #validate(operationId: string, data: unknown, requestId: string | undefined): Promise<void> {
    if (!this.#validator) throw missingValidator();
    try {
      await this.#validator(operationId, data);
    } catch (error) {
      if (error instanceof ResponseValidationError && error.requestId === undefined) {
        throw new ResponseValidationError(error.operation, error.issues, { requestId });
      }
      throw error;
    }
  }

  #settings(options: RequestOptions | undefined, operationId: string): CallSettings {
    const settings = this.#resolve(options);
    return operationId === LOGIN_OPERATION && settings.throttle ? withSlot({ ...settings, throttle: false }) : settings;
  }

  #resolve(options: RequestOptions | undefined): CallSettings {
    const defaults = this.#defaults;
    if (!options) return defaults;
    const override =
      options.apiKey || options.token ? { apiKey: options.apiKey, token: options.token } : defaults.override;
    return withSlot({
      signal: anySignal([defaults.signal, options.signal]),
      timeout: options.timeout ?? defaults.timeout,
      maxRetries: options.maxRetries === undefined ? defaults.maxRetries : checkRetries(options.maxRetries),
      timing: options.retry ? { ...defaults.timing, ...definedOnly(options.retry) } : defaults.timing,
      throttle: options.rateLimit?.throttle ?? defaults.throttle,
      throttleMaxWait: options.rateLimit?.maxWait ?? defaults.throttleMaxWait,
      maxConcurrent: options.rateLimit?.maxConcurrent ?? defaults.maxConcurrent,
      idempotencyKey: options.idempotencyKey ?? defaults.idempotencyKey,
      headers: options.headers,
      fetch: options.fetch,
      baseUrl: options.baseUrl,
      override,
      validate: options.validateResponses ?? defaults.validate,
      idleTimeout: options.streamIdleTimeout ?? defaults.idleTimeout,
      onRetry: options.onRetry ?? defaults.onRetry,
      logger: options.logger ?? defaults.logger,
    });
  }
}

/** The settings with their `slot`, the rate-limit options derived from them. */
function withSlot(settings: Omit<CallSettings, 'slot'>): CallSettings {
  const slot: AcquireOptions = {
    throttle: settings.throttle,
    maxConcurrent: settings.maxConcurrent,
    maxWait: settings.throttleMaxWait,
    signal: settings.signal,
  };
  return { ...settings, slot };
}

function streamError(error: unknown, settings: CallSettings, state: CallState): unknown {
  const requestId = state.requestId;
  if (settings.signal?.aborted) return new AbortError(settings.signal.reason, { requestId });
  if (error instanceof TimeoutError) return new TimeoutError(error.message, error.timeout, { requestId });
  return new ConnectionError(`The stream broke off: ${describe(error)}`, { cause: error, requestId });
}

/** The caller's abort as our AbortError, whatever was under way when it came. */
function callerAbort(error: unknown, settings: CallSettings, state: CallState): unknown {
  if (error instanceof AbortError || !settings.signal?.aborted) return error;
  return new AbortError(settings.signal.reason, { requestId: state.requestId });
}

function meta(sent: Sent): ResponseMeta {
  const { response } = sent;
  return {
    response,
    status: response.status,
    headers: response.headers,
    requestId: response.headers.get('x-request-id') ?? undefined,
    rateLimit: sent.rateLimit,
  };
}

/** Which rate-limit state a request belongs to: the client's own credential, or a per-request one. */
function rateLimitBucket(override: CredentialOverride | undefined): string {
  if (override?.apiKey) return `apiKey:${override.apiKey}`;
  if (override?.token) return `bearer:${override.token}`;
  return OWN_CREDENTIAL;
}

// Failures that show the request never left: nothing was connected, so nothing was processed.
const NOT_SENT_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** Whether a fetch failure proves that the request was not sent (connection refused, DNS); "other side closed" does not. */
function provesNotSent(error: unknown): boolean {
  const cause = (error as { cause?: unknown } | undefined)?.cause ?? error;
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') return NOT_SENT_CODES.has(code);
  // Happy eyeballs: every address refused.
  const errors = (cause as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) && errors.length > 0 && errors.every((e) => NOT_SENT_CODES.has(String((e as { code?: unknown }).code)));
}

function headerValue(headers: Record<string, string> | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === name) return value;
  return undefined;
}

/** A random UUID v4; `crypto.randomUUID` needs a secure context in browsers, `getRandomValues` does not. */
function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function* emptyEvents(): AsyncGenerator<RawServerSentEvent, void, undefined> {}

function explainLongWait(error: unknown, retryAfter: number, maxRetryAfter: number): void {
  if (error instanceof Error) {
    error.message += ` (the server asked to retry after ${Math.ceil(retryAfter / 1000)} s, more than maxRetryAfter ${Math.round(maxRetryAfter / 1000)} s)`;
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  // undici reports "fetch failed" with the useful part (ECONNREFUSED, other side closed) in `cause`.
  return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
}

function checkRetries(maxRetries: number): number {
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new TypeError(`maxRetries must be a whole number >= 0, got ${maxRetries}`);
  }
  return maxRetries;
}

function definedOnly<T extends object>(value: T | undefined): Partial<T> {
  if (!value) return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function missingValidator(): TypeError {
  return new TypeError(
    "validateResponses needs a validator: import { responseValidator } from '@inferno/sdk/zod' and pass it as the client's `responseValidator`",
  );
}
