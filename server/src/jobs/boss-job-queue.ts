import pg from 'pg';
import { PgBoss, type Job as BossJob, type SendOptions } from 'pg-boss';
import type { Config } from '../config.js';
import type { Logger } from '../logging/logger.js';
import type { JobRecord, JobResult, JobStore } from '../store/types.js';
import { JobExecutor, type JobExecutorOptions } from './job-executor.js';
import type { JobQueue, JobSubmission } from './job-queue.js';

export interface BossJobQueueOptions extends JobExecutorOptions {
  /** The shared store's database; pg-boss keeps its own tables there, in their own schema. */
  databaseUrl: string;
  /** This process's name on the jobs it takes: unique per process, so a restarted replica never writes to a job its previous process held. */
  worker: string;
  /** The replica id, shown in pg-boss's instance registry. */
  replicaId: string;
}

/** The queue every replica works, and the one jobs that used up their attempts land in. */
const QUEUE = 'inferno-jobs';
const GIVEN_UP = 'inferno-jobs-given-up';
/** pg-boss's ceiling on one attempt; a longer job is retried and resumes at its first unfinished request. */
const MAX_ATTEMPT_SECONDS = 86_400;

interface Dispatch {
  id: string;
}

/**
 * The shared mode's job queue, on pg-boss. The jobs table stays the record the API reads (status,
 * per-request results); pg-boss only dispatches: creating a job inserts its row and sends a pg-boss
 * job with the same id in one transaction, and every replica works the queue one job at a time. A
 * running job's replica heartbeats it; when the heartbeat stops (the replica was killed), pg-boss's
 * supervisor fails the attempt and another replica takes the retry, resuming at the first
 * unfinished request (the store fences the old holder out). Cancelling cancels the pg-boss job too:
 * the replica running it learns so at its next heartbeat and stops the running request.
 */
export class BossJobQueue implements JobQueue {
  readonly #store: JobStore;
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #executor: JobExecutor;
  readonly #databaseUrl: string;
  readonly #worker: string;
  readonly #replicaId: string;
  #boss?: PgBoss;
  #stopping = false;
  #current?: { id: string; controller: AbortController };

  constructor(options: BossJobQueueOptions) {
    this.#store = options.store;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#executor = new JobExecutor(options);
    this.#databaseUrl = options.databaseUrl;
    this.#worker = options.worker;
    this.#replicaId = options.replicaId;
  }

  /** Options every dispatch carries, so each job holds the timing of the replica that took it in. */
  #sendOptions(): SendOptions {
    const jobs = this.#config.jobs;
    return { heartbeatSeconds: jobs.heartbeat_seconds, expireInSeconds: MAX_ATTEMPT_SECONDS, retryLimit: jobs.max_attempts - 1, retryDelay: 0, deadLetter: GIVEN_UP };
  }

  async start(): Promise<void> {
    if (this.#boss) return;
    const jobs = this.#config.jobs;
    const boss = new PgBoss({
      connectionString: this.#databaseUrl,
      schema: jobs.queue_schema ?? (await defaultQueueSchema(this.#databaseUrl)),
      application_name: `inferno-jobs ${this.#replicaId}`.slice(0, 63),
      // Fetching, heartbeats and supervision; sends run on the store's transaction.
      max: 4,
      useListenNotify: true,
      superviseIntervalSeconds: jobs.supervise_interval_seconds,
      monitorIntervalSeconds: jobs.supervise_interval_seconds,
      instanceName: this.#replicaId,
      // No cron schedules are used: no scheduler or clock monitor on every replica.
      schedule: false,
    });
    boss.on('error', (error: unknown) => this.#logger.error({ err: error }, 'job queue (pg-boss) error'));
    boss.on('warning', (warning: { message: string }) => this.#logger.warn({ detail: warning.message }, 'job queue (pg-boss) warning'));
    // Replicas starting together: pg-boss installs or migrates its schema under an advisory lock, once.
    await boss.start();
    this.#boss = boss;
    await boss.createQueue(GIVEN_UP, { retryLimit: 5 });
    await boss.createQueue(QUEUE, { ...this.#sendOptions(), notify: true });
    await this.#adoptUndispatched();
    const polling = { pollingIntervalSeconds: jobs.poll_interval_seconds, notifyPollingIntervalSeconds: jobs.poll_interval_seconds };
    await boss.work<Dispatch>(QUEUE, { ...polling, batchSize: 1, localConcurrency: 1, heartbeatRefreshSeconds: jobs.heartbeat_refresh_seconds }, ([job]) => this.#handle(job!));
    await boss.work<Dispatch>(GIVEN_UP, { ...polling, batchSize: 1 }, ([job]) => this.#giveUp(job!));
  }

  /**
   * Unfinished jobs that have no pg-boss job (stored before this version, or whose dispatch pg-boss
   * deleted after its retention) are dispatched now; a send of an id pg-boss holds is a no-op.
   */
  async #adoptUndispatched(): Promise<void> {
    const boss = this.#boss!;
    const unfinished = await this.#store.listUnfinishedJobIds();
    let adopted = 0;
    for (const id of unfinished) {
      if (await boss.send(QUEUE, { id }, { ...this.#sendOptions(), id })) {
        adopted++;
        continue;
      }
      // pg-boss holds the id. A dispatch that has ended while its job is unfinished (its give-up
      // never got through, say) will never run again: the job fails, rather than keep one of its
      // user's job slots for ever. (One just finishing elsewhere is already ended: a no-op.)
      const held = await boss.getJobById(QUEUE, id);
      if (held && (held.state === 'completed' || held.state === 'failed' || held.state === 'cancelled')) {
        await this.#fail(id, `The job's dispatch ended (${held.state}) before the job did`);
      }
    }
    if (adopted > 0) this.#logger.info({ jobs: adopted }, 'dispatched unfinished jobs the queue did not hold');
  }

  async submit(job: JobSubmission): Promise<JobRecord> {
    const boss = this.#boss;
    if (!boss) throw new Error('the job queue has not started');
    return this.#store.createJob(job, {
      maxActive: this.#config.jobs.max_active_per_user,
      dispatch: async (created, tx) => {
        await boss.send(QUEUE, { id: created.id } satisfies Dispatch, { ...this.#sendOptions(), id: created.id, db: tx as { executeSql(text: string, values?: unknown[]): Promise<{ rows: any[] }> } });
      },
    });
  }

  async cancel(jobId: string): Promise<{ job: JobRecord; cancelled: boolean } | undefined> {
    const outcome = await this.#store.cancelJob(jobId);
    if (!outcome?.cancelled) return outcome;
    if (this.#current?.id === jobId) this.#current.controller.abort();
    // Queued: it is never handed out. Running elsewhere: that replica's next heartbeat finds its claim gone.
    await this.#boss?.cancel(QUEUE, jobId).catch((error: unknown) => this.#logger.warn({ err: error, job_id: jobId }, 'could not cancel the job in the queue; its runner stops at its next save'));
    return outcome;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#current?.controller.abort();
    await this.#boss?.stop({ graceful: true, timeout: 10_000, close: true }).catch((error: unknown) => this.#logger.error({ err: error }, 'could not stop the job queue cleanly'));
  }

  /** One attempt at a job. Returning completes the pg-boss job; throwing fails the attempt, and pg-boss retries it. */
  async #handle(dispatch: BossJob<Dispatch>): Promise<void> {
    const id = dispatch.data.id;
    const job = await this.#store.takeJob(id, this.#worker);
    if (!job) return; // cancelled, finished or gone: nothing to run
    const controller = new AbortController();
    this.#current = { id, controller };
    // A stop that came while the job was being taken found nothing to abort: it is handed back untouched.
    if (this.#stopping) controller.abort();
    // Also the claim lost (cancelled, or the heartbeat late and the job retried elsewhere), or pg-boss
    // stopping; `any` is aborted at once when that signal already was.
    const signal = AbortSignal.any([controller.signal, dispatch.signal]);
    try {
      const outcome = await this.#executor.run(job, this.#worker, signal);
      if (outcome === 'stopped' && this.#stopping) {
        // Handed back rather than completed: queued again, and retried elsewhere without spending an attempt.
        await this.#store.requeueRunningJobs({ worker: this.#worker });
        await this.#handBack(dispatch);
        this.#logger.info({ job_id: id }, 'job handed back to the queue: this replica is stopping');
      }
    } finally {
      this.#current = undefined;
    }
  }

  /**
   * Gives a dispatch back to the queue at a stop: its attempt fails (fenced to the attempt this
   * replica holds), and the attempt is given back in the same transaction, so another replica can take
   * it only once both are in. A rolling restart is no fault of the job's: only attempts that ended
   * otherwise (a killed replica, a lost heartbeat) count towards `[jobs] max_attempts`. When the
   * attempt cannot be given back (the claim was lost meanwhile), the handler's return leaves the
   * dispatch as it is.
   */
  async #handBack(dispatch: BossJob<Dispatch>): Promise<void> {
    const boss = this.#boss!;
    const client = new pg.Client({ connectionString: this.#databaseUrl });
    await client.connect();
    const db = { executeSql: (text: string, values?: unknown[]) => client.query(text, values) };
    try {
      await client.query('BEGIN');
      await boss.fail(QUEUE, dispatch, { reason: 'handed back: the replica was stopping' }, { db });
      // Only when that fail was ours (fenced: this attempt's claim was still held), the dispatch now
      // waits for its retry; pg-boss counts the attempt when the next claim takes it.
      const held = await boss.getJobById(QUEUE, dispatch.id, { db });
      if (held?.state === 'retry' && held.retryCount === dispatch.retryCount) {
        await boss.update(QUEUE, undefined, { id: dispatch.id, retryLimit: held.retryLimit + 1, db });
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      await client.end();
    }
  }

  /** A job that used up its attempts (it kept killing or stopping its replicas): it fails, with what it finished kept. */
  async #giveUp(dispatch: BossJob<Dispatch>): Promise<void> {
    await this.#fail(dispatch.data.id, `The job was given up after ${this.#config.jobs.max_attempts} attempts`);
  }

  /** Ends an unfinished job as failed, its finished requests kept and the others failed with `message`. */
  async #fail(id: string, message: string): Promise<void> {
    const job = await this.#store.takeJob(id, this.#worker);
    if (!job) return;
    const error = { code: 'INTERNAL_ERROR' as const, message, details: null };
    const results = job.results.map((r): JobResult => (r.status === 'queued' || r.status === 'running' ? { index: r.index, status: 'failed', error } : r));
    if (await this.#store.finishJob(job.id, 'failed', results, this.#worker)) this.#logger.warn({ job_id: job.id, reason: message }, 'job failed: it cannot run on');
  }
}

/** `pgboss`, or `<schema>_pgboss` beside a store kept in another schema (a `search_path` in the URL), so deployments sharing a database stay apart. */
async function defaultQueueSchema(databaseUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ schema: string }>('SELECT current_schema() AS schema');
    const schema = rows[0]?.schema ?? 'public';
    return schema === 'public' ? 'pgboss' : `${schema}_pgboss`;
  } finally {
    await client.end();
  }
}
