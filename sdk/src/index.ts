// The public surface of @inferno/sdk. Response validation with zod lives in `@inferno/sdk/zod`,
// so that this entry never pulls zod into a bundle.

export { InfernoClient } from './client.js';
export type {
  ClientOptions,
  LoginCredentials,
  Logger,
  RateLimitOptions,
  RequestOptions,
  ResponseValidator,
  RetryEvent,
  RetryOptions,
} from './core/options.js';
export {
  AbortError,
  APIError,
  AuthenticationError,
  ConflictError,
  ConnectionError,
  type ErrorDetails,
  type ErrorResponseInit,
  InfernoError,
  type InfernoErrorCode,
  InternalServerError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  type ResponseIssue,
  ResponseValidationError,
  ServiceUnavailableError,
  TimeoutError,
  UnsupportedMediaTypeError,
  ValidationError,
} from './core/errors.js';
export { type RateLimitInfo, parseRateLimit } from './core/rate-limit.js';
export {
  APIPromise,
  EventStream,
  Page,
  type PageBody,
  PagePromise,
  type ResponseMeta,
  type WithResponse,
} from './core/response.js';
export {
  type AttemptFailure,
  backoffDelay,
  DEFAULT_RETRY_TIMING,
  isRetryable,
  NOT_PROCESSED_STATUSES,
  parseRetryAfter,
  planRetry,
  RETRYABLE_STATUSES,
  type RetryDecision,
  type RetryState,
  type RetryTiming,
} from './core/retry.js';
export { type RawServerSentEvent, type ServerSentEvent, SseParser } from './core/sse.js';
export { ApiKeysResource } from './resources/api-keys.js';
export { AuditLogsResource } from './resources/audit-logs.js';
export { AuthResource } from './resources/auth.js';
export { CacheResource } from './resources/cache.js';
export { ConfigResource } from './resources/config.js';
export { EmbeddingsResource } from './resources/embeddings.js';
export { HealthResource } from './resources/health.js';
export { type InferenceParams, InferenceResource, type InferenceStreamEvent } from './resources/inference.js';
export { type CreateJobParams, JobsResource } from './resources/jobs.js';
export { MetricsResource } from './resources/metrics.js';
export { UsageResource } from './resources/usage.js';
export { type ModelFile, ModelsResource, type UploadModelParams } from './resources/models.js';
export { UsersResource } from './resources/users.js';
export type {
  ApiError,
  ApiErrorBody,
  ApiKey,
  ApiKeyList,
  AuditEntry,
  AuditLogPage,
  CacheStats,
  ChatMessage,
  CreateJobRequest,
  Job,
  JobPage,
  JobResult,
  JobResultStatus,
  JobStatus,
  ListJobsData,
  LoadedModelStats,
  ConfigPatch,
  ConfigView,
  Embedding,
  EmbeddingsRequest,
  EmbeddingsResponse,
  FinishReason,
  InferenceDoneEvent,
  InferenceRequest,
  InferenceResponse,
  InferenceTokenEvent,
  ListAuditLogsData,
  MetricsSummary,
  ResponseFormat,
  MetricsDistribution,
  CountsByLabel,
  GetUsageData,
  UsageReport,
  UsageRow,
  Timings,
  Tool,
  ToolCall,
  ToolChoice,
  Usage,
  CreateApiKeyRequest,
  CreatedApiKey,
  CreateUserRequest,
  ErrorCode,
  Health,
  Id,
  ListApiKeysData,
  LoginRequest,
  Model,
  ModelId,
  ModelList,
  Permission,
  Principal,
  Readiness,
  Role,
  Timestamp,
  TokenResponse,
  UpdateUserRequest,
  User,
  UserList,
  ValidationIssue,
} from './gen/types.gen.js';
