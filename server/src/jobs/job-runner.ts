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
  /** This runner's name in the job's lease (the replica id). */
  worker?: string;
  /**
   * Several replicas share the store: at start only jobs whose lease ran out are re-queued (the
   * others' running jobs are theirs), and idle runners take over jobs of replicas that died.
   */
  shared?: boolean;
  /** How long a claimed job stays this runner's without a renewal (default 15 s); renewed every third of it. */
  leaseMs?: number;
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
  readonly #worker: string;
  readonly #shared: boolean;
  readonly #leaseMs: number;

  constructor(options: JobRunnerOptions) {
    this.#store = options.store;
    this.#engine = options.engine;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#retryDelayMs = options.retryDelayMs ?? 250;
    this.#pollMs = options.pollMs ?? 5_000;
    this.#worker = options.worker ?? `worker-${process.pid}`;
    this.#shared = options.shared ?? false;
    this.#leaseMs = options.leaseMs ?? 15_000;
    this.#telemetry = options.telemetry;
  }

  start(): void {
    if (this.#loop) return;
    this.#loop = (async () => {
      await this.#requeue('re-queued jobs that were running when the server last stopped');
      await this.#run();
    })();
  }

  /** Alone on the store, every running job was ours; shared, only those whose replica stopped renewing. */
  async #requeue(message: string): Promise<void> {
    try {
      const requeued = await this.#store.requeueRunningJobs(this.#shared ? { expired: true } : {});
      if (requeued > 0) this.#logger.info({ jobs: requeued }, message);
    } catch (error) {
      this.#logger.error({ err: error }, 'could not re-queue running jobs');
    }
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
      let job: JobRecord | undefined;
      try {
        job = await this.#store.claimNextJob(this.#worker, this.#leaseMs);
      } catch (error) {
        this.#logger.error({ err: error }, 'could not claim a job');
      }
      if (!job) {
        // Shared: a job whose replica died (its lease ran out) is queued again and taken next.
        if (this.#shared) await this.#requeue('took over jobs whose replica stopped renewing their lease');
        await this.#idle();
        continue;
      }
      const controller = new AbortController();
      this.#current = { id: job.id, controller };
      const lease = this.#holdLease(job.id, controller);
      try {
        await this.#process(job, controller.signal);
      } catch (error) {
        // A store failure: leave the job to its lease running out rather than spin on it.
        this.#logger.error({ err: error, job_id: job.id }, 'job processing failed');
      } finally {
        clearInterval(lease);
        this.#current = undefined;
      }
    }
    // Stopping: whatever was taken goes back to the queue, to resume on the next start (or elsewhere).
    await this.#store.requeueRunningJobs({ worker: this.#worker }).catch((error: unknown) => this.#logger.error({ err: error }, 'could not re-queue running jobs'));
  }

  /**
   * Renews the job's lease while it runs. A failed renewal means the job is no longer ours (it was
   * cancelled, possibly on another replica, or taken over): its running request is stopped.
   */
  #holdLease(jobId: string, controller: AbortController): NodeJS.Timeout {
    const timer = setInterval(() => {
      this.#store.renewJobLease(jobId, this.#worker, this.#leaseMs).then(
        (held) => {
          if (!held) controller.abort();
        },
        (error: unknown) => this.#logger.warn({ err: error, job_id: jobId }, 'could not renew a job lease'),
      );
    }, Math.max(100, Math.floor(this.#leaseMs / 3)));
    timer.unref();
    return timer;
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
    this.#logger.info({ job_id: job.id, requests: job.requests.length }, 'job started');
    if ((await this.#work(job, signal)) === 'stopped') {
      this.#logger.info({ job_id: job.id }, 'job stopped here: cancelled, taken over or shutting down');
    }
  }

  async #work(job: JobRecord, signal: AbortSignal): Promise<'stopped' | undefined> {
    const results = [...job.results];
    for (const [index, request] of job.requests.entries()) {
      if (isFinished(results[index]!)) continue; // done before a restart
      if (signal.aborted) return 'stopped';
      const owner = await this.#store.getUser(job.userId);
      if (!owner || owner.disabled) {
        await this.#store.cancelJob(job.id);
        this.#logger.info({ job_id: job.id }, 'job cancelled: its owner was disabled or deleted');
        return undefined;
      }
      results[index] = { index, status: 'running' };
      if (!(await this.#store.saveJobResults(job.id, results, this.#worker))) return 'stopped'; // cancelled (or deleted, or taken over) meanwhile
      const result = await this.#runRequest(job.userId, index, request, signal);
      this.#telemetry?.jobItemProcessed(signal.aborted ? 'cancelled' : result.status === 'failed' ? 'failed' : 'succeeded');
      // Cancelled: the store already says so. Stopping: #run re-queues it.
      if (signal.aborted) return 'stopped';
      results[index] = result;
      if (!(await this.#store.saveJobResults(job.id, results, this.#worker))) return 'stopped';
      // One line per request run to its end: operators (and the replica tests) count executions by it.
      this.#logger.info({ job_id: job.id, index, status: result.status }, 'job request done');
    }
    const failed = results.filter((r) => r.status === 'failed').length;
    if (await this.#store.finishJob(job.id, failed > 0 ? 'failed' : 'succeeded', results, this.#worker)) {
      this.#logger.info({ job_id: job.id, requests: results.length, failed }, 'job finished');
    }
    return undefined;
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
