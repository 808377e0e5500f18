/**
 * The checks of one operation, each a function of the run (its spec, credentials, client and
 * resources): no credentials, too few permissions, just enough permissions, requests the spec
 * forbids, a plausible request, its streamed form, and the 429 of a used-up window.
 */
import { BOOTSTRAP } from './bootstrap.js';
import { conformanceProblems } from './conformance.js';
import { RequestFailure, type OutgoingRequest } from './http-client.js';
import { bodyCases, parameterCases } from './negative-cases.js';
import { describeError, Skip, verdictOf, type CheckResult, type OperationResult } from './results.js';
import type { Auth, Built, ContractRun } from './runner.js';
import { isSecured, jsonBodyOf, type Operation } from './spec.js';
import { objectView } from './synthesize.js';

export async function checkUnauthenticated(run: ContractRun, op: Operation): Promise<CheckResult> {
  const check = 'no credentials: 401';
  if (!op.responses['401']) return { check, outcome: 'fail', expected: 'a documented 401 for a secured operation', got: `only ${Object.keys(op.responses).join(', ')}` };
  // The shape of a plausible request is enough: the credentials are checked before anything else.
  const built = await run.build(op, { placeholders: true });
  const exchange = await run.send(op, built, { auth: 'none', credentials: {} });
  return run.expect(check, op, exchange, [401]);
}

export async function checkForbidden(run: ContractRun, op: Operation, built: Built, streaming: boolean): Promise<CheckResult> {
  const check = streaming ? 'streaming without its permission: 403' : 'lacking the permission: 403';
  const needed = op.permissions;
  const any = op.permissionsAny;
  if (needed === undefined && any === undefined) throw new Skip('the spec does not say which permission it needs (x-permissions)');
  const all = [...(needed ?? []), ...(any ?? [])];
  let granted: string[];
  if (streaming) {
    granted = [...(needed ?? []), ...(any?.slice(0, 1) ?? [])].filter((p) => !op.streamPermissions!.includes(p));
  } else {
    if (all.length === 0) throw new Skip('needs no permission beyond credentials');
    const other = run.permissionNames().find((p) => !all.includes(p) && !(op.streamPermissions ?? []).includes(p));
    if (!other) throw new Skip('every permission would grant it');
    granted = [other];
  }
  if (!op.responses['403']) return { check, outcome: 'fail', expected: 'a documented 403 for an operation that needs a permission', got: `only ${Object.keys(op.responses).join(', ')}` };
  const key = await run.narrowKey(granted.length ? granted : [run.permissionNames()[0]!]);
  const auth = run.authFor(op, { apiKey: key });
  if (!auth) throw new Skip('API keys are not accepted here');
  const exchange = await run.send(op, streaming ? { ...built, json: { ...(built.json as object), stream: true } } : built, auth);
  return run.expect(check, op, exchange, [403], `key with ${granted.join(', ') || 'no other permission'}`);
}

/** The permissions the spec names are enough: a key with only those reads what an admin reads. */
export async function checkSufficient(run: ContractRun, op: Operation, built: Built): Promise<CheckResult> {
  const check = 'with just the permissions the spec names: 2xx';
  if (op.permissions === undefined && op.permissionsAny === undefined) throw new Skip('the spec does not say which permission it needs (x-permissions)');
  const granted = [...(op.permissions ?? []), ...(op.permissionsAny?.slice(0, 1) ?? [])];
  if (granted.length === 0) throw new Skip('needs no permission beyond credentials');
  // A key of its own, revoked at once: servers may cap how many keys a user holds.
  const key = await run.narrowKey(granted, { temporary: true });
  try {
    const auth = run.authFor(op, { apiKey: key.key });
    if (!auth) throw new Skip('API keys are not accepted here');
    const success = Object.keys(op.responses).filter((s) => s.startsWith('2')).map(Number);
    return run.expect(check, op, await run.send(op, built, auth), success, `key with ${granted.join(', ')}`);
  } finally {
    const removed = await run.remove(key.resource);
    if (removed.outcome === 'fail') run.cleanupFailures.push(removed);
  }
}

export async function checkInvalid(run: ContractRun, op: Operation, built: Built, auth: Auth): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const badRequest = expectedClientError(op, 400);
  const media = jsonBodyOf(op);
  const cases: { label: string; request: Built; expected: number[] }[] = [];
  if (media?.schema && built.json !== undefined) {
    for (const c of bodyCases(run.spec, run.validator, media.schema, built.json)) cases.push({ label: c.label, request: { ...built, json: c.body }, expected: badRequest });
    cases.push({ label: 'malformed JSON', request: { ...built, json: undefined, raw: Buffer.from('{"contract": '), contentType: 'application/json' }, expected: badRequest });
    cases.push({ label: 'JSON sent as text/plain', request: { ...built, json: undefined, raw: Buffer.from(JSON.stringify(built.json)), contentType: 'text/plain' }, expected: expectedClientError(op, 415) });
  } else if (built.raw !== undefined && built.contentType === 'application/octet-stream') {
    cases.push({ label: 'a body that is not the documented binary format', request: { ...built, raw: Buffer.from('not a valid file, from the contract kit'), query: { ...built.query } }, expected: badRequest });
    cases.push({ label: 'sent as application/json', request: { ...built, raw: Buffer.from('{}'), contentType: 'application/json' }, expected: expectedClientError(op, 415) });
  }
  for (const c of parameterCases(run.spec, run.validator, op.parameters)) {
    const where = c.parameter.in === 'path' ? 'pathValues' : 'query';
    cases.push({ label: c.label, request: { ...built, [where]: { ...built[where], [c.parameter.name]: c.value } }, expected: c.parameter.in === 'path' && !op.responses['400'] ? expectedClientError(op, 404) : badRequest });
  }
  if (cases.length === 0) throw new Skip('no request the spec forbids can be derived (no body or parameter constraints)');
  for (const c of cases) {
    const exchange = await run.send(op, c.request, auth);
    if (exchange.status >= 200 && exchange.status < 300) run.adoptCreated(op, exchange, `accepted invalid request (${c.label})`);
    const result = run.expect(`invalid: ${c.label}`, op, exchange, c.expected);
    results.push(result);
  }
  return results;
}

export async function checkPlausible(run: ContractRun, op: Operation, built: Built, auth: Auth): Promise<CheckResult> {
  const check = 'a plausible request: 2xx';
  let request = built;
  if (op.id === BOOTSTRAP.logout) {
    // Logging out revokes the token used: it gets a session of its own.
    if (run.options.username === undefined) throw new Skip('needs a login session of its own: give --username and --password');
    auth = { auth: 'jwt', credentials: { jwt: await run.login() } };
  }
  if (op.method === 'PATCH') request = await run.withCurrentValues(op, built, auth);
  const exchange = await run.send(op, request, auth);
  const success = Object.keys(op.responses).filter((s) => s.startsWith('2')).map(Number);
  const result = run.expect(check, op, exchange, success.length ? success : [200]);
  if (exchange.status >= 200 && exchange.status < 300) {
    run.adoptCreated(op, exchange, op.id);
    if (op.method === 'DELETE') run.forget(op, request);
  } else if (exchange.status === 409 && op.responses['409'] && result.outcome === 'fail' && conformanceProblems(run.validator, op, exchange, run.conformance).length === 0) {
    // The resource's state allows no change (a job that finished already): documented, and not the kit's to force.
    return { check, outcome: 'pass', note: `answered the documented 409 (${describeError(exchange)})`, request: exchange.request };
  }
  return result;
}

export async function checkStream(run: ContractRun, op: Operation, built: Built, auth: Auth): Promise<CheckResult> {
  const view = objectView(run.spec, jsonBodyOf(op)!.schema!);
  const json: Record<string, unknown> = { ...(built.json as object), stream: true };
  if (view.properties.stream_options) json.stream_options = { include_usage: true };
  const exchange = await run.send(op, { ...built, json }, auth, true);
  const result = run.expect('streamed: server-sent events', op, exchange, [200]);
  if (result.outcome === 'pass' && !/^text\/event-stream/i.test(exchange.contentType)) {
    return { ...result, outcome: 'fail', expected: 'Content-Type text/event-stream for stream: true', got: exchange.contentType || 'no Content-Type' };
  }
  if (result.outcome === 'pass') result.note = `${exchange.events?.length ?? 0} events`;
  return result;
}

export function streams(run: ContractRun, op: Operation): boolean {
  const media = jsonBodyOf(op);
  const has = Object.values(op.responses).some((r) => r.content?.['text/event-stream']);
  return Boolean(has && media?.schema && objectView(run.spec, media.schema).properties.stream);
}

/**
 * Provokes a 429 without credentials (the client address's budget, so the run's own principals
 * keep theirs) on the first secured GET operation that documents one, and checks it: the
 * documented status, `Retry-After` and the other required headers, the error format.
 */
export async function probeRateLimit(run: ContractRun, operations: Operation[], results: Map<Operation, OperationResult>) {
  const op = operations.find((o) => o.method === 'GET' && isSecured(o) && o.responses['429'] && !/\{/.test(o.path));
  if (!op) return;
  const check = 'rate limited: 429';
  const record = (result: CheckResult) => {
    const previous = results.get(op)?.checks ?? [];
    results.set(op, verdictOf(op, [...previous, result]));
  };
  try {
    await provoke429(run, op, check, record);
  } catch (error) {
    if (!(error instanceof RequestFailure)) throw error;
    record({ check, outcome: 'fail', expected: 'an answer', got: error.message, request: error.request });
  }
}

export async function provoke429(run: ContractRun, op: Operation, check: string, record: (result: CheckResult) => void) {
  const built = await run.build(op, { placeholders: true });
  const request: OutgoingRequest = { method: op.method, path: run.render(op, built), auth: 'none' };
  const max = run.options.rateLimitProbeMax ?? 1000;
  let exchange = await run.client.sendUnpaced(request);
  const header = exchange.headers.get('x-ratelimit-remaining');
  const remaining = header === null ? Number.NaN : Number(header);
  if (exchange.status !== 429 && !(Number.isFinite(remaining) && remaining < max)) {
    record({ check, outcome: 'skip', reason: header === null ? 'no X-RateLimit-Remaining to go by' : `${remaining} requests left in the window: more than the probe's ${max}` });
    return;
  }
  run.log(`provoking a 429 on ${op.method} ${op.path} (${remaining} requests left)`);
  for (let i = 0; exchange.status !== 429 && i <= remaining + 5; i++) exchange = await run.client.sendUnpaced(request);
  if (exchange.status !== 429) {
    record({ check, outcome: 'fail', expected: `status 429 after the ${remaining} requests left in the window`, got: `${exchange.status} ${describeError(exchange)}`, request: exchange.request });
    return;
  }
  // The cleanup that follows uses the run's credentials, a budget of their own: no need to wait.
  record(run.expect(check, op, exchange, [429], `after ${remaining + 1} requests without credentials`));
}

/** The documented answer to a bad request: `preferred` if the operation documents it, else its documented 4xx. */
function expectedClientError(op: Operation, preferred: number): number[] {
  if (op.responses[String(preferred)]) return [preferred];
  const documented = Object.keys(op.responses).map(Number).filter((s) => s >= 400 && s < 500 && s !== 401 && s !== 403 && s !== 429);
  return documented.length ? documented : [400];
}
