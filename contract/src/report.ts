/** The report of a run, as text (for people), JSON (for programs) or JUnit XML (for CI dashboards). */
import type { CheckResult, ContractReport, OperationResult } from './results.js';

export type ReportFormat = 'text' | 'json' | 'junit';

export function summaryLine(report: ContractReport): string {
  const { operations, passed, failed, skipped } = report.summary;
  return `contract: ${operations} operations, ${passed} passed, ${failed} failed, ${skipped} skipped`;
}

export function formatReport(report: ContractReport, format: ReportFormat, { verbose = false } = {}): string {
  if (format === 'json') return `${JSON.stringify(report, null, 2)}\n`;
  if (format === 'junit') return junit(report);
  return text(report, verbose);
}

const LABEL = { passed: 'PASS', failed: 'FAIL', skipped: 'SKIP' } as const;

function text(report: ContractReport, verbose: boolean): string {
  const lines = [`contract: ${report.baseUrl} against ${report.spec}`, ''];
  const width = Math.max(...report.operations.map((o) => o.id.length), 10);
  for (const op of report.operations) {
    const counts = count(op.checks);
    const head = `${LABEL[op.verdict]}  ${op.id.padEnd(width)}  ${op.method} ${op.path}`;
    if (op.verdict === 'skipped') lines.push(`${head}  (skipped: ${op.reason})`);
    else lines.push(`${head}  (${counts})`);
    const failure = op.checks.find((c) => c.outcome === 'fail');
    if (failure) lines.push(...describe(failure, '      '));
    if (verbose) {
      for (const c of op.checks) {
        if (c === failure) continue;
        lines.push(`      ${c.outcome.padEnd(4)}  ${c.check}${c.reason ? `: ${c.reason}` : ''}${c.note ? ` [${c.note}]` : ''}`);
        if (c.outcome === 'fail') lines.push(`              expected ${c.expected ?? '?'}, got ${c.got ?? '?'}`);
      }
    }
  }
  if (report.cleanup.length) {
    lines.push('');
    const removed = report.cleanup.filter((c) => c.outcome === 'pass').length;
    lines.push(`cleanup: ${removed} of ${report.cleanup.length} resources of this run removed`);
    for (const c of report.cleanup.filter((c) => c.outcome !== 'pass')) {
      lines.push(c.outcome === 'fail' ? `  FAIL  ${c.check}` : `  note  ${c.check}: ${c.reason}`);
      if (c.outcome === 'fail') lines.push(...describe(c, '        ').slice(1));
    }
  }
  const { requests, rateLimitWaits, waitedMs } = report.stats;
  lines.push('', `requests: ${requests}, rate-limit waits: ${rateLimitWaits} (${Math.round(waitedMs / 1000)} s), time: ${(report.durationMs / 1000).toFixed(1)} s`);
  lines.push(summaryLine(report) + (report.summary.cleanupFailed ? `, ${report.summary.cleanupFailed} cleanup failures` : ''));
  return `${lines.join('\n')}\n`;
}

function describe(check: CheckResult, indent: string): string[] {
  const out = [`${indent}check:    ${check.check}`];
  if (check.expected !== undefined) out.push(`${indent}expected: ${check.expected}`);
  if (check.got !== undefined) out.push(`${indent}got:      ${check.got}`);
  for (const more of check.more ?? []) out.push(`${indent}also:     ${more}`);
  if (check.request) {
    const r = check.request;
    const shown = r.path.length > 160 ? `${r.path.slice(0, 160)}... (${r.path.length} chars)` : r.path;
    out.push(`${indent}request:  ${r.method} ${shown} (auth: ${r.auth}${r.contentType ? `, ${r.contentType}` : ''})`);
    if (r.body) out.push(`${indent}body:     ${r.body}`);
  }
  return out;
}

function count(checks: CheckResult[]): string {
  const n = (outcome: string) => checks.filter((c) => c.outcome === outcome).length;
  return `checks: ${[`${n('pass')} passed`, n('fail') && `${n('fail')} failed`, n('skip') && `${n('skip')} skipped`].filter(Boolean).join(', ')}`;
}

const xml = (s: string) => s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);

function junit(report: ContractReport): string {
  const cases = report.operations.map((op: OperationResult) => {
    const name = `${op.id} ${op.method} ${op.path}`;
    const head = `    <testcase classname="contract.${xml(op.tags[0] ?? 'untagged')}" name="${xml(name)}">`;
    if (op.verdict === 'skipped') return `${head}<skipped message="${xml(op.reason ?? '')}"/></testcase>`;
    const failure = op.checks.find((c) => c.outcome === 'fail');
    if (!failure) return `${head}</testcase>`;
    const message = `${failure.check}: expected ${failure.expected ?? '?'}, got ${failure.got ?? '?'}`;
    return `${head}\n      <failure message="${xml(message)}">${xml(describe(failure, '').join('\n'))}</failure>\n    </testcase>`;
  });
  const { operations, failed, skipped } = report.summary;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="contract" tests="${operations}" failures="${failed}" skipped="${skipped}" time="${(report.durationMs / 1000).toFixed(3)}">`,
    `  <testsuite name="contract ${xml(report.baseUrl)}" tests="${operations}" failures="${failed}" skipped="${skipped}" timestamp="${report.startedAt}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
