import type { ParameterizedContext } from 'koa';
import type { Permission } from '../gen/types.gen.js';
import type { InferenceLogFields } from '../observability/telemetry.js';
import type { ApiKeyRecord, UserRecord } from '../store/types.js';

/** Who is making the request, once authenticated. */
export interface Principal {
  user: UserRecord;
  permissions: readonly Permission[];
  method: 'jwt' | 'api_key';
  apiKey?: ApiKeyRecord;
  token?: { jti: string; exp: number };
}

export interface AppState {
  requestId: string;
  principal?: Principal;
  /** Why the presented credentials were refused; thrown by `requireAuth` so rate limiting sees the request first. */
  authFailure?: string;
  /** The parsed, validated request (body, query, path parameters). */
  input: { body?: unknown; query?: unknown; params?: unknown };
  /** The raw request body once read (see `readBody`). */
  rawBody?: Buffer;
  /** Whether `rawBody` passed the JSON shape check as it was read (then it is not scanned again). */
  rawBodyShapeChecked?: boolean;
  /** What an inference request adds to its log line (tokens, timings; never text). */
  inference?: InferenceLogFields;
}

export type AppContext = ParameterizedContext<AppState>;
export type AppMiddleware = (ctx: AppContext, next: () => Promise<unknown>) => Promise<unknown> | unknown;
