/**
 * Whether one answer is what the spec documents for the operation: a documented status, the
 * documented headers (every `required: true` one present) with valid values, and a body of a
 * documented media type that validates against its schema. Server-sent events are checked one by
 * one against the event-stream schema, and the stream must end as the spec says (`x-stream-end`).
 */
import type { Exchange } from './http-client.js';
import { documentedResponse, type MediaType, type Operation, type ResponseSpec } from './spec.js';
import type { SchemaValidator } from './validator.js';

export interface Mismatch {
  expected: string;
  got: string;
}

export interface ConformanceOptions {
  /** Documented headers not to check (for servers that do not promise them), as patterns. */
  ignoreHeaders?: RegExp[];
}

/** `X-RateLimit-*`-style names as case-insensitive patterns. */
export const headerPatterns = (names: string[]) => names.map((n) => new RegExp(`^${n.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i'));

export function conformanceProblems(validator: SchemaValidator, op: Operation, exchange: Exchange, options: ConformanceOptions = {}): Mismatch[] {
  const response = documentedResponse(op, exchange.status);
  if (!response) {
    return [{ expected: `a documented status (${Object.keys(op.responses).join(', ')})`, got: `${exchange.status} ${bodyHint(exchange)}` }];
  }
  return [...headerProblems(validator, exchange, response, options.ignoreHeaders ?? []), ...bodyProblems(validator, exchange, response)];
}

function headerProblems(validator: SchemaValidator, exchange: Exchange, response: ResponseSpec, ignored: RegExp[]): Mismatch[] {
  const out: Mismatch[] = [];
  for (const [name, header] of Object.entries(response.headers ?? {})) {
    if (ignored.some((pattern) => pattern.test(name))) continue;
    const value = exchange.headers.get(name);
    if (value === null) {
      if (header.required) out.push({ expected: `header ${name} (required on ${exchange.status})`, got: 'no such header' });
      continue;
    }
    const problems = header.schema ? validator.parameterProblems(header.schema, value) : [];
    if (problems.length > 0) out.push({ expected: `header ${name} matching its schema`, got: `${JSON.stringify(value)}: ${problems[0]!.replace(/^\/value ?/, '')}` });
  }
  return out;
}

function mediaTypeFor(response: ResponseSpec, contentType: string): [string, MediaType] | undefined {
  const actual = contentType.split(';')[0]!.trim().toLowerCase();
  return Object.entries(response.content ?? {}).find(([type]) => {
    const t = type.toLowerCase();
    return t === actual || t === '*/*' || (t.endsWith('/*') && actual.startsWith(t.slice(0, -1)));
  });
}

function bodyProblems(validator: SchemaValidator, exchange: Exchange, response: ResponseSpec): Mismatch[] {
  const documented = Object.keys(response.content ?? {});
  if (documented.length === 0) {
    return exchange.text.length > 0 ? [{ expected: `no body on ${exchange.status}`, got: `a body ${bodyHint(exchange)}` }] : [];
  }
  const match = mediaTypeFor(response, exchange.contentType);
  if (!match) return [{ expected: `Content-Type ${documented.join(' or ')}`, got: exchange.contentType ? `Content-Type ${exchange.contentType} ${bodyHint(exchange)}` : `no Content-Type ${bodyHint(exchange)}` }];
  const [type, media] = match;
  if (/event-stream/.test(type)) return streamProblems(validator, exchange, media);
  if (!media.schema) return [];
  if (/json/.test(type)) {
    if (exchange.jsonError !== undefined || exchange.json === undefined) return [{ expected: 'a JSON body', got: `unparsable JSON ${bodyHint(exchange)}` }];
    const problems = validator.problems(media.schema, exchange.json);
    if (problems.length) return [{ expected: 'a body matching the documented schema', got: `${problems.join('; ')} in ${bodyHint(exchange)}` }];
    const error = (exchange.json as { error?: Record<string, unknown> }).error;
    return Object.entries(response['x-error'] ?? {})
      .filter(([field, value]) => error?.[field] !== value)
      .map(([field, value]) => ({ expected: `error.${field} ${value} (documented for ${exchange.status})`, got: `${JSON.stringify(error?.[field])} in ${bodyHint(exchange)}` }));
  }
  const problems = validator.problems(media.schema, exchange.text);
  return problems.length ? [{ expected: `a ${type} body matching its schema`, got: problems.join('; ') }] : [];
}

function streamProblems(validator: SchemaValidator, exchange: Exchange, media: MediaType): Mismatch[] {
  const events = exchange.events ?? [];
  if (events.length === 0) return [{ expected: 'server-sent events', got: 'an empty stream' }];
  for (const [i, event] of events.entries()) {
    if (event.unterminated) return [{ expected: 'every event ended by a blank line', got: `event ${i} (${event.event}) cut off: ${JSON.stringify(event.data.slice(0, 80))}` }];
    if (!event.hasData) return [{ expected: 'a data field in every event', got: `event ${i} (${event.event}) without data` }];
    if (event.data === '[DONE]') {
      if (i !== events.length - 1) return [{ expected: 'data: [DONE] as the last event', got: `${events.length - 1 - i} more events after it` }];
      continue;
    }
    let data: unknown;
    try {
      data = JSON.parse(event.data);
    } catch {
      return [{ expected: 'JSON in every event', got: `event ${i} (${event.event}): ${JSON.stringify(event.data.slice(0, 80))}` }];
    }
    const byName = media['x-stream-events'];
    if (byName && !(event.event in byName)) return [{ expected: `events named ${Object.keys(byName).join(', ')}`, got: `event ${i} named ${JSON.stringify(event.event)}` }];
    const schema = byName?.[event.event] ?? media.schema;
    const problems = schema ? validator.problems(schema, data) : [];
    if (problems.length) return [{ expected: 'every event matching the documented schema', got: `event ${i} (${event.event}): ${problems.join('; ')} in ${JSON.stringify(event.data.slice(0, 160))}` }];
  }
  const end = media['x-stream-end'];
  if (end) {
    const last = events[events.length - 1]!;
    const [field, value] = end.split(/:\s*/, 2) as [string, string];
    const ok = field === 'event' ? last.event === value : last.data === value;
    if (!ok) return [{ expected: `the stream to end with "${end}"`, got: `last event: event ${last.event}, data ${JSON.stringify(last.data.slice(0, 80))}` }];
  }
  return [];
}

/** A short, secret-free sight of the body, for the report. */
export function bodyHint(exchange: Exchange): string {
  const text = exchange.text.replace(/\s+/g, ' ').trim();
  if (!text) return '(empty body)';
  const masked = text.replace(/inf_[A-Za-z0-9]{8,}/g, 'inf_***').replace(/eyJ[\w-]+\.[\w-]+\.[\w-]*/g, '<jwt>');
  return masked.length > 160 ? `${masked.slice(0, 160)}...` : masked;
}
