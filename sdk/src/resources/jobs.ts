import type { RequestOptions } from '../core/options.js';
import type { APIPromise, PagePromise } from '../core/response.js';
import { cancelJob, createJob, getJob, listJobs } from '../gen/sdk.gen.js';
import type { CreateJobRequest, Job, ListJobsData } from '../gen/types.gen.js';
import type { InferenceParams } from './inference.js';
import { Resource } from './resource.js';

/**
 * The request of {@link JobsResource.create}: each request is one of `POST /api/v1/inference`
 * (exactly one of `prompt` and `messages`, as {@link InferenceParams} says), never streamed.
 */
export type CreateJobParams = Omit<CreateJobRequest, 'requests'> & { requests: (InferenceParams & { stream?: false })[] };

/** Batches of inference requests run in the background (`/api/v1/jobs`). */
export class JobsResource extends Resource {
  /**
   * Queues a batch (needs `run_inference`); resolves once it is accepted, not when it is done.
   * Sent with an `Idempotency-Key`, so a retry never queues it twice.
   */
  create(request: CreateJobParams, options?: RequestOptions): APIPromise<Job> {
    return this.transport.send('createJob', (o) => createJob({ ...o, body: request }), options);
  }

  /**
   * Jobs, newest first: the caller's own, or everyone's with `manage_queue`. Await it for the
   * first page (`data`, `next_cursor`, `hasNextPage()`, `getNextPage()`), or iterate it for every
   * job of every page.
   *
   * @example
   * ```ts
   * for await (const job of client.jobs.list({ status: 'queued' })) console.log(job.id);
   * const page = await client.jobs.list({ limit: 10 });
   * if (page.hasNextPage()) console.log((await page.getNextPage()).data.length);
   * ```
   */
  list(query?: ListJobsData['query'], options?: RequestOptions): PagePromise<Job> {
    return this.paginate<Job, NonNullable<ListJobsData['query']>>(
      'listJobs',
      (q) => (o) => listJobs({ ...o, query: q }),
      { ...query },
      options,
    );
  }

  /** A job with its results so far. */
  get(id: string, options?: RequestOptions): APIPromise<Job> {
    return this.transport.send('getJob', (o) => getJob({ ...o, path: { id } }), options);
  }

  /** Cancels a queued or running job; a finished one is a `ConflictError`. */
  cancel(id: string, options?: RequestOptions): APIPromise<Job> {
    return this.transport.send('cancelJob', (o) => cancelJob({ ...o, path: { id } }), options);
  }
}
