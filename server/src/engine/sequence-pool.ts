/** Thrown when a request would wait but the queue is already full. */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(readonly waiting: number) {
    super(`All sequences are busy and ${waiting} requests are already waiting`);
  }
}

export interface Lease<T> {
  readonly item: T;
  release(): void;
}

/**
 * A fixed set of items (a context's sequences) lent one request at a time. Requests that find
 * none free wait in FIFO order in a bounded queue; an aborted wait leaves the queue at once.
 */
interface Waiter<T> {
  resolve: (lease: Lease<T>) => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class SequencePool<T> {
  /** Free items, in their order in `items`: the first free one is lent first. */
  readonly #free: T[];
  readonly #rank: Map<T, number>;
  readonly #waiters: Waiter<T>[] = [];

  /**
   * `items` in the order they should be lent: a context's sequences lent lowest id first keep the
   * busy ones consecutive, which llama.cpp decodes in one micro-batch (decode-loop.ts).
   */
  constructor(
    items: readonly T[],
    private readonly maxQueue: () => number,
  ) {
    this.#free = [...items];
    this.#rank = new Map(items.map((item, index) => [item, index]));
  }

  get size(): number {
    return this.#free.length + this.busy;
  }
  #busy = 0;
  get busy(): number {
    return this.#busy;
  }
  get waiting(): number {
    return this.#waiters.length;
  }

  acquire(signal?: AbortSignal): Promise<Lease<T>> {
    signal?.throwIfAborted();
    const item = this.#free.shift();
    if (item !== undefined) return Promise.resolve(this.#lease(item));
    if (this.#waiters.length >= this.maxQueue()) return Promise.reject(new QueueFullError(this.#waiters.length));
    return new Promise<Lease<T>>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const index = this.#waiters.indexOf(waiter);
          if (index >= 0) this.#waiters.splice(index, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
    });
  }

  #lease(item: T): Lease<T> {
    this.#busy++;
    let released = false;
    return {
      item,
      release: () => {
        if (released) return;
        released = true;
        this.#busy--;
        this.#handOver(item);
      },
    };
  }

  #handOver(item: T): void {
    const waiter = this.#waiters.shift();
    if (!waiter) {
      const rank = this.#rank.get(item)!;
      const at = this.#free.findIndex((free) => this.#rank.get(free)! > rank);
      this.#free.splice(at < 0 ? this.#free.length : at, 0, item);
      return;
    }
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
    waiter.resolve(this.#lease(item));
  }

  /** Refuses everyone still waiting (the model is being unloaded). */
  rejectWaiting(error: unknown): void {
    for (const waiter of this.#waiters.splice(0)) {
      if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
      waiter.reject(error);
    }
  }
}
