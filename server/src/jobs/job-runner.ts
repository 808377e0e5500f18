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
import type { JobQueue } from './job-queue.js';

export interface JobRunnerOptions {
  /** Jobs, and their owners: a disabled or deleted owner's job does not run on. */
  store: JobStore & Pick<UserStore, 'getUser'>;
  engine: Pick<InferenceEngine, 'generate' | 'checkPrompt'>;
  config: Config;
  logger: Logger;
  /** How long to wait before asking again when the engine's wait queue is full (default 250 ms). */
  retryDelayMs?: number;
  /** How often an idle runner looks for work it was not told about (default 5 s). */
  pollMs?: number;
  /** Metrics and usage accounting of the requests run. */
  telemetry?: Telemetry;
}

const isFinished = (r: JobResult) => r.status === 'succeeded' || r.status === 'failed' || r.status === 'cancelled';

/**
 * The in-process job worker: takes queued jobs in submission order and runs their requests one
 * after another through the engine, sharing its sequences and wait queue with live traffic (a full
 * queue makes it wait and retry, never fails a request). Progress is saved after every request, so
 * a job stopped midway resumes at its first unfinished request.
 */
export class JobRunner implements JobQueue {
  readonly #store: JobRunnerOptions['store'];
  readonly #engine: JobRunnerOptions['engine'];
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #retryDelayMs: number;
  readonly #pollMs: number;
  readonly #telemetry?: Telemetry;
  #loop?: Promise<void>;
  #stopping = false;
  #wake?: () => void;
  #current?: { id: string; controller: AbortController };

  constructor(options: JobRunnerOptions) {
    this.#store = options.store;
    this.#engine = options.engine;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#retryDelayMs = options.retryDelayMs ?? 250;
    this.#pollMs = options.pollMs ?? 5_000;
    this.#telemetry = options.telemetry;
  }

  start(): void {
    if (this.#loop) return;
    const requeued = this.#store.requeueRunningJobs();
    if (requeued > 0) this.#logger.info({ jobs: requeued }, 're-queued jobs that were running when the server last stopped');
    this.#loop = this.#run();
  }

  notify(): void {
    this.#wake?.();
  }

  cancel(jobId: string): void {
    if (this.#current?.id === jobId) this.#current.controller.abort();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#current?.controller.abort();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      const job = this.#store.claimNextJob();
      if (!job) {
        await this.#idle();
        continue;
      }
      const controller = new AbortController();
      this.#current = { id: job.id, controller };
      try {
        await this.#process(job, controller.signal);
      } catch (error) {
        // A store failure: leave the job for the next start rather than spin on it.
        this.#logger.error({ err: error, job_id: job.id }, 'job processing failed');
      } finally {
        this.#current = undefined;
      }
    }
    // Stopping: whatever was taken goes back to the queue, to resume on the next start.
    this.#store.requeueRunningJobs();
  }

  #idle(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.#pollMs);
      timer.unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }

  async #process(job: JobRecord, signal: AbortSignal): Promise<void> {
    const results = [...job.results];
    this.#logger.info({ job_id: job.id, requests: job.requests.length }, 'job started');
    for (const [index, request] of job.requests.entries()) {
      if (isFinished(results[index]!)) continue; // done before a restart
      if (signal.aborted) return;
      const owner = this.#store.getUser(job.userId);
      if (!owner || owner.disabled) {
        this.#store.cancelJob(job.id);
        this.#logger.info({ job_id: job.id }, 'job cancelled: its owner was disabled or deleted');
        return;
      }
      results[index] = { index, status: 'running' };
      if (!this.#store.saveJobResults(job.id, results)) return; // cancelled (or deleted) meanwhile
      const result = await this.#runRequest(job.userId, index, request, signal);
      this.#telemetry?.jobItemProcessed(signal.aborted ? 'cancelled' : result.status === 'failed' ? 'failed' : 'succeeded');
      // Cancelled: the store already says so. Stopping: #run re-queues it.
      if (signal.aborted) return;
      results[index] = result;
      if (!this.#store.saveJobResults(job.id, results)) return;
    }
    const failed = results.filter((r) => r.status === 'failed').length;
    if (this.#store.finishJob(job.id, failed > 0 ? 'failed' : 'succeeded', results)) {
      this.#logger.info({ job_id: job.id, requests: results.length, failed }, 'job finished');
    }
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
