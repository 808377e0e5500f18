import type { Config } from '../config.js';
import type { GenerationRequest, GenerationResult, InferenceEngine } from '../engine/engine.js';
import { QueueFullError } from '../engine/sequence-pool.js';
import type { InferenceRequest, JobResult } from '../gen/types.gen.js';
import { toApiError } from '../http/error-handler.js';
import { ApiError } from '../http/errors.js';
import type { Logger } from '../logging/logger.js';
import type { Telemetry } from '../observability/telemetry.js';
import { engineError, newInferenceId, presentInference, toGenerationRequest } from '../routes/inference.js';
import type { JobRecord, JobStore, UserStore } from '../store/types.js';

export interface JobExecutorOptions {
  /** Jobs, and their owners: a disabled or deleted owner's job does not run on. */
  store: JobStore & Pick<UserStore, 'getUser'>;
  engine: Pick<InferenceEngine, 'generate' | 'checkPrompt'>;
  config: Config;
  logger: Logger;
  /** How long to wait before asking again when the engine's wait queue is full (default 250 ms). */
  retryDelayMs?: number;
  /** Metrics and usage accounting of the requests run. */
  telemetry?: Telemetry;
}

/** How a run ended: the job reached its end (or its owner's cancellation), or it was stopped midway. */
export type JobRunOutcome = 'ended' | 'stopped';

const isFinished = (r: JobResult) => r.status === 'succeeded' || r.status === 'failed' || r.status === 'cancelled';

/**
 * Runs one job's requests one after another through the engine, sharing its sequences and wait
 * queue with live traffic (a full queue makes it wait and retry, never fails a request). Progress
 * is saved after every request under the worker's name, so a job stopped midway (signal aborted,
 * replica killed) resumes at its first unfinished request wherever it is taken next, and a worker
 * that lost the job (cancelled, taken over) stops at its next save.
 */
export class JobExecutor {
  readonly #store: JobExecutorOptions['store'];
  readonly #engine: JobExecutorOptions['engine'];
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #retryDelayMs: number;
  readonly #telemetry?: Telemetry;

  constructor(options: JobExecutorOptions) {
    this.#store = options.store;
    this.#engine = options.engine;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#retryDelayMs = options.retryDelayMs ?? 250;
    this.#telemetry = options.telemetry;
  }

  /** Runs `job` (as taken by `worker`) from its first unfinished request. */
  async run(job: JobRecord, worker: string, signal: AbortSignal): Promise<JobRunOutcome> {
    this.#logger.info({ job_id: job.id, requests: job.requests.length }, 'job started');
    const outcome = await this.#work(job, worker, signal);
    if (outcome === 'stopped') this.#logger.info({ job_id: job.id }, 'job stopped here: cancelled, taken over or shutting down');
    return outcome;
  }

  async #work(job: JobRecord, worker: string, signal: AbortSignal): Promise<JobRunOutcome> {
    const results = [...job.results];
    for (const [index, request] of job.requests.entries()) {
      if (isFinished(results[index]!)) continue; // done before a restart or elsewhere
      if (signal.aborted) return 'stopped';
      const owner = await this.#store.getUser(job.userId);
      if (!owner || owner.disabled) {
        await this.#store.cancelJob(job.id);
        this.#logger.info({ job_id: job.id }, 'job cancelled: its owner was disabled or deleted');
        return 'ended';
      }
      results[index] = { index, status: 'running' };
      if (!(await this.#store.saveJobResults(job.id, results, worker))) return 'stopped'; // cancelled (or deleted, or taken over) meanwhile
      const result = await this.#runRequest(job.userId, index, request, signal);
      this.#telemetry?.jobItemProcessed(signal.aborted ? 'cancelled' : result.status === 'failed' ? 'failed' : 'succeeded');
      // Cancelled: the store already says so. Stopping: the queue puts it back.
      if (signal.aborted) return 'stopped';
      results[index] = result;
      if (!(await this.#store.saveJobResults(job.id, results, worker))) return 'stopped';
      // One line per request run to its end: operators (and the replica tests) count executions by it.
      this.#logger.info({ job_id: job.id, index, status: result.status }, 'job request done');
    }
    const failed = results.filter((r) => r.status === 'failed').length;
    if (!(await this.#store.finishJob(job.id, failed > 0 ? 'failed' : 'succeeded', results, worker))) return 'stopped';
    this.#logger.info({ job_id: job.id, requests: results.length, failed }, 'job finished');
    return 'ended';
  }

  /** Runs one request; its failure (unknown model, prompt too long...) fails only its own item. */
  async #runRequest(userId: string, index: number, request: InferenceRequest, signal: AbortSignal): Promise<JobResult> {
    try {
      const generation = toGenerationRequest(request, this.#config.limits);
      await this.#engine.checkPrompt(generation);
      const result = await this.#generate(generation, signal);
      this.#telemetry?.jobGeneration(userId, request.model, result);
      return { index, status: 'succeeded', response: presentInference(newInferenceId(), request.model, result, generation.toolPlan) };
    } catch (thrown) {
      if (signal.aborted) return { index, status: 'cancelled' };
      let error = toApiError(engineError(thrown, this.#config.engine.parallel));
      if (error.status >= 500) {
        this.#logger.error({ err: thrown }, 'a job request failed');
        error = new ApiError('INTERNAL_ERROR', 'Generation failed');
      }
      return { index, status: 'failed', error: { code: error.code, message: error.message, details: error.details } };
    }
  }

  async #generate(request: GenerationRequest, signal: AbortSignal): Promise<GenerationResult> {
    for (;;) {
      try {
        return await this.#engine.generate(request, { signal });
      } catch (error) {
        if (!(error instanceof QueueFullError) || signal.aborted) throw error;
        // Live traffic fills the queue: a background job waits its turn instead of failing.
        await sleep(this.#retryDelayMs, signal);
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
