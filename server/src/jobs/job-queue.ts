/**
 * What the job routes need from whatever runs jobs. Jobs themselves live in the store (`JobStore`);
 * the queue only wakes workers and stops cancelled work. In-process today (`JobRunner`); a queue on
 * Redis with workers in several replicas fits the same shape (DESIGN: scale beyond one machine).
 */
export interface JobQueue {
  /** Starts taking queued jobs, first re-queueing jobs a crash left running. */
  start(): void;
  /** A job was stored as queued: wake a worker. */
  notify(): void;
  /** A job was marked cancelled in the store: stop its generation if it is running. */
  cancel(jobId: string): void;
  /** Stops taking jobs; the job in progress goes back to the queue. Resolves once idle. */
  stop(): Promise<void>;
}
