import { describe, expect, it } from 'vitest';
import {
  AuthenticationError,
  ConflictError,
  createApiError,
  createErrorFromBody,
  APIError,
  InfernoError,
  InternalServerError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  ServiceUnavailableError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../src/core/errors.js';
import type { ErrorCode } from '../src/gen/types.gen.js';

const classes: Array<[ErrorCode, number, new (...args: never[]) => InfernoError]> = [
  ['VALIDATION_ERROR', 400, ValidationError],
  ['AUTHENTICATION_FAILED', 401, AuthenticationError],
  ['PERMISSION_DENIED', 403, PermissionDeniedError],
  ['NOT_FOUND', 404, NotFoundError],
  ['METHOD_NOT_ALLOWED', 405, MethodNotAllowedError],
  ['CONFLICT', 409, ConflictError],
  ['PAYLOAD_TOO_LARGE', 413, PayloadTooLargeError],
  ['UNSUPPORTED_MEDIA_TYPE', 415, UnsupportedMediaTypeError],
  ['RATE_LIMITED', 429, RateLimitError],
  ['INTERNAL_ERROR', 500, InternalServerError],
  ['SERVICE_UNAVAILABLE', 503, ServiceUnavailableError],
];

function headers(extra: Record<string, string> = {}): Headers {
  return new Headers({ 'x-request-id': 'req-42', ...extra });
}

describe('createApiError', () => {
  it.each(classes)('maps %s to its own class', (code, status, ErrorClass) => {
    const error = createApiError({ status, headers: headers(), body: { error: { code, message: `m-${code}`, details: null } } });
    expect(error).toBeInstanceOf(ErrorClass);
    expect(error).toBeInstanceOf(InfernoError);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe(ErrorClass.name);
    expect(error.code).toBe(code);
    expect(error.status).toBe(status);
    expect(error.message).toBe(`m-${code}`);
    expect(error.requestId).toBe('req-42');
  });

  it('covers every code of the spec', async () => {
    const { zErrorCode } = await import('../src/gen/zod.gen.js');
    expect(classes.map(([code]) => code).sort()).toEqual([...zErrorCode.options].sort());
  });

  it('keeps the validation details', () => {
    const details = [{ path: 'body.name', message: 'Required' }];
    const error = createApiError({ status: 400, headers: headers(), body: { error: { code: 'VALIDATION_ERROR', message: 'bad', details } } });
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).details).toEqual(details);
  });

  it('trusts the body code over the status', () => {
    const error = createApiError({ status: 400, headers: headers(), body: { error: { code: 'CONFLICT', message: 'taken', details: null } } });
    expect(error).toBeInstanceOf(ConflictError);
    expect(error.status).toBe(400);
  });

  it('gives an HTML page from a proxy the class of its status and a readable message', () => {
    const html = '<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>';
    const error = createApiError({ status: 502, statusText: 'Bad Gateway', headers: new Headers(), body: html });
    expect(error).toBeInstanceOf(ServiceUnavailableError);
    expect(error.code).toBe('SERVICE_UNAVAILABLE');
    expect(error.message).toBe('HTTP 502 Bad Gateway: 502 Bad Gateway 502 Bad Gateway nginx');
    expect(error.requestId).toBeUndefined();
    expect(error.body).toBe(html);
  });

  it.each(['constructor', 'toString', '__proto__', 'hasOwnProperty'])(
    'takes the code %s, a name on Object.prototype, for an unknown code',
    (code) => {
      const error = createApiError({ status: 400, headers: headers(), body: { error: { code, message: 'x', details: null } } });
      expect(error).toBeInstanceOf(ValidationError);
      expect(error.code).toBe('VALIDATION_ERROR');
      const midStream = createErrorFromBody({ error: { code, message: 'x', details: null } });
      expect(midStream).toBeInstanceOf(InternalServerError);
      expect(midStream.status).toBe(500);
    },
  );

  it('handles an empty body and unknown statuses', () => {
    const empty = createApiError({ status: 404, statusText: 'Not Found', headers: headers(), body: {} });
    expect(empty).toBeInstanceOf(NotFoundError);
    expect(empty.message).toBe('HTTP 404 Not Found (no error body)');
    const teapot = createApiError({ status: 418, headers: headers(), body: 'short and stout' });
    expect(teapot.constructor).toBe(APIError);
    expect(teapot).toBeInstanceOf(InfernoError);
    expect(teapot.code).toBe('UNKNOWN_ERROR');
    const gateway = createApiError({ status: 507, headers: headers(), body: '' });
    expect(gateway).toBeInstanceOf(InternalServerError);
  });

  it('puts Retry-After and the rate-limit snapshot on RateLimitError', () => {
    const rateLimit = { limit: 60, remaining: 0, reset: new Date(1_800_000_000_000) };
    const error = createApiError({
      status: 429,
      headers: headers({ 'retry-after': '12' }),
      body: { error: { code: 'RATE_LIMITED', message: 'slow down', details: null } },
      retryAfter: 12,
      rateLimit,
    }) as RateLimitError;
    expect(error.retryAfter).toBe(12);
    expect(error.rateLimit).toEqual(rateLimit);
    expect(error.headers.get('retry-after')).toBe('12');
  });
});
