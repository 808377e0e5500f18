import type { Config } from '../config.js';
import type { Logger } from '../logging/logger.js';
import type { JobRecord } from '../store/types.js';
import { JobExecutor, type JobExecutorOptions } from './job-executor.js';
import type { JobQueue, JobSubmission } from './job-queue.js';

export interface JobRunnerOptions extends JobExecutorOptions {
  /** How often an idle runner looks for work it was not told about (default 5 s). */
  pollMs?: number;
  /** This runner's name on the jobs it takes. */
  worker?: string;
}

/**
 * The embedded (SQLite) job queue: one worker in this process takes queued jobs in submission
 * order, one at a time. Alone on its store, every job left running at start was its own (the
 * process stopped or crashed), so it is queued again and resumes at its first unfinished request.
 */
export class JobRunner implements JobQueue {
  readonly #store: JobRunnerOptions['store'];
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #executor: JobExecutor;
  readonly #pollMs: number;
  readonly #worker: string;
  #loop?: Promise<void>;
  #stopping = false;
  #wake?: () => void;
  #current?: { id: string; controller: AbortController };

  constructor(options: JobRunnerOptions) {
    this.#store = options.store;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#executor = new JobExecutor(options);
    this.#pollMs = options.pollMs ?? 5_000;
    this.#worker = options.worker ?? `worker-${process.pid}`;
  }

  async start(): Promise<void> {
    if (this.#loop) return;
    this.#loop = (async () => {
      try {
        const requeued = await this.#store.requeueRunningJobs();
        if (requeued > 0) this.#logger.info({ jobs: requeued }, 're-queued jobs that were running when the server last stopped');
      } catch (error) {
        this.#logger.error({ err: error }, 'could not re-queue running jobs');
      }
      await this.#run();
    })();
  }

  async submit(job: JobSubmission): Promise<JobRecord> {
    const created = await this.#store.createJob(job, { maxActive: this.#config.jobs.max_active_per_user });
    this.#wake?.();
    return created;
  }

  async cancel(jobId: string): Promise<{ job: JobRecord; cancelled: boolean } | undefined> {
    const outcome = await this.#store.cancelJob(jobId);
    if (outcome?.cancelled && this.#current?.id === jobId) this.#current.controller.abort();
    return outcome;
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
        job = await this.#store.claimNextJob(this.#worker);
      } catch (error) {
        this.#logger.error({ err: error }, 'could not claim a job');
      }
      if (!job) {
        await this.#idle();
        continue;
      }
      const controller = new AbortController();
      this.#current = { id: job.id, controller };
      try {
        await this.#executor.run(job, this.#worker, controller.signal);
      } catch (error) {
        // A store failure: the job stays running and is queued again at the next start.
        this.#logger.error({ err: error, job_id: job.id }, 'job processing failed');
      } finally {
        this.#current = undefined;
      }
    }
    // Stopping: whatever was taken goes back to the queue, to resume on the next start.
    await this.#store.requeueRunningJobs({ worker: this.#worker }).catch((error: unknown) => this.#logger.error({ err: error }, 'could not re-queue running jobs'));
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
}
