import { describe, expect, it } from 'vitest';
import { QueueFullError, SequencePool, type Lease } from '../src/engine/sequence-pool.js';

/** Settles pending promise callbacks (the pool resolves waiters synchronously on release). */
const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Records the order in which a set of acquire() promises settle. */
function track<T>(promises: Promise<Lease<T>>[]) {
  const order: number[] = [];
  const leases: (Lease<T> | undefined)[] = [];
  const errors: unknown[] = [];
  promises.forEach((p, i) =>
    p.then(
      (lease) => {
        order.push(i);
        leases[i] = lease;
      },
      (error) => {
        errors[i] = error;
      },
    ),
  );
  return { order, leases, errors };
}

describe('SequencePool', () => {
  it('lends free items at once and counts busy / waiting / size', async () => {
    const pool = new SequencePool(['a', 'b'], () => 4);
    expect(pool.size).toBe(2);
    const first = await pool.acquire();
    const second = await pool.acquire();
    expect(new Set([first.item, second.item])).toEqual(new Set(['a', 'b']));
    expect(pool.busy).toBe(2);
    expect(pool.size).toBe(2);
    expect(pool.waiting).toBe(0);
    first.release();
    second.release();
    expect(pool.busy).toBe(0);
    expect(pool.size).toBe(2);
  });

  it('lends the first free item in the order given, whatever order they came back in', async () => {
    // A context's sequences lent lowest id first stay consecutive, which llama.cpp decodes in one micro-batch.
    const pool = new SequencePool([0, 1, 2, 3], () => 4);
    const leases = await Promise.all([pool.acquire(), pool.acquire(), pool.acquire(), pool.acquire()]);
    expect(leases.map((lease) => lease.item)).toEqual([0, 1, 2, 3]);
    for (const index of [2, 0, 3, 1]) leases[index]!.release();
    expect((await pool.acquire()).item).toBe(0);
    expect((await pool.acquire()).item).toBe(1);
    leases[1]!.release(); // released twice: no effect
    expect((await pool.acquire()).item).toBe(2);
  });

  it('hands released items to waiters in FIFO order', async () => {
    const pool = new SequencePool(['only'], () => 10);
    const holder = await pool.acquire();
    const waiting = track([pool.acquire(), pool.acquire(), pool.acquire()]);
    await tick();
    expect(pool.waiting).toBe(3);
    expect(waiting.order).toEqual([]);

    holder.release();
    await tick();
    expect(waiting.order).toEqual([0]);
    expect(waiting.leases[0]!.item).toBe('only');
    expect(pool.busy).toBe(1);
    expect(pool.waiting).toBe(2);

    waiting.leases[0]!.release();
    await tick();
    expect(waiting.order).toEqual([0, 1]);
    waiting.leases[1]!.release();
    await tick();
    expect(waiting.order).toEqual([0, 1, 2]);
    waiting.leases[2]!.release();
    expect(pool.busy).toBe(0);
    expect(pool.waiting).toBe(0);
    // The item went back to the free list: the next acquire is immediate.
    const again = await pool.acquire();
    expect(again.item).toBe('only');
  });

  it('a released item goes straight to the first waiter, not to a later caller', async () => {
    const pool = new SequencePool([1], () => 10);
    const holder = await pool.acquire();
    const waiting = track([pool.acquire()]);
    holder.release();
    // A caller arriving right after the release must queue behind the waiter that got the item.
    const late = track([pool.acquire()]);
    await tick();
    expect(waiting.order).toEqual([0]);
    expect(late.order).toEqual([]);
    expect(pool.waiting).toBe(1);
    waiting.leases[0]!.release();
    await tick();
    expect(late.order).toEqual([0]);
  });

  it('rejects with QueueFullError once max_queue requests are waiting, and reads the limit live', async () => {
    let limit = 2;
    const pool = new SequencePool(['x'], () => limit);
    const holder = await pool.acquire();
    const waiting = track([pool.acquire(), pool.acquire()]);
    const full = pool.acquire();
    await expect(full).rejects.toBeInstanceOf(QueueFullError);
    await expect(full).rejects.toMatchObject({ waiting: 2 });
    expect(pool.waiting).toBe(2);

    limit = 3; // runtime change of [engine] max_queue applies to the next request
    const third = track([pool.acquire()]);
    await tick();
    expect(third.errors).toEqual([]);
    expect(pool.waiting).toBe(3);

    holder.release();
    await tick();
    expect(waiting.order).toEqual([0]);
  });

  it('with max_queue reached and a free item, acquire still succeeds (the limit is on waiting only)', async () => {
    const pool = new SequencePool(['a', 'b'], () => 0);
    const a = await pool.acquire();
    expect(a.item).toBe('a');
    await expect(pool.acquire()).resolves.toMatchObject({ item: 'b' });
    await expect(pool.acquire()).rejects.toBeInstanceOf(QueueFullError);
  });

  it('an aborted wait leaves the queue and rejects with the signal reason', async () => {
    const pool = new SequencePool(['x'], () => 5);
    const holder = await pool.acquire();
    const controller = new AbortController();
    const aborted = pool.acquire(controller.signal);
    const other = track([pool.acquire()]);
    await tick();
    expect(pool.waiting).toBe(2);

    const reason = new Error('client went away');
    controller.abort(reason);
    await expect(aborted).rejects.toBe(reason);
    expect(pool.waiting).toBe(1);

    // The item skips the aborted waiter and goes to the next one.
    holder.release();
    await tick();
    expect(other.order).toEqual([0]);
    expect(other.leases[0]!.item).toBe('x');
    expect(pool.busy).toBe(1);
  });

  it('an already aborted signal rejects at once without taking an item or a queue slot', async () => {
    const pool = new SequencePool(['x'], () => 5);
    const controller = new AbortController();
    const reason = new Error('gone before asking');
    controller.abort(reason);
    // acquire() throws synchronously here (throwIfAborted); either way the caller sees the reason.
    let caught: unknown;
    try {
      await pool.acquire(controller.signal);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBe(reason);
    expect(pool.busy).toBe(0);
    expect(pool.waiting).toBe(0);
    await expect(pool.acquire()).resolves.toMatchObject({ item: 'x' });
  });

  it('aborting after the lease was granted has no effect on the pool', async () => {
    const pool = new SequencePool(['x'], () => 5);
    const holder = await pool.acquire();
    const controller = new AbortController();
    const waiting = track([pool.acquire(controller.signal)]);
    holder.release();
    await tick();
    expect(waiting.order).toEqual([0]);
    controller.abort(new Error('late'));
    await tick();
    expect(pool.busy).toBe(1);
    expect(pool.waiting).toBe(0);
    waiting.leases[0]!.release();
    expect(pool.busy).toBe(0);
  });

  it('releasing twice is harmless: the item is not lent twice and busy never goes negative', async () => {
    const pool = new SequencePool(['x'], () => 5);
    const lease = await pool.acquire();
    const waiting = track([pool.acquire(), pool.acquire()]);
    lease.release();
    lease.release();
    await tick();
    // Only the first waiter got the item; the double release did not hand it to the second too.
    expect(waiting.order).toEqual([0]);
    expect(pool.busy).toBe(1);
    expect(pool.waiting).toBe(1);
    waiting.leases[0]!.release();
    waiting.leases[0]!.release();
    await tick();
    expect(waiting.order).toEqual([0, 1]);
    waiting.leases[1]!.release();
    waiting.leases[1]!.release();
    expect(pool.busy).toBe(0);
    expect(pool.size).toBe(1);
    const a = await pool.acquire();
    // One item, so a second acquire must wait rather than get a duplicate.
    const b = track([pool.acquire()]);
    await tick();
    expect(b.order).toEqual([]);
    a.release();
  });

  it('rejectWaiting refuses everyone waiting, leaves leases alone, and ignores later aborts', async () => {
    const pool = new SequencePool(['x'], () => 5);
    const holder = await pool.acquire();
    const controller = new AbortController();
    const w1 = pool.acquire(controller.signal);
    const w2 = pool.acquire();
    await tick();
    expect(pool.waiting).toBe(2);

    const error = new Error('Model demo was unloaded');
    pool.rejectWaiting(error);
    await expect(w1).rejects.toBe(error);
    await expect(w2).rejects.toBe(error);
    expect(pool.waiting).toBe(0);
    expect(pool.busy).toBe(1);

    controller.abort(new Error('after rejection')); // the listener was removed: nothing happens
    holder.release();
    expect(pool.busy).toBe(0);
    await expect(pool.acquire()).resolves.toMatchObject({ item: 'x' });
  });
});
