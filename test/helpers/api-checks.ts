/**
 * Small assertion and polling helpers shared by the server tests.
 */
import { expect } from 'vitest';
import { call } from './server.js';

export type ApiResponse = Awaited<ReturnType<typeof call>>;

/** Polls GET /health/ready until it answers 200 (the llama.cpp binding has loaded). */
export async function waitForReady(baseUrl: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await call(baseUrl, 'GET', '/health/ready')).status !== 200) {
    if (Date.now() > deadline) throw new Error('server never became ready');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The documented error body, exactly `{"error": {code, message, details}}`, with this status and
 * code, and an `X-Request-Id` when the response's headers are at hand.
 */
export function expectApiError(
  res: { status: number; body: any; headers?: Headers },
  status: number,
  code: string,
): { code: string; message: string; details: any } {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(Object.keys(res.body ?? {}), JSON.stringify(res.body)).toEqual(['error']);
  expect(Object.keys(res.body.error).sort()).toEqual(['code', 'details', 'message']);
  expect(res.body.error.code, JSON.stringify(res.body)).toBe(code);
  expect(typeof res.body.error.message).toBe('string');
  if (res.headers) expect(res.headers.get('x-request-id')).toBeTruthy();
  return res.body.error;
}

/** The `path` of each entry of a validation error's details. */
export const detailPaths = (res: { body: any }): string[] => ((res.body.error.details ?? []) as { path: string }[]).map((d) => d.path);

/** A 400 VALIDATION_ERROR whose details name `path` (exactly, as `{path, message}`). */
export function expectValidationError(res: ApiResponse, path: string): void {
  const error = expectApiError(res, 400, 'VALIDATION_ERROR');
  expect(Array.isArray(error.details), JSON.stringify(res.body)).toBe(true);
  expect(error.details.map((d: { path: string }) => d.path), JSON.stringify(res.body)).toContain(path);
}

/** Re-runs `check` (which throws while not yet true) until it passes or `timeoutMs` runs out. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 2_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
