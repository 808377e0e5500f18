/**
 * Small assertion and polling helpers shared by the permission and observability tests.
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

/** The documented error body `{"error":{code,message,details}}` with this status and code. */
export function expectApiError(res: ApiResponse, status: number, code: string): { code: string; message: string; details: any } {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body?.error?.code, JSON.stringify(res.body)).toBe(code);
  expect(typeof res.body.error.message).toBe('string');
  return res.body.error;
}

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
