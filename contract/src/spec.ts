/**
 * The OpenAPI document, read at run time: its operations (in document order), their parameters,
 * bodies, responses and the extensions the kit reads (`x-permissions`, `x-permissions-any`,
 * `x-stream-permissions`, `x-stream-end`). Nothing here knows a route by name.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Schema = { [key: string]: any } | boolean;

/** The spec this kit ships with: the repository's openapi.yaml. */
export const DEFAULT_SPEC_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../openapi.yaml');

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

export interface Parameter {
  name: string;
  in: 'query' | 'path' | 'header' | 'cookie';
  required: boolean;
  schema: Schema;
}

export interface MediaType {
  schema?: Schema;
  example?: unknown;
  examples?: Record<string, { value?: unknown }>;
  /** The line the last event of a stream has: `event: <name>` or `data: <text>`. */
  'x-stream-end'?: string;
  /** The schema of each event's data, by event name (every event must be one of these). */
  'x-stream-events'?: Record<string, Schema>;
}

export interface ResponseSpec {
  description?: string;
  headers?: Record<string, { required?: boolean; schema?: Schema }>;
  content?: Record<string, MediaType>;
  /** Fields the body's `error` object has on this response, e.g. `{ code: NOT_FOUND }`. */
  'x-error'?: Record<string, string>;
}

export interface Operation {
  id: string;
  method: string;
  path: string;
  tags: string[];
  summary: string;
  /** Security requirement alternatives; empty: public. */
  security: Record<string, string[]>[];
  parameters: Parameter[];
  requestBody?: { required: boolean; content: Record<string, MediaType> };
  responses: Record<string, ResponseSpec>;
  /** Every one of these is needed (`x-permissions`); undefined when the spec does not say. */
  permissions?: string[];
  /** Any one of these is enough (`x-permissions-any`). */
  permissionsAny?: string[];
  /** Needed on top for a streamed answer (`x-stream-permissions`). */
  streamPermissions?: string[];
}

export interface Spec {
  document: any;
  file: string;
  operations: Operation[];
  tags: string[];
  /** Follows `$ref`s (local ones) until a node that is not a reference. */
  resolve<T = any>(node: T): T;
}

export function loadSpec(file = DEFAULT_SPEC_PATH): Spec {
  // YAML anchors and merge keys are expanded by the parser; `$ref`s are kept for ajv to follow.
  const document = parse(readFileSync(file, 'utf8'), { maxAliasCount: -1, merge: true });
  const resolve = (node: any): any => {
    for (let hops = 0; node && typeof node === 'object' && typeof node.$ref === 'string'; hops++) {
      if (hops > 32) throw new Error(`$ref loop at ${node.$ref}`);
      node = pointer(document, node.$ref);
    }
    return node;
  };
  const globalSecurity = document.security ?? [];
  const operations: Operation[] = [];
  for (const [route, rawItem] of Object.entries<any>(document.paths ?? {})) {
    const item = resolve(rawItem);
    const shared: any[] = item.parameters ?? [];
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const byKey = new Map<string, Parameter>();
      for (const raw of [...shared, ...(op.parameters ?? [])]) {
        const p = resolve(raw);
        byKey.set(`${p.in}:${p.name}`, { name: p.name, in: p.in, required: p.in === 'path' || Boolean(p.required), schema: p.schema ?? {} });
      }
      const body = op.requestBody ? resolve(op.requestBody) : undefined;
      const responses: Record<string, ResponseSpec> = {};
      for (const [status, response] of Object.entries<any>(op.responses ?? {})) {
        const r = resolve(response);
        const headers: ResponseSpec['headers'] = {};
        for (const [name, header] of Object.entries<any>(r.headers ?? {})) headers[name] = resolve(header);
        responses[status] = { ...r, headers };
      }
      operations.push({
        id: op.operationId ?? `${method.toUpperCase()} ${route}`,
        method: method.toUpperCase(),
        path: route,
        tags: op.tags ?? [],
        summary: op.summary ?? '',
        security: op.security ?? globalSecurity,
        parameters: [...byKey.values()],
        requestBody: body && { required: Boolean(body.required), content: body.content ?? {} },
        responses,
        permissions: op['x-permissions'],
        permissionsAny: op['x-permissions-any'],
        streamPermissions: op['x-stream-permissions'],
      });
    }
  }
  const tags = [...new Set([...(document.tags ?? []).map((t: any) => t.name), ...operations.flatMap((o) => o.tags)])];
  return { document, file, operations, tags, resolve };
}

/** A JSON pointer (`#/components/schemas/X`) into the document. */
export function pointer(document: any, ref: string): any {
  if (!ref.startsWith('#')) throw new Error(`Only local $refs are supported: ${ref}`);
  let node = document;
  for (const raw of ref.slice(1).split('/').filter(Boolean)) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    node = node?.[key];
    if (node === undefined) throw new Error(`$ref ${ref} points at nothing`);
  }
  return node;
}

/** Whether the operation needs credentials. */
export const isSecured = (op: Operation) => op.security.some((requirement) => Object.keys(requirement).length > 0);

/** The operation's JSON request media type, if it takes JSON. */
export function jsonBodyOf(op: Operation): MediaType | undefined {
  const content = op.requestBody?.content ?? {};
  const type = Object.keys(content).find((t) => /^application\/(.+\+)?json$/.test(t));
  return type ? content[type] : undefined;
}

/** The documented statuses, as numbers (`2XX`-style ranges and `default` are kept as patterns). */
export function documentedResponse(op: Operation, status: number): ResponseSpec | undefined {
  return op.responses[String(status)] ?? op.responses[`${String(status)[0]}XX`] ?? op.responses.default;
}
