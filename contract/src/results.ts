/** What a run found: per operation its checks, and how the report counts them. */
import type { Exchange, RequestRecord } from './http-client.js';
import type { Operation } from './spec.js';

export type Outcome = 'pass' | 'fail' | 'skip';

export interface CheckResult {
  check: string;
  outcome: Outcome;
  reason?: string;
  expected?: string;
  got?: string;
  request?: RequestRecord;
  note?: string;
  /** Further mismatches of the same answer, after the first. */
  more?: string[];
}

export interface OperationResult {
  id: string;
  method: string;
  path: string;
  tags: string[];
  verdict: 'passed' | 'failed' | 'skipped';
  /** For a failure, the first failed check; for a skip, why. */
  reason?: string;
  checks: CheckResult[];
}

export interface ContractReport {
  baseUrl: string;
  spec: string;
  startedAt: string;
  durationMs: number;
  operations: OperationResult[];
  cleanup: CheckResult[];
  stats: { requests: number; rateLimitWaits: number; waitedMs: number };
  summary: { operations: number; passed: number; failed: number; skipped: number; cleanupFailed: number };
}

/** A check that cannot run here, and why (reported as skipped). */
export class Skip extends Error {}

/** The start of an answer's body for the report, secrets masked. */
export function describeError(exchange: Exchange): string {
  const text = exchange.text.replace(/\s+/g, ' ').trim().replace(/inf_[A-Za-z0-9]{8,}/g, 'inf_***').replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '<jwt>');
  if (!text) return '(empty body)';
  return text.length > 160 ? `${text.slice(0, 160)}...` : text;
}

export function verdictOf(op: Operation, checks: CheckResult[]): OperationResult {
  const failed = checks.find((c) => c.outcome === 'fail');
  const passed = checks.some((c) => c.outcome === 'pass');
  const verdict = failed ? 'failed' : passed ? 'passed' : 'skipped';
  const reason = failed ? failed.check : verdict === 'skipped' ? checks.find((c) => c.reason)?.reason : undefined;
  return { id: op.id, method: op.method, path: op.path, tags: op.tags, verdict, ...(reason && { reason }), checks };
}
