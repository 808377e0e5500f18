import type { ErrorCode, ValidationIssue } from '../gen/types.gen.js';
import type { RateLimitInfo } from './rate-limit.js';

/**
 * The code of an {@link APIError}: one of the API's error codes, or `UNKNOWN_ERROR` for a
 * response whose body has no code and whose status (e.g. 418) maps to none.
 */
export type InfernoErrorCode = ErrorCode | 'UNKNOWN_ERROR';

/** What an error response's `details` may hold: the bad fields of a `VALIDATION_ERROR`, else an object or `null`. */
export type ErrorDetails = ValidationIssue[] | Record<string, unknown> | null;

/** What the transport knows about an error response when it builds an {@link APIError}. */
export interface ErrorResponseInit {
  /** The HTTP status. */
  status: number;
  /** The HTTP status text, when the server sent one. */
  statusText?: string;
  /** The response headers. */
  headers: Headers;
  /** The body, parsed as JSON when it was JSON, else its text. */
  body: unknown;
  /** The rate-limit headers of this response, when it had them. */
  rateLimit?: RateLimitInfo | undefined;
  /** `Retry-After` in seconds, when the response had a valid one. */
  retryAfter?: number | undefined;
}

/** Where the prototype of each error class keeps its name, the same symbol in every copy of the SDK. */
const ERROR_CLASS = Symbol.for('@inferno/sdk.ErrorClass');

/**
 * The base of every error the SDK throws: `error instanceof InfernoError` catches them all. The
 * subclasses say what happened: {@link APIError} (the server answered with an error status, one
 * subclass per error code), {@link ConnectionError} (no response, or one cut off; a
 * {@link TimeoutError} is one), {@link ResponseValidationError}, and {@link AbortError} (the
 * caller's signal aborted the call).
 */
export class InfernoError extends Error {
  /**
   * `instanceof` that also recognises the errors of another copy of the SDK in the same process,
   * such as its CommonJS and its ESM build both loaded (the dual-package hazard): each error
   * class's prototype carries its name under a registered symbol (`Symbol.for`), and an object
   * whose prototype chain has the same name is an instance. Subclasses of your own are checked
   * the ordinary way.
   */
  static override [Symbol.hasInstance]<T>(this: abstract new (...args: never[]) => T, value: unknown): value is T {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    const prototype = this.prototype as Record<symbol, unknown>;
    if (typeof value !== 'object' || value === null || !Object.hasOwn(prototype, ERROR_CLASS)) return false;
    const brand = prototype[ERROR_CLASS];
    for (let link: object | null = Object.getPrototypeOf(value); link !== null; link = Object.getPrototypeOf(link)) {
      if (Object.hasOwn(link, ERROR_CLASS) && (link as Record<symbol, unknown>)[ERROR_CLASS] === brand) return true;
    }
    return false;
  }

  override name = 'InfernoError';
  /**
   * The server's `X-Request-Id` of the response involved, to quote when reporting a problem;
   * `undefined` when no response arrived.
   */
  readonly requestId: string | undefined;

  /** @param message - What went wrong. @param options - `cause` and the `requestId`, when known. */
  constructor(message: string, options?: { cause?: unknown; requestId?: string | undefined }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.requestId = options?.requestId;
  }
}

/**
 * An error answered by the server: a non-2xx HTTP response. Every error code of the API has its
 * own subclass ({@link NotFoundError}, {@link RateLimitError}, ...); a response whose body is not
 * the documented `{"error": {...}}` (an HTML page from a proxy, an empty body) still gets the
 * subclass that matches its status, with a message made from the status and the start of the body.
 */
export class APIError extends InfernoError {
  override name = 'APIError';
  /** The HTTP status of the response. */
  readonly status: number;
  /** The API error code (from the body, or inferred from the status when the body had none). */
  readonly code: InfernoErrorCode;
  /** Extra information: the list of bad fields for a {@link ValidationError}, else an object or `null`. */
  readonly details: ErrorDetails;
  /** The response headers. */
  readonly headers: Headers;
  /** The response body as received: parsed JSON, or text when it was not JSON. */
  readonly body: unknown;

  /** Builds the error from a response (the transport picks the subclass by code, else by status). */
  constructor(init: ErrorResponseInit, code: InfernoErrorCode = 'UNKNOWN_ERROR') {
    const parsed = parseApiErrorBody(init.body);
    super(parsed?.message ?? describeUnexpectedBody(init), { requestId: init.headers.get('x-request-id') ?? undefined });
    this.status = init.status;
    this.code = parsed?.code ?? code;
    this.details = parsed?.details ?? null;
    this.headers = init.headers;
    this.body = init.body;
  }
}

/** 400 `VALIDATION_ERROR`: the request was malformed; {@link ValidationError.details} lists each bad field. */
export class ValidationError extends APIError {
  override name = 'ValidationError';
  /** Each bad field, e.g. `{ path: 'body.permissions[1]', message: '...' }`. */
  declare readonly details: ValidationIssue[];

  /** @inheritDoc */
  constructor(init: ErrorResponseInit, code: InfernoErrorCode = 'VALIDATION_ERROR') {
    super(init, code);
    if (!Array.isArray(this.details)) (this as { details: unknown }).details = [];
  }
}

/** 401 `AUTHENTICATION_FAILED`: missing, invalid, expired or revoked credentials. */
export class AuthenticationError extends APIError {
  override name = 'AuthenticationError';
}

/** 403 `PERMISSION_DENIED`: the principal lacks the permission the route needs. */
export class PermissionDeniedError extends APIError {
  override name = 'PermissionDeniedError';
}

/** 404 `NOT_FOUND`: no such route or resource. */
export class NotFoundError extends APIError {
  override name = 'NotFoundError';
}

/** 405 `METHOD_NOT_ALLOWED`: the route exists but not with this method. */
export class MethodNotAllowedError extends APIError {
  override name = 'MethodNotAllowedError';
}

/** 409 `CONFLICT`: the request conflicts with the current state (e.g. a taken username). */
export class ConflictError extends APIError {
  override name = 'ConflictError';
}

/** 413 `PAYLOAD_TOO_LARGE`: the body is over the server's limit. */
export class PayloadTooLargeError extends APIError {
  override name = 'PayloadTooLargeError';
}

/** 415 `UNSUPPORTED_MEDIA_TYPE`: a JSON route got another content type. */
export class UnsupportedMediaTypeError extends APIError {
  override name = 'UnsupportedMediaTypeError';
}

/** 500 `INTERNAL_ERROR` (and any other 5xx without a more specific class): an unexpected server error. */
export class InternalServerError extends APIError {
  override name = 'InternalServerError';
}

/**
 * 429 `RATE_LIMITED`: too many requests. Also thrown without a request when throttling would have
 * to wait longer than allowed (then {@link APIError.status} is 429 and there is no request id).
 */
export class RateLimitError extends APIError {
  override name = 'RateLimitError';
  /** Seconds the server asked to wait (`Retry-After`), when known. */
  readonly retryAfter: number | undefined;
  /** The rate-limit headers of this response, when it had them. */
  readonly rateLimit: RateLimitInfo | undefined;

  /** @inheritDoc */
  constructor(init: ErrorResponseInit, code: InfernoErrorCode = 'RATE_LIMITED') {
    super(init, code);
    this.retryAfter = init.retryAfter;
    this.rateLimit = init.rateLimit;
  }
}

/** 503 `SERVICE_UNAVAILABLE` (also 502 and 504 from a gateway): overloaded or not ready; try again later. */
export class ServiceUnavailableError extends APIError {
  override name = 'ServiceUnavailableError';
  /** Seconds the server asked to wait (`Retry-After`), when known. */
  readonly retryAfter: number | undefined;

  /** @inheritDoc */
  constructor(init: ErrorResponseInit, code: InfernoErrorCode = 'SERVICE_UNAVAILABLE') {
    super(init, code);
    this.retryAfter = init.retryAfter;
  }
}

/**
 * No HTTP response arrived (the connection was refused, reset or dropped, or DNS failed), or a
 * response was cut off: its body broke midway, or a stream ended before its last event.
 */
export class ConnectionError extends InfernoError {
  override name = 'ConnectionError';
}

/** A request got no response within its `timeout`, or a stream sent nothing for its `streamIdleTimeout`. */
export class TimeoutError extends ConnectionError {
  override name = 'TimeoutError';
  /** The limit that was exceeded, in milliseconds. */
  readonly timeout: number;

  /** @param message - What timed out. @param timeout - The limit in milliseconds. @param options - The `requestId`, when a response had started. */
  constructor(message: string, timeout: number, options?: { requestId?: string | undefined }) {
    super(message, options);
    this.timeout = timeout;
  }
}

/**
 * The caller's `signal` aborted the call. Its `name` is `'AbortError'`, as for `fetch`, so code
 * that checks `error.name === 'AbortError'` keeps working; `cause` is the signal's reason.
 */
export class AbortError extends InfernoError {
  override name = 'AbortError';
  /** @param reason - The signal's reason. @param options - The `requestId`, when a response had started. */
  constructor(reason: unknown, options?: { requestId?: string | undefined }) {
    super(reason instanceof Error && reason.message ? `The call was aborted: ${reason.message}` : 'The call was aborted', {
      cause: reason,
      ...options,
    });
  }
}

/** One mismatch between a response and its schema. */
export interface ResponseIssue {
  /** Where, e.g. `data[0].size_bytes` (empty for the whole body). */
  path: string;
  /** What is wrong there. */
  message: string;
}

/** With `validateResponses: true`: a successful response did not match the operation's schema. */
export class ResponseValidationError extends InfernoError {
  override name = 'ResponseValidationError';
  /** The operation whose response failed, e.g. `listModels`. */
  readonly operation: string;
  /** Every mismatch found. */
  readonly issues: ResponseIssue[];

  /** @param operation - The operation id. @param issues - The mismatches (at least one). @param options - The `requestId`. */
  constructor(operation: string, issues: ResponseIssue[], options?: { requestId?: string | undefined }) {
    const first = issues[0];
    const where = first ? `${first.path || '(body)'}: ${first.message}` : 'unknown mismatch';
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    super(`Response of ${operation} does not match the API schema at ${where}${more}`, options);
    this.operation = operation;
    this.issues = issues;
  }
}

// The brands (literal names, which minifiers leave alone).
for (const [name, ErrorClass] of Object.entries({
  InfernoError,
  APIError,
  ValidationError,
  AuthenticationError,
  PermissionDeniedError,
  NotFoundError,
  MethodNotAllowedError,
  ConflictError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  InternalServerError,
  RateLimitError,
  ServiceUnavailableError,
  ConnectionError,
  TimeoutError,
  AbortError,
  ResponseValidationError,
})) {
  Object.defineProperty(ErrorClass.prototype, ERROR_CLASS, { value: name });
}

type ApiErrorClass = new (init: ErrorResponseInit, code?: InfernoErrorCode) => APIError;

const classByCode: Record<ErrorCode, ApiErrorClass> = {
  VALIDATION_ERROR: ValidationError,
  AUTHENTICATION_FAILED: AuthenticationError,
  PERMISSION_DENIED: PermissionDeniedError,
  NOT_FOUND: NotFoundError,
  METHOD_NOT_ALLOWED: MethodNotAllowedError,
  CONFLICT: ConflictError,
  PAYLOAD_TOO_LARGE: PayloadTooLargeError,
  UNSUPPORTED_MEDIA_TYPE: UnsupportedMediaTypeError,
  RATE_LIMITED: RateLimitError,
  INTERNAL_ERROR: InternalServerError,
  SERVICE_UNAVAILABLE: ServiceUnavailableError,
};

const codeByStatus: Record<number, ErrorCode> = {
  400: 'VALIDATION_ERROR',
  401: 'AUTHENTICATION_FAILED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
  502: 'SERVICE_UNAVAILABLE',
  503: 'SERVICE_UNAVAILABLE',
  504: 'SERVICE_UNAVAILABLE',
};

/** The error code a status stands for when the body does not say (any other 5xx is `INTERNAL_ERROR`). */
export function codeForStatus(status: number): InfernoErrorCode {
  return codeByStatus[status] ?? (status >= 500 ? 'INTERNAL_ERROR' : 'UNKNOWN_ERROR');
}

const statusByCode: Record<ErrorCode, number> = {
  VALIDATION_ERROR: 400,
  AUTHENTICATION_FAILED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTERNAL_ERROR: 500,
  SERVICE_UNAVAILABLE: 503,
};

/**
 * The error for an `{"error": {...}}` body that arrived without an HTTP error status, such as an
 * `event: error` in the middle of a stream: its class and status follow its code.
 */
export function createErrorFromBody(body: unknown, headers: Headers = new Headers()): APIError {
  const code = parseApiErrorBody(body)?.code ?? 'INTERNAL_ERROR';
  return createApiError({ status: statusByCode[code], headers, body });
}

/**
 * The error for an error response: the class of the body's `error.code` when the body is the
 * documented format, else the class of the HTTP status.
 */
export function createApiError(init: ErrorResponseInit): APIError {
  const code = parseApiErrorBody(init.body)?.code ?? codeForStatus(init.status);
  const ErrorClass = code === 'UNKNOWN_ERROR' ? APIError : classByCode[code];
  return new ErrorClass(init, code);
}

interface ParsedApiError {
  code: ErrorCode | undefined;
  message: string | undefined;
  details: ErrorDetails | undefined;
}

function parseApiErrorBody(body: unknown): ParsedApiError | undefined {
  if (!isRecord(body) || !isRecord(body.error)) return undefined;
  const { code, message, details } = body.error;
  return {
    code: typeof code === 'string' && Object.hasOwn(classByCode, code) ? (code as ErrorCode) : undefined,
    message: typeof message === 'string' ? message : undefined,
    details: Array.isArray(details) || isRecord(details) ? (details as ErrorDetails) : null,
  };
}

function describeUnexpectedBody(init: ErrorResponseInit): string {
  const head = `HTTP ${init.status}${init.statusText ? ` ${init.statusText}` : ''}`;
  const text = typeof init.body === 'string' ? init.body : '';
  // A proxy's HTML page: keep its words, drop the markup, so the message still says something.
  const snippet = text
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 200);
  return snippet ? `${head}: ${snippet}` : `${head} (no error body)`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
