/**
 * Runs the contract against a server: every selected operation of the spec, in an order that
 * keeps the server intact (reads and creations first, then operations on the run's own
 * resources, destructive ones last), with these checks each where they apply:
 *
 * - no credentials: 401 in the documented format (secured operations);
 * - a principal lacking the operation's permission (`x-permissions`): 403; for streaming, one
 *   lacking `x-stream-permissions`: 403;
 * - requests the schemas forbid: the documented 4xx in the documented format, never 2xx or 5xx;
 * - a plausible request: a documented 2xx whose status, headers and body match the spec;
 * - streamed answers: well-formed server-sent events, each matching the spec, ending as documented.
 *
 * Everything it creates carries the run's prefix (`contract-<run>-`) and is removed at the end.
 */
import { randomBytes } from 'node:crypto';
import { BOOTSTRAP } from './bootstrap.js';
import { checkForbidden, checkInvalid, checkPlausible, checkStream, checkSufficient, checkUnauthenticated, probeRateLimit, streams } from './checks.js';
import { conformanceProblems, headerPatterns, type Mismatch } from './conformance.js';
import { HttpClient, RequestFailure, type AuthKind, type Credentials, type Exchange, type OutgoingRequest } from './http-client.js';
import { tinyModelBytes } from './model-file.js';
import { describeError, Skip, verdictOf, type CheckResult, type ContractReport, type OperationResult } from './results.js';
import { isSecured, jsonBodyOf, loadSpec, type Operation, type Parameter, type Spec } from './spec.js';
import { mainBranch, objectView, synthesize, withRunValues, type SynthesisContext } from './synthesize.js';
import { createValidator, type SchemaValidator } from './validator.js';

export { BOOTSTRAP } from './bootstrap.js';
export type { CheckResult, ContractReport, OperationResult, Outcome } from './results.js';


export interface ContractOptions {
  baseUrl: string;
  apiKey?: string;
  username?: string;
  password?: string;
  /** Tags or operationIds to run (default all). */
  only?: string[];
  /** Tags or operationIds to leave out (reported as skipped). */
  skip?: string[];
  specPath?: string;
  /** The model for inference requests (default: the first one the server lists). */
  model?: string;
  /** Progress lines (rate-limit waits, phases). */
  log?: (line: string) => void;
  timeoutMs?: number;
  maxWaitMs?: number;
  /**
   * At the end, send unauthenticated requests until the client address's window is used up, to
   * check the documented 429 (default true; only when at most `rateLimitProbeMax`, 1000, are left).
   */
  rateLimitProbe?: boolean;
  rateLimitProbeMax?: number;
  /** Documented headers not to check, e.g. `['X-Request-Id', 'X-RateLimit-*']` for another OpenAI-compatible server. */
  ignoreHeaders?: string[];
}

/** A request for an operation, before it is rendered: path values, query, headers, body. */
export interface Built {
  pathValues: Record<string, string>;
  query: Record<string, string>;
  headers?: Record<string, string>;
  json?: unknown;
  raw?: Uint8Array<ArrayBuffer>;
  contentType?: string;
}

export interface Resource {
  collection: string;
  id: string;
  label: string;
}


/** How one request authenticates (see `authFor`). */
export type Auth = { auth: AuthKind; credentials: Credentials; apiKeyHeader?: string };

export async function runContract(options: ContractOptions): Promise<ContractReport> {
  const run = new ContractRun(options);
  return run.execute();
}

/** One run: its spec, credentials, client and resources; the checks (checks.ts) act through it. */
export class ContractRun {
  readonly spec: Spec;
  readonly validator: SchemaValidator;
  readonly client: HttpClient;
  private readonly runId = randomBytes(3).toString('hex');
  private names = 0;
  private creds: Credentials = {};
  private model: string | undefined;
  private readonly resources: Resource[] = [];
  /** Resources that could not be removed during the run (reported with the cleanup). */
  readonly cleanupFailures: CheckResult[] = [];
  private readonly narrowKeys = new Map<string, { id: string; key: string } | string>();
  private readonly listed = new Map<string, string | undefined>();
  readonly log: (line: string) => void;
  readonly conformance: { ignoreHeaders: RegExp[] };

  constructor(readonly options: ContractOptions) {
    this.spec = loadSpec(options.specPath);
    this.validator = createValidator(this.spec);
    this.log = options.log ?? (() => undefined);
    this.client = new HttpClient(options.baseUrl, { timeoutMs: options.timeoutMs, maxWaitMs: options.maxWaitMs, log: this.log });
    this.model = options.model;
    this.conformance = { ignoreHeaders: headerPatterns(options.ignoreHeaders ?? []) };
  }

  private get synthesis(): SynthesisContext {
    return { spec: this.spec, model: this.model, freshName: () => `contract-${this.runId}-${++this.names}` };
  }

  private op(id: string): Operation | undefined {
    return this.spec.operations.find((o) => o.id === id);
  }

  async execute(): Promise<ContractReport> {
    const started = Date.now();
    const selected = (op: Operation) => {
      const names = [op.id, ...op.tags];
      if (this.options.only?.length && !names.some((n) => this.options.only!.includes(n))) return false;
      return true;
    };
    const skipped = (op: Operation) => Boolean(this.options.skip?.some((n) => n === op.id || op.tags.includes(n)));
    const operations = this.spec.operations.filter(selected);
    const results = new Map<Operation, OperationResult>();
    const cleanup: CheckResult[] = [];
    try {
      await this.authenticate();
      await this.discoverModel(operations);
      for (const op of [...operations].sort((a, b) => phase(a) - phase(b))) {
        if (skipped(op)) {
          results.set(op, verdictOf(op, [{ check: 'operation', outcome: 'skip', reason: 'left out with --skip' }]));
          continue;
        }
        this.log(`${op.method} ${op.path}`);
        results.set(op, verdictOf(op, await this.runOperation(op)));
      }
      if (this.options.rateLimitProbe !== false) await probeRateLimit(this, operations.filter((op) => !skipped(op)), results);
    } catch (error) {
      if (!(error instanceof RequestFailure)) throw error;
      throw new Error(`${error.request.method} ${error.request.path}: ${error.message}`);
    } finally {
      cleanup.push(...this.cleanupFailures, ...(await this.cleanUp()));
    }
    const list = operations.map((op) => results.get(op) ?? verdictOf(op, [{ check: 'operation', outcome: 'skip', reason: 'not reached' }]));
    return {
      baseUrl: this.options.baseUrl,
      spec: this.spec.file,
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
      operations: list,
      cleanup,
      stats: { ...this.client.stats },
      summary: {
        operations: list.length,
        passed: list.filter((r) => r.verdict === 'passed').length,
        failed: list.filter((r) => r.verdict === 'failed').length,
        skipped: list.filter((r) => r.verdict === 'skipped').length,
        cleanupFailed: cleanup.filter((c) => c.outcome === 'fail').length,
      },
    };
  }

  // ---- set-up ----------------------------------------------------------------------------

  private async authenticate() {
    if (this.options.apiKey) this.creds.apiKey = this.options.apiKey;
    if (this.options.username !== undefined && this.options.password !== undefined) this.creds.jwt = await this.login();
  }

  async login(): Promise<string> {
    const op = this.op(BOOTSTRAP.login);
    if (!op) throw new Error(`The spec has no ${BOOTSTRAP.login} operation to log in with`);
    const exchange = await this.client.send({ method: op.method, path: op.path, auth: 'none', json: { username: this.options.username, password: this.options.password } });
    const token = (exchange.json as { token?: unknown } | undefined)?.token;
    if (exchange.status !== 200 || typeof token !== 'string') throw new Error(`Logging in as ${this.options.username} failed: ${exchange.status}`);
    return token;
  }

  /** The model inference requests name: the first one a models list of the server gives. */
  private async discoverModel(operations: Operation[]) {
    if (this.model) return;
    const lists = this.spec.operations
      .filter((o) => o.method === 'GET' && /\/models$/.test(o.path) && o.parameters.every((p) => !p.required))
      .sort((a, b) => Number(operations.includes(b)) - Number(operations.includes(a)));
    for (const op of lists) {
      const auth = this.authFor(op, this.creds);
      if (!auth) continue;
      const ids = await this.listIds(op, auth);
      this.model = ids.find((id) => !id.startsWith('contract-')) ?? ids[0];
      if (this.model) return;
    }
  }

  private async listIds(op: Operation, auth: Auth): Promise<string[]> {
    try {
      const exchange = await this.client.send({ method: 'GET', path: op.path, ...auth });
      const body = exchange.json as any;
      const items = Array.isArray(body) ? body : Array.isArray(body?.data) ? body.data : [];
      return items.map((item: any) => item?.id).filter((id: unknown): id is string => typeof id === 'string');
    } catch {
      return [];
    }
  }

  /** How to authenticate `op` with `creds`: a JWT where bearer is allowed, else an API key. */
  authFor(op: Operation, creds: Credentials): Auth | undefined {
    if (!isSecured(op)) return { auth: 'none', credentials: {} };
    const schemes = this.spec.document.components?.securitySchemes ?? {};
    const allowed = op.security.flatMap((req) => Object.keys(req)).map((name) => this.spec.resolve(schemes[name]) ?? {});
    const bearer = allowed.some((s: any) => s.type === 'http' && /^bearer$/i.test(s.scheme));
    const header = allowed.find((s: any) => s.type === 'apiKey' && s.in === 'header') as { name: string } | undefined;
    if (creds.jwt && bearer) return { auth: 'jwt', credentials: creds };
    if (creds.apiKey && header) return { auth: 'api-key', credentials: creds, apiKeyHeader: header.name };
    if (creds.apiKey && bearer) return { auth: 'bearer-api-key', credentials: creds };
    return undefined;
  }

  // ---- one operation ---------------------------------------------------------------------

  private async runOperation(op: Operation): Promise<CheckResult[]> {
    const checks: CheckResult[] = [];
    const guard = async (name: string, body: () => Promise<CheckResult | CheckResult[]>) => {
      try {
        const result = await body();
        checks.push(...(Array.isArray(result) ? result : [result]));
      } catch (error) {
        if (error instanceof Skip) checks.push({ check: name, outcome: 'skip', reason: error.message });
        else if (error instanceof RequestFailure) checks.push({ check: name, outcome: 'fail', expected: 'an answer', got: error.message, request: error.request });
        else checks.push({ check: name, outcome: 'fail', expected: 'the check to run', got: (error as Error).message });
      }
    };
    if (isSecured(op)) await guard('no credentials: 401', () => checkUnauthenticated(this, op));
    const auth = this.authFor(op, this.creds);
    if (!auth) {
      checks.push({ check: 'with credentials', outcome: 'skip', reason: isSecured(op) ? 'no credentials for this operation (give --api-key, or --username and --password)' : 'no way to call it' });
      return checks;
    }
    let built: Built;
    try {
      built = await this.build(op);
    } catch (error) {
      if (error instanceof Skip) checks.push({ check: 'with credentials', outcome: 'skip', reason: error.message });
      else checks.push({ check: 'building a plausible request', outcome: 'fail', expected: 'a request to send', got: (error as Error).message, ...(error instanceof RequestFailure && { request: error.request }) });
      return checks;
    }
    if (isSecured(op)) await guard('lacking the permission: 403', () => checkForbidden(this, op, built, false));
    if (op.streamPermissions?.length) await guard('streaming without its permission: 403', () => checkForbidden(this, op, built, true));
    await guard('invalid requests: 4xx', () => checkInvalid(this, op, built, auth));
    await guard('a plausible request: 2xx', () => checkPlausible(this, op, built, auth));
    if (op.method === 'GET' && isSecured(op)) await guard('with just the permissions the spec names: 2xx', () => checkSufficient(this, op, built));
    if (streams(this, op)) await guard('streamed: server-sent events', () => checkStream(this, op, built, auth));
    return checks;
  }

  // ---- requests --------------------------------------------------------------------------

  /** A plausible request for `op`: path values of the run's own resources, required query values, a body. */
  async build(op: Operation, { placeholders = false } = {}): Promise<Built> {
    const built: Built = { pathValues: {}, query: {} };
    const synthesis = this.synthesis;
    for (const p of op.parameters) {
      if (p.in === 'path') {
        built.pathValues[p.name] = placeholders ? String(synthesize(synthesis, p.schema)) : await this.resourceFor(op, p);
      } else if (p.in === 'query' && p.required) {
        // A creation names what it creates: a fresh name of the run.
        const value = op.method === 'POST' && p.name === 'id' ? synthesis.freshName() : synthesize(synthesis, p.schema, p.name);
        built.query[p.name] = String(value);
      } else if (p.in === 'header' && p.required) {
        (built.headers ??= {})[p.name] = String(synthesize(synthesis, p.schema, p.name));
      }
    }
    if (!op.requestBody) return built;
    const media = jsonBodyOf(op);
    if (media) {
      let body: unknown;
      if (media.example !== undefined) body = withRunValues(synthesis, structuredClone(media.example));
      else {
        const example = Object.values(media.examples ?? {})[0]?.value;
        body = example !== undefined ? withRunValues(synthesis, structuredClone(example)) : synthesize(synthesis, media.schema ?? {});
      }
      if (op.id === BOOTSTRAP.login || (!isSecured(op) && body && typeof body === 'object' && 'password' in body)) {
        if (this.options.username === undefined && !placeholders) throw new Skip('needs --username and --password');
        body = { ...(body as object), username: this.options.username ?? 'contract', password: this.options.password ?? 'contract-password' };
      }
      if (body && typeof body === 'object' && !Array.isArray(body)) {
        // What a creation makes carries the run's name when it can have one, so leftovers are recognisable.
        const creates = op.method === 'POST' && !/\{[^}]+\}/.test(op.path);
        if (creates && !('name' in body) && media.schema && objectView(this.spec, media.schema).properties.name) (body as Record<string, unknown>).name = synthesis.freshName();
        delete (body as Record<string, unknown>).stream;
        delete (body as Record<string, unknown>).stream_options;
      }
      built.json = body;
      return built;
    }
    const binary = op.requestBody.content['application/octet-stream'];
    if (binary) {
      built.raw = await tinyModelBytes();
      built.contentType = 'application/octet-stream';
      return built;
    }
    throw new Skip(`takes ${Object.keys(op.requestBody.content).join(', ')}, which the kit cannot build`);
  }

  render(op: Operation, built: Built): string {
    let path = op.path.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(built.pathValues[name] ?? ''));
    const query = new URLSearchParams(built.query).toString();
    if (query) path += `?${query}`;
    return path;
  }

  async send(op: Operation, built: Built, auth: Auth, stream = false): Promise<Exchange> {
    const request: OutgoingRequest = { method: op.method, path: this.render(op, built), ...auth, stream, ...(built.headers && { headers: built.headers }) };
    if (built.raw !== undefined) {
      request.raw = built.raw;
      request.contentType = built.contentType;
    } else if (built.json !== undefined) request.json = built.json;
    return this.client.send(request);
  }

  /** The value of a path parameter: a resource this run created in its collection, else (for reads) one the server lists. */
  private async resourceFor(op: Operation, parameter: Parameter): Promise<string> {
    const collection = op.path.slice(0, op.path.indexOf(`/{${parameter.name}}`));
    const own = this.resources.filter((r) => r.collection === collection).at(-1);
    if (own) return own.id;
    if (op.method !== 'GET') throw new Skip(`nothing of this run's own in ${collection} to act on (its creating operation is not selected, or failed)`);
    if (!this.listed.has(collection)) {
      const list = this.spec.operations.find((o) => o.method === 'GET' && o.path === collection);
      const auth = list && this.authFor(list, this.creds);
      this.listed.set(collection, list && auth ? (await this.listIds(list, auth))[0] : undefined);
    }
    const id = this.listed.get(collection);
    if (id === undefined) throw new Skip(`no resource in ${collection} to read`);
    return id;
  }

  /** A PATCH sends the values the resource has now (read with the GET of the same path): it changes nothing. */
  async withCurrentValues(op: Operation, built: Built, auth: Auth): Promise<Built> {
    const read = this.spec.operations.find((o) => o.method === 'GET' && o.path === op.path);
    if (!read) return built;
    const current = (await this.send(read, { ...built, json: undefined }, auth)).json;
    const overlay = (target: any, source: any): any => {
      if (!target || typeof target !== 'object' || Array.isArray(target) || !source || typeof source !== 'object') return target;
      for (const key of Object.keys(target)) {
        if (!(key in source)) continue;
        const t = target[key];
        const s = source[key];
        if (t && typeof t === 'object' && !Array.isArray(t)) overlay(t, s);
        else if (typeof t === typeof s && !Array.isArray(s)) target[key] = s;
      }
      return target;
    };
    const json = overlay(structuredClone(built.json), current);
    const media = jsonBodyOf(op);
    return media?.schema && this.validator.valid(media.schema, json) ? { ...built, json } : built;
  }

  // ---- results ---------------------------------------------------------------------------

  expect(check: string, op: Operation, exchange: Exchange, statuses: number[], note?: string): CheckResult {
    const base = { check, request: exchange.request, ...(note && { note }) };
    if (!statuses.includes(exchange.status)) {
      return { ...base, outcome: 'fail', expected: `status ${statuses.join(' or ')}`, got: `${exchange.status} ${describeError(exchange)}` };
    }
    const problems: Mismatch[] = conformanceProblems(this.validator, op, exchange, this.conformance);
    if (problems.length) return { ...base, outcome: 'fail', ...problems[0]!, ...(problems.length > 1 && { more: problems.slice(1).map((p) => `expected ${p.expected}, got ${p.got}`) }) };
    return { ...base, outcome: 'pass' };
  }

  permissionNames(): string[] {
    const create = this.op(BOOTSTRAP.createKey);
    const media = create && jsonBodyOf(create);
    const items = media?.schema ? mainBranch(this.spec, objectView(this.spec, media.schema).properties.permissions ?? {}) : undefined;
    const enumeration = items?.items ? mainBranch(this.spec, items.items)?.enum : undefined;
    return Array.isArray(enumeration) ? enumeration : [];
  }

  /** An API key with exactly `permissions`, for the 403 checks (kept for the run, revoked at the end; or used once). */
  async narrowKey(permissions: string[]): Promise<string>;
  async narrowKey(permissions: string[], options: { temporary: true }): Promise<{ key: string; resource: Resource }>;
  async narrowKey(permissions: string[], { temporary = false } = {}): Promise<string | { key: string; resource: Resource }> {
    const name = [...permissions].sort().join(',');
    const known = this.narrowKeys.get(name);
    if (typeof known === 'string') throw new Skip(known);
    if (known && !temporary) return known.key;
    const op = this.op(BOOTSTRAP.createKey);
    const auth = op && this.authFor(op, this.creds);
    if (!op || !auth) throw new Skip('a narrow API key is needed and cannot be created here');
    const media = jsonBodyOf(op);
    const body: Record<string, unknown> = { ...(synthesize(this.synthesis, media?.schema ?? {}) as object), permissions };
    if (media?.schema && objectView(this.spec, media.schema).properties.expires_in_days) body.expires_in_days = 1;
    const exchange = await this.client.send({ method: op.method, path: op.path, ...auth, json: body });
    const created = exchange.json as { id?: string; key?: string } | undefined;
    if (exchange.status >= 300 || !created?.key || !created.id) {
      const reason = `could not create a narrow API key (${exchange.status} ${describeError(exchange)}); give admin credentials`;
      this.narrowKeys.set(name, reason);
      throw new Skip(reason);
    }
    const resource = { collection: op.path, id: created.id, label: `API key ${body.name as string}` };
    this.resources.push(resource);
    if (temporary) return { key: created.key, resource };
    this.narrowKeys.set(name, { id: created.id, key: created.key });
    return created.key;
  }

  /** A 2xx to a creation (POST to a collection) made a resource of this run: it is cleaned up at the end. */
  adoptCreated(op: Operation, exchange: Exchange, label: string) {
    if (op.method !== 'POST' || /\{[^}]+\}/.test(op.path)) return;
    const id = (exchange.json as { id?: unknown } | undefined)?.id;
    if (typeof id !== 'string' || !this.spec.operations.some((o) => o.path.startsWith(`${op.path}/{`))) return;
    this.resources.push({ collection: op.path, id, label });
  }

  forget(op: Operation, built: Built) {
    const match = /^(.*)\/\{([^}]+)\}$/.exec(op.path);
    if (!match) return;
    const id = built.pathValues[match[2]!];
    const index = this.resources.findIndex((r) => r.collection === match[1] && r.id === id);
    if (index >= 0) this.resources.splice(index, 1);
  }

  /** Removes what the run created, newest first, with the DELETE of its collection's items; then ends the session. */
  private async cleanUp(): Promise<CheckResult[]> {
    const results: CheckResult[] = [];
    for (const resource of [...this.resources].reverse()) results.push(await this.remove(resource));
    const logout = this.op(BOOTSTRAP.logout);
    if (this.creds.jwt && logout) {
      await this.client.send({ method: logout.method, path: logout.path, auth: 'jwt', credentials: this.creds }).catch(() => undefined);
    }
    return results;
  }

  /** Deletes one resource of the run (or, where items cannot be deleted, cancels it). */
  async remove(resource: Resource): Promise<CheckResult> {
    const item = new RegExp(`^${escape(resource.collection)}/\\{[^}]+\\}`);
    const remove = this.spec.operations.find((o) => o.method === 'DELETE' && item.test(o.path) && /^\/\{[^}]+\}$/.test(o.path.slice(resource.collection.length)));
    const cancel = this.spec.operations.find((o) => o.method === 'POST' && item.test(o.path) && /^\/\{[^}]+\}\/cancel$/.test(o.path.slice(resource.collection.length)));
    const op = remove ?? cancel;
    const check = `remove ${resource.label} (${resource.id})`;
    const auth = op && this.authFor(op, this.creds);
    if (!op || !auth) return { check, outcome: 'skip', reason: `the spec has no way to delete items of ${resource.collection}: left in place` };
    const param = /\{([^}]+)\}/.exec(op.path.slice(resource.collection.length))![1]!;
    this.resources.splice(this.resources.indexOf(resource), 1);
    try {
      const exchange = await this.send(op, { pathValues: { [param]: resource.id }, query: {} }, auth);
      const ok = (exchange.status >= 200 && exchange.status < 300) || exchange.status === 404 || (op === cancel && exchange.status === 409);
      if (!ok) return { check, outcome: 'fail', expected: 'status 2xx', got: `${exchange.status} ${describeError(exchange)}`, request: exchange.request };
      return op === cancel ? { check, outcome: 'skip', reason: 'no delete operation: stopped, kept in its history' } : { check, outcome: 'pass' };
    } catch (error) {
      return { check, outcome: 'fail', expected: 'an answer', got: (error as Error).message };
    }
  }
}

/** Reads and creations first, then what acts on the run's own resources, destructive ones last. */
function phase(op: Operation): number {
  if (op.method === 'DELETE' || op.id === BOOTSTRAP.logout) return 3;
  return /\{[^}]+\}/.test(op.path) ? 2 : 1;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

