import type { ErrorCode, ValidationIssue } from '../gen/types.gen.js';

export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
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

const CODE_BY_STATUS = new Map(Object.entries(STATUS_BY_CODE).map(([code, status]) => [status, code as ErrorCode]));

/** An error the API answers with: a status, a code from the spec, and a message safe to show. */
export class ApiError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ValidationIssue[] | Record<string, unknown> | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(clip(message, MAX_MESSAGE_CHARS));
    if (Array.isArray(details)) this.details = details.map((issue) => ({ path: clip(issue.path, MAX_ISSUE_CHARS), message: clip(issue.message, MAX_ISSUE_CHARS) }));
    this.name = 'ApiError';
    this.status = STATUS_BY_CODE[code];
  }

  /** Maps an HTTP error thrown by Koa or a library (`ctx.throw`, http-errors) onto the spec's codes. */
  static fromHttpStatus(status: number, message: string): ApiError {
    return new ApiError(CODE_BY_STATUS.get(status) ?? (status >= 500 ? 'INTERNAL_ERROR' : 'VALIDATION_ERROR'), message);
  }
}

/** The spec's bounds on an error's `message` and on each issue's `path` and `message` (they may quote client input). */
export const MAX_MESSAGE_CHARS = 1024;
export const MAX_ISSUE_CHARS = 512;
const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** At most this many problems are listed in a VALIDATION_ERROR's `details` (the first ones found). */
export const MAX_VALIDATION_ISSUES = 20;

export const validationError = (details: ValidationIssue[], message = 'The request is invalid') =>
  new ApiError('VALIDATION_ERROR', message, details.slice(0, MAX_VALIDATION_ISSUES));
export const authenticationFailed = (message = 'Invalid or missing credentials') =>
  new ApiError('AUTHENTICATION_FAILED', message);
export const permissionDenied = (message: string) => new ApiError('PERMISSION_DENIED', message);
export const notFound = (message = 'Not found') => new ApiError('NOT_FOUND', message);
export const conflict = (message: string) => new ApiError('CONFLICT', message);
