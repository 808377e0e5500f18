import type { RequestOptions } from '../core/options.js';
import { cancelJob, createJob, getJob, listJobs } from '../gen/sdk.gen.js';
import type { CreateJobRequest, Job, JobPage, ListJobsData } from '../gen/types.gen.js';
import { Resource } from './resource.js';

/** Batches of inference requests run in the background (`/api/v1/jobs`). */
export class JobsResource extends Resource {
  /** Queues a batch (needs `run_inference`); resolves once it is accepted, not when it is done. */
  create(request: CreateJobRequest, options?: RequestOptions): Promise<Job> {
    return this.transport.send('createJob', (o) => createJob({ ...o, body: request }), options);
  }

  /** One page of jobs, newest first: the caller's own, or everyone's with `manage_queue`. */
  list(query?: ListJobsData['query'], options?: RequestOptions): Promise<JobPage> {
    return this.transport.send('listJobs', (o) => listJobs(query ? { ...o, query } : o), options);
  }

  /** A job with its results so far. */
  get(id: string, options?: RequestOptions): Promise<Job> {
    return this.transport.send('getJob', (o) => getJob({ ...o, path: { id } }), options);
  }

  /** Cancels a queued or running job; a finished one is a `ConflictError`. */
  cancel(id: string, options?: RequestOptions): Promise<Job> {
    return this.transport.send('cancelJob', (o) => cancelJob({ ...o, path: { id } }), options);
  }
}
