import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  DEFAULT_RETRY_TIMING,
  isIdempotent,
  isRetryable,
  parseRetryAfter,
  planRetry,
  type RetryTiming,
} from '../src/core/retry.js';

const timing: RetryTiming = { baseDelay: 100, maxDelay: 1_000, jitter: 0.5, maxRetryAfter: 5_000 };

describe('backoffDelay', () => {
  it('doubles from baseDelay and stops at maxDelay (no jitter when random() is 0)', () => {
    const delays = [1, 2, 3, 4, 5, 6].map((retry) => backoffDelay(retry, timing, () => 0));
    expect(delays).toEqual([100, 200, 400, 800, 1_000, 1_000]);
  });

  it('takes off at most `jitter` of the delay', () => {
    expect(backoffDelay(3, timing, () => 1)).toBe(200); // 400 * (1 - 0.5)
    expect(backoffDelay(3, timing, () => 0.5)).toBe(300);
    expect(backoffDelay(3, { ...timing, jitter: 0 }, () => 0.99)).toBe(400);
  });

  it('stays within [capped * (1 - jitter), capped] for any randomness', () => {
    for (let i = 0; i < 200; i++) {
      const delay = backoffDelay(10, timing);
      expect(delay).toBeGreaterThanOrEqual(500);
      expect(delay).toBeLessThanOrEqual(1_000);
    }
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-11-28T12:00:00Z');

  it('reads delta seconds, whole or decimal', () => {
    expect(parseRetryAfter('3', now)).toBe(3_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('1.5', now)).toBe(1_500);
  });

  it('reads an HTTP date relative to now, a past one as 0', () => {
    expect(parseRetryAfter('Sat, 28 Nov 2026 12:00:07 GMT', now)).toBe(7_000);
    expect(parseRetryAfter('Sat, 28 Nov 2026 11:59:00 GMT', now)).toBe(0);
  });

  it('ignores missing and malformed values', () => {
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
  });
});

describe('isRetryable', () => {
  it('retries idempotent requests on connection failures, timeouts and transient statuses', () => {
    for (const status of [408, 429, 500, 502, 503, 504]) {
      expect(isRetryable('GET', { kind: 'response', status })).toBe(true);
      expect(isRetryable('DELETE', { kind: 'response', status })).toBe(true);
    }
    for (const status of [400, 401, 403, 404, 409, 413, 501]) {
      expect(isRetryable('GET', { kind: 'response', status })).toBe(false);
    }
    expect(isRetryable('GET', { kind: 'connection' })).toBe(true);
    expect(isRetryable('GET', { kind: 'timeout' })).toBe(true);
    expect(isRetryable('GET', { kind: 'interrupted' })).toBe(true);
  });

  it('retries POST and PATCH only when the failure proves the request was not processed', () => {
    for (const method of ['POST', 'PATCH', 'post']) {
      expect(isIdempotent(method)).toBe(false);
      expect(isRetryable(method, { kind: 'response', status: 429 })).toBe(true);
      expect(isRetryable(method, { kind: 'response', status: 503 })).toBe(true);
      // A connection closed after sending ("other side closed") is no proof; refused or DNS is.
      expect(isRetryable(method, { kind: 'connection' })).toBe(false);
      expect(isRetryable(method, { kind: 'connection', notSent: true })).toBe(true);
      for (const status of [408, 409, 500, 502, 504]) {
        expect(isRetryable(method, { kind: 'response', status })).toBe(false);
      }
      expect(isRetryable(method, { kind: 'response', status: 409, inFlight: true })).toBe(false);
      expect(isRetryable(method, { kind: 'timeout' })).toBe(false);
      expect(isRetryable(method, { kind: 'interrupted' })).toBe(false);
    }
  });

  it('retries a POST with an Idempotency-Key like an idempotent request, and its in-flight 409', () => {
    for (const failure of [{ kind: 'connection' }, { kind: 'timeout' }, { kind: 'interrupted' }, { kind: 'response', status: 500 }] as const) {
      expect(isRetryable('POST', failure, true)).toBe(true);
    }
    expect(isRetryable('POST', { kind: 'response', status: 409, inFlight: true }, true)).toBe(true);
    expect(isRetryable('POST', { kind: 'response', status: 409 }, true)).toBe(false);
    expect(isRetryable('POST', { kind: 'response', status: 400 }, true)).toBe(false);
  });
});

describe('planRetry', () => {
  const base = { method: 'GET', retriesDone: 0, maxRetries: 3, timing, random: () => 0 } as const;

  it('backs off exponentially by the number of retries already made', () => {
    const failure = { kind: 'response', status: 503 } as const;
    expect(planRetry({ ...base, failure })).toEqual({ retry: true, delay: 100, reason: 'backoff' });
    expect(planRetry({ ...base, failure, retriesDone: 2 })).toEqual({ retry: true, delay: 400, reason: 'backoff' });
  });

  it('stops when the retries are used up, and never retries with maxRetries 0', () => {
    const failure = { kind: 'connection' } as const;
    expect(planRetry({ ...base, failure, retriesDone: 3 })).toEqual({ retry: false, reason: 'exhausted' });
    expect(planRetry({ ...base, failure, maxRetries: 0 })).toEqual({ retry: false, reason: 'exhausted' });
  });

  it('waits Retry-After instead of backoff, up to maxRetryAfter', () => {
    const failure = { kind: 'response', status: 429, retryAfter: 2_000 } as const;
    expect(planRetry({ ...base, failure })).toEqual({ retry: true, delay: 2_000, reason: 'retry-after' });
  });

  it('refuses a Retry-After beyond maxRetryAfter and reports the wait', () => {
    const failure = { kind: 'response', status: 429, retryAfter: 120_000 } as const;
    expect(planRetry({ ...base, failure })).toEqual({
      retry: false,
      reason: 'retry-after-too-long',
      retryAfter: 120_000,
    });
  });

  it('does not retry what the policy forbids, whatever Retry-After says', () => {
    const failure = { kind: 'response', status: 500, retryAfter: 10 } as const;
    expect(planRetry({ ...base, method: 'POST', failure })).toEqual({ retry: false, reason: 'not-retryable' });
  });

  it('has documented defaults', () => {
    expect(DEFAULT_RETRY_TIMING).toEqual({ baseDelay: 500, maxDelay: 8_000, jitter: 0.25, maxRetryAfter: 60_000 });
  });
});
