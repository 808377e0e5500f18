// Attempt timeouts without a timer per attempt: one timer per client, set for the earliest
// deadline of the attempts in flight. A timer per attempt is costly when requests follow one
// another (Node builds its timer list for the duration and drops it again on every clear:
// measured with bench/sdk-js-cost.ts); here an attempt costs a Set entry. Browser-safe.

/** One pending deadline; give it back to {@link Deadlines.cancel} when the attempt is done. */
export interface Deadline {
  readonly at: number;
  readonly onExpire: () => void;
}

// setTimeout's longest delay; a longer one would fire at once.
const MAX_DELAY = 2 ** 31 - 1;

/** The deadlines of one client's attempts. */
export class Deadlines {
  readonly #pending = new Set<Deadline>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity;

  /** Calls `onExpire` once `ms` have passed, unless cancelled first. */
  start(ms: number, onExpire: () => void): Deadline {
    const deadline: Deadline = { at: Date.now() + ms, onExpire };
    this.#pending.add(deadline);
    if (deadline.at < this.#armedFor) this.#arm(deadline.at);
    return deadline;
  }

  /** Forgets a deadline (its attempt is done); the timer stays set for the next. */
  cancel(deadline: Deadline | undefined): void {
    if (deadline) this.#pending.delete(deadline);
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#armedFor = at;
    this.#timer = setTimeout(() => this.#expire(), Math.min(MAX_DELAY, Math.max(0, at - Date.now())));
    // It must not keep a process alive after its last request: the request's connection does while it runs.
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #expire(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const deadline of this.#pending) {
      if (deadline.at <= now) {
        this.#pending.delete(deadline);
        deadline.onExpire();
      } else if (deadline.at < next) {
        next = deadline.at;
      }
    }
    if (next !== Infinity) this.#arm(next);
  }
}
