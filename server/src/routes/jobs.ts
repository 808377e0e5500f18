import type { Router } from '@koa/router';
import { createRouter } from '../http/router.js';
import type { Config } from '../config.js';
import type { CreateJobRequest, InferenceRequest, Job, ListJobsData, Permission, ValidationIssue } from '../gen/types.gen.js';
import { zCancelJobPath, zCreateJobBody, zGetJobPath, zListJobsQuery } from '../gen/zod.gen.js';
import { audit } from '../http/audit.js';
import { requireAuth, requirePermission } from '../http/authenticate.js';
import type { AppContext, AppMiddleware, AppState } from '../http/context.js';
import { ApiError, conflict, notFound, validationError } from '../http/errors.js';
import { jsonBody } from '../http/json-body.js';
import { validate } from '../http/validate.js';
import type { JobQueue } from '../jobs/job-queue.js';
import { JobLimitError, type JobRecord } from '../store/types.js';
import type { RouteDeps } from './deps.js';
import { toGenerationRequest } from './inference.js';

/** What a refusal by the per-user job cap suggests waiting: long enough for a short job to end. */
const JOB_CAP_RETRY_AFTER_SECONDS = 5;

export function presentJob(job: JobRecord): Job {
  return {
    id: job.id,
    status: job.status,
    created_at: job.createdAt,
    started_at: job.startedAt,
    finished_at: job.finishedAt,
    user_id: job.userId,
    name: job.name,
    total: job.requests.length,
    completed: job.results.filter((r) => r.status === 'succeeded').length,
    failed: job.results.filter((r) => r.status === 'failed').length,
    results: job.results,
  };
}

/** The checks of POST /inference for one request of a job, with paths under `body.requests[i]`. */
function checkJobRequest(request: InferenceRequest, index: number, limits: Config['limits']): ValidationIssue[] {
  const at = `body.requests[${index}]`;
  if (request.stream) return [{ path: `${at}.stream`, message: 'Jobs do not stream: leave stream out or false' }];
  try {
    toGenerationRequest(request, limits);
    return [];
  } catch (error) {
    if (!(error instanceof ApiError) || !Array.isArray(error.details)) throw error;
    return error.details.map((issue) => ({ ...issue, path: issue.path.replace(/^body/, at) }));
  }
}

/**
 * Batch jobs: submitting and seeing one's own needs `run_inference`; everyone's, `manage_queue`.
 * Another user's job is answered 404 without `manage_queue`, so its existence is not disclosed.
 */
export function jobRoutes(deps: RouteDeps, jobs: JobQueue): Router<AppState> {
  const { config, store } = deps;
  const router = createRouter();
  const has = (ctx: AppContext, permission: Permission) => ctx.state.principal!.permissions.includes(permission);

  // Either permission lets a principal look at jobs; with neither, the denial is the usual 403.
  const canSeeJobs: AppMiddleware = (ctx, next) =>
    has(ctx, 'run_inference') || has(ctx, 'manage_queue') ? next() : requirePermission(store, 'run_inference')(ctx, next);

  const findJob = async (ctx: AppContext): Promise<JobRecord> => {
    const { id } = ctx.state.input.params as { id: string };
    const job = await store.getJob(id);
    if (!job || (job.userId !== ctx.state.principal!.user.id && !has(ctx, 'manage_queue'))) throw notFound(`No job with id ${id}`);
    return job;
  };

  router.post('/jobs', requireAuth, requirePermission(store, 'run_inference'), jsonBody(() => config.limits.max_body_bytes), validate({ body: zCreateJobBody }), async (ctx) => {
    const { requests, name } = ctx.state.input.body as CreateJobRequest;
    const issues = requests.flatMap((request, index) => checkJobRequest(request, index, config.limits));
    if (issues.length > 0) throw validationError(issues);
    const cap = config.jobs.max_active_per_user;
    const job = await jobs.submit({ userId: ctx.state.principal!.user.id, name: name ?? null, requests }).catch(async (error: unknown) => {
      if (!(error instanceof JobLimitError)) throw error;
      const { active } = error;
      await audit(store, ctx, { action: 'job.create', outcome: 'denied', target: null, details: { reason: 'max_active_jobs', active, limit: cap } });
      // A slot frees when one of the user's jobs ends: worth retrying after a while, not at once.
      throw new ApiError(
        'RATE_LIMITED',
        `This user already has ${active} unfinished jobs, the limit ([jobs] max_active_per_user is ${cap}); wait for one to finish or cancel one`,
        { reason: 'max_active_jobs', active, limit: cap, retry_after_seconds: JOB_CAP_RETRY_AFTER_SECONDS },
        { 'Retry-After': String(JOB_CAP_RETRY_AFTER_SECONDS) },
      );
    });
    await audit(store, ctx, { action: 'job.create', outcome: 'success', target: job.id, details: { requests: requests.length } });
    ctx.status = 202;
    ctx.set('Location', `/api/v1/jobs/${job.id}`);
    ctx.body = presentJob(job);
  });

  router.get(
    '/jobs',
    requireAuth,
    canSeeJobs,
    validate({ query: zListJobsQuery }),
    (ctx, next) => {
      const query = ctx.state.input.query as NonNullable<ListJobsData['query']>;
      const others = query.all || (query.user_id !== undefined && query.user_id !== ctx.state.principal!.user.id);
      return others ? requirePermission(store, 'manage_queue')(ctx, next) : next();
    },
    async (ctx) => {
      const query = ctx.state.input.query as NonNullable<ListJobsData['query']> & { limit: number };
      const userId = query.user_id ?? (query.all ? undefined : ctx.state.principal!.user.id);
      // One extra row tells whether an older page exists.
      const rows = await store.listJobs({ userId, beforeSeq: query.cursor === undefined ? undefined : Number(query.cursor), limit: query.limit + 1 });
      const page = rows.slice(0, query.limit);
      ctx.body = { data: page.map(presentJob), next_cursor: rows.length > query.limit ? String(page.at(-1)!.seq) : null };
    },
  );

  router.get('/jobs/:id', requireAuth, canSeeJobs, validate({ params: zGetJobPath }), async (ctx) => {
    ctx.body = presentJob(await findJob(ctx));
  });

  router.post('/jobs/:id/cancel', requireAuth, canSeeJobs, validate({ params: zCancelJobPath }), async (ctx) => {
    const job = await findJob(ctx);
    const outcome = await jobs.cancel(job.id);
    if (!outcome) throw notFound(`No job with id ${job.id}`);
    if (!outcome.cancelled) throw conflict(`The job has already finished (${outcome.job.status})`);
    await audit(store, ctx, { action: 'job.cancel', outcome: 'success', target: job.id, details: { owner: job.userId } });
    ctx.body = presentJob(outcome.job);
  });

  return router;
}
