import type { ErrorCode, OpenAiErrorResponse } from '../gen/types.gen.js';
import { ApiError } from './errors.js';

type OpenAIErrorType = OpenAiErrorResponse['error']['type'];

/** The OpenAI-compatible API, whose errors take OpenAI's shape. */
export const isOpenAIPath = (path: string) => path === '/v1' || path.startsWith('/v1/');

/** Each native code as OpenAI's `type`, and the `code` OpenAI clients know where there is one. */
const OPENAI_ERROR: Readonly<Record<ErrorCode, { type: OpenAIErrorType; code: string }>> = {
  VALIDATION_ERROR: { type: 'invalid_request_error', code: 'validation_error' },
  AUTHENTICATION_FAILED: { type: 'authentication_error', code: 'invalid_api_key' },
  PERMISSION_DENIED: { type: 'permission_error', code: 'permission_denied' },
  NOT_FOUND: { type: 'not_found_error', code: 'not_found' },
  METHOD_NOT_ALLOWED: { type: 'invalid_request_error', code: 'method_not_allowed' },
  CONFLICT: { type: 'invalid_request_error', code: 'conflict' },
  PAYLOAD_TOO_LARGE: { type: 'invalid_request_error', code: 'payload_too_large' },
  UNSUPPORTED_MEDIA_TYPE: { type: 'invalid_request_error', code: 'unsupported_media_type' },
  RATE_LIMITED: { type: 'rate_limit_error', code: 'rate_limit_exceeded' },
  INTERNAL_ERROR: { type: 'server_error', code: 'internal_error' },
  SERVICE_UNAVAILABLE: { type: 'server_error', code: 'server_overloaded' },
};

/** An API error that names OpenAI's `param` and `code` itself (e.g. `model` / `model_not_found`). */
export class OpenAIApiError extends ApiError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly openai: { param: string | null; code: string | null },
    headers: Record<string, string> = {},
  ) {
    super(code, message, null, headers);
  }
}

/** `body.messages[0].content` → `messages[0].content`; the body as a whole is no parameter. */
const toParam = (path: string) => (path === 'body' ? null : path.replace(/^(body|query|params)\./, ''));

/**
 * The OpenAI shape of an API error. A validation error's first bad field becomes `param`, and
 * every issue goes into the message, since OpenAI clients show only the message.
 */
export function openAIErrorBody(error: ApiError): OpenAiErrorResponse {
  const { type, code } = OPENAI_ERROR[error.code];
  if (error instanceof OpenAIApiError) {
    return { error: { message: error.message, type, param: error.openai.param, code: error.openai.code ?? code } };
  }
  const issues = Array.isArray(error.details) ? error.details : [];
  const message = issues.length > 0 ? `${error.message}: ${issues.map((i) => `${toParam(i.path) ?? 'body'}: ${i.message}`).join('; ')}` : error.message;
  return { error: { message, type, param: issues[0] ? toParam(issues[0].path) : null, code } };
}
