import type { InferenceRequest } from '../gen/types.gen.js';
import type { JobRecord } from '../store/types.js';

export interface JobSubmission {
  userId: string;
  name: string | null;
  requests: InferenceRequest[];
}

/**
 * What the job routes need from whatever runs jobs. Jobs and their results live in the store
 * (`JobStore`); the queue stores new ones, dispatches them to a worker, and stops cancelled work.
 * Alone on SQLite: the in-process `JobRunner`. Shared on PostgreSQL: `BossJobQueue` (pg-boss), with
 * a worker in every replica.
 */
export interface JobQueue {
  /** Gets ready to take jobs (the shared queue: its schema and queue exist); resolves once it can. */
  start(): Promise<void>;
  /**
   * Stores a job as queued and dispatches it. Throws `JobLimitError` when its user already has
   * `[jobs] max_active_per_user` unfinished jobs.
   */
  submit(job: JobSubmission): Promise<JobRecord>;
  /**
   * Cancels a queued or running job, on whichever worker runs it; answers as `JobStore.cancelJob`.
   */
  cancel(jobId: string): Promise<{ job: JobRecord; cancelled: boolean } | undefined>;
  /** Stops taking jobs; the job in progress goes back to the queue. Resolves once idle. */
  stop(): Promise<void>;
}
