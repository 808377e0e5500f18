// The attempts' timeouts: one timer per client for the earliest deadline (core/deadlines.ts).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadlines } from '../src/core/deadlines.js';

describe('Deadlines', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('expires each deadline at its time, in order, and not a cancelled one', () => {
    const deadlines = new Deadlines();
    const fired: string[] = [];
    deadlines.start(300, () => fired.push('300'));
    const cancelled = deadlines.start(100, () => fired.push('100'));
    deadlines.start(200, () => fired.push('200'));
    deadlines.cancel(cancelled);
    vi.advanceTimersByTime(199);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(['200']);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual(['200', '300']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('moves its timer forward for an earlier deadline started later', () => {
    const deadlines = new Deadlines();
    const fired: number[] = [];
    deadlines.start(60_000, () => fired.push(60_000));
    deadlines.start(50, () => fired.push(50));
    vi.advanceTimersByTime(50);
    expect(fired).toEqual([50]);
    vi.advanceTimersByTime(59_950);
    expect(fired).toEqual([50, 60_000]);
  });

  it('keeps one timer however many attempts follow one another', () => {
    const deadlines = new Deadlines();
    for (let i = 0; i < 100; i++) deadlines.cancel(deadlines.start(60_000, () => {}));
    expect(vi.getTimerCount()).toBe(1);
    // When it fires with nothing left to expire, it is not set again.
    vi.advanceTimersByTime(60_000);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('waits out a deadline beyond the longest timer delay instead of firing at once', () => {
    const deadlines = new Deadlines();
    let fired = false;
    deadlines.start(2 ** 31 + 1_000, () => (fired = true));
    vi.advanceTimersByTime(2 ** 31 - 1);
    expect(fired).toBe(false);
    vi.advanceTimersByTime(1_001);
    expect(fired).toBe(true);
  });
});
