import { randomBytes } from 'node:crypto';
import type { GbnfJsonSchema } from 'node-llama-cpp';
import type { Config } from '../config.js';
import type { FunctionSpec, GenerationRequest, GenerationResult } from '../engine/engine.js';
import { toGrammarSchema, UnsupportedSchemaError, withoutNumberMarkers } from '../engine/json-schema.js';
import { validationError } from '../http/errors.js';

/**
 * What a request asks of the output's shape (structured output and tools), in the terms both API
 * families share, and how a finished generation is read back into tool calls.
 */

export interface ResponseFormatInput {
  type: 'text' | 'json_object' | 'json_schema';
  schema?: unknown;
}

export interface ToolInput {
  name: string;
  description?: string;
  parameters?: unknown;
}

export type ToolChoiceInput = 'auto' | 'none' | 'required' | { name: string };

export interface OutputRequest {
  responseFormat?: ResponseFormatInput;
  tools?: ToolInput[];
  toolChoice?: ToolChoiceInput;
  parallelToolCalls?: boolean;
  /** Tools need a chat; a prompt has none. */
  chat: boolean;
}

/** Where each field sits in the request, for error paths (`body.response_format.json_schema.schema`). */
export interface OutputPaths {
  schema: string;
  tools: string;
  toolParameters: (index: number) => string;
  toolChoice: string;
}

/** Calls in one `auto` answer when parallel calls are allowed. */
export const MAX_PARALLEL_CALLS = 8;

/**
 * How tool calls come out of a generation: `auto`, from node-llama-cpp's function calling; a
 * `single` forced call of a known function, as the generated text being the arguments; a `list`
 * (`required` among several tools), as the generated text being `[{"name", "arguments"}]`.
 */
export type ToolPlan = { mode: 'auto' } | { mode: 'single'; name: string } | { mode: 'list' };

export interface OutputPlan {
  generation: Pick<GenerationRequest, 'jsonSchema' | 'functions'>;
  tools?: ToolPlan;
}

export interface ToolCallOut {
  id: string;
  name: string;
  arguments: unknown;
}

const NO_ARGUMENTS: GbnfJsonSchema = { type: 'object', properties: {} };
const ANY_OBJECT: GbnfJsonSchema = { type: 'object', additionalProperties: true } as GbnfJsonSchema;

/** `call_` and 24 random characters, as OpenAI's ids look. */
export const newToolCallId = () => `call_${randomBytes(18).toString('base64url')}`;

function grammarSchema(schema: unknown, path: string): GbnfJsonSchema {
  try {
    return toGrammarSchema(schema);
  } catch (error) {
    if (!(error instanceof UnsupportedSchemaError)) throw error;
    const at = error.at.length > 200 ? `${error.at.slice(0, 200)}…` : error.at;
    throw validationError([{ path: at ? `${path}.${at}` : path, message: error.message.replace(/ \(at .*\)$/s, '') }], 'The schema cannot be enforced');
  }
}

function checkSize(value: unknown, limit: number, path: string, what: string): void {
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > limit) throw validationError([{ path, message: `${what} is ${bytes} bytes of JSON; the limit is ${limit} ([limits] max_schema_bytes)` }]);
}

/** Checks the request's format and tools, and turns them into grammar and function options. */
export function planOutput(request: OutputRequest, limits: Config['limits'], paths: OutputPaths): OutputPlan {
  const { responseFormat, tools = [], toolChoice } = request;
  let jsonSchema: GbnfJsonSchema | undefined;
  if (responseFormat?.type === 'json_object') jsonSchema = ANY_OBJECT;
  if (responseFormat?.type === 'json_schema') {
    if (responseFormat.schema === undefined) jsonSchema = ANY_OBJECT;
    else {
      checkSize(responseFormat.schema, limits.max_schema_bytes, paths.schema, 'The schema');
      jsonSchema = grammarSchema(responseFormat.schema, paths.schema);
    }
  }

  if (tools.length === 0) {
    if (toolChoice !== undefined && toolChoice !== 'none' && toolChoice !== 'auto') {
      throw validationError([{ path: paths.toolChoice, message: 'A tool_choice other than none or auto needs tools' }]);
    }
    return { generation: { jsonSchema } };
  }
  if (!request.chat) throw validationError([{ path: paths.tools, message: 'Tools need messages (a chat), not a prompt' }]);
  if (tools.length > limits.max_tools) throw validationError([{ path: paths.tools, message: `${tools.length} tools; the limit is ${limits.max_tools} ([limits] max_tools)` }]);
  checkSize(tools, limits.max_schema_bytes, paths.tools, 'The tools');

  const available: Record<string, FunctionSpec> = {};
  const enforced: Record<string, GbnfJsonSchema> = {}; // with the number rules, for forced calls
  tools.forEach((tool, index) => {
    if (tool.name in available) throw validationError([{ path: `${paths.tools}[${index}]`, message: `Two tools are named ${tool.name}` }]);
    const params = tool.parameters === undefined ? NO_ARGUMENTS : grammarSchema(tool.parameters, paths.toolParameters(index));
    if (!('type' in params) || params.type !== 'object') {
      throw validationError([{ path: paths.toolParameters(index), message: 'A tool\'s parameters must be an object schema (`"type": "object"`)' }]);
    }
    enforced[tool.name] = params;
    available[tool.name] = { ...(tool.description !== undefined && { description: tool.description }), params: withoutNumberMarkers(params) };
  });

  const choice = toolChoice ?? 'auto';
  if (choice === 'none') return { generation: { jsonSchema } };
  const parallel = request.parallelToolCalls !== false;
  if (choice === 'auto') {
    if (responseFormat && responseFormat.type !== 'text') {
      throw validationError([{ path: paths.toolChoice, message: 'response_format json_object/json_schema with tool_choice auto is not supported: force a tool, or set tool_choice none' }]);
    }
    return { generation: { functions: { available, mode: 'auto', maxParallel: parallel ? MAX_PARALLEL_CALLS : 1 } }, tools: { mode: 'auto' } };
  }

  const describe = { available, mode: 'describe' as const };
  const names = Object.keys(available);
  // A forced answer is one call: a list the model may extend would, on weak weights, run on to
  // max_tokens and never close. Several calls in one answer come from `auto`.
  const named = typeof choice === 'object' ? choice.name : names.length === 1 ? names[0] : undefined;
  if (typeof choice === 'object' && !(choice.name in available)) {
    throw validationError([{ path: paths.toolChoice, message: `tool_choice names ${choice.name}, which is not among the tools` }]);
  }
  if (named !== undefined) return { generation: { jsonSchema: enforced[named], functions: describe }, tools: { mode: 'single', name: named } };
  const call = {
    oneOf: names.map((name) => ({ type: 'object', properties: { name: { const: name }, arguments: enforced[name] } })),
  } as GbnfJsonSchema;
  const list = { type: 'array', items: call, minItems: 1, maxItems: 1 } as GbnfJsonSchema;
  return { generation: { jsonSchema: list, functions: describe }, tools: { mode: 'list' } };
}

/**
 * The tool calls of a finished generation, or undefined when it made none (or was cut off before
 * its forced call was complete: then its text is what there is, with `finish_reason: length`).
 */
export function readToolCalls(plan: ToolPlan | undefined, result: GenerationResult): ToolCallOut[] | undefined {
  if (!plan) return undefined;
  if (plan.mode === 'auto') return result.functionCalls?.map((call) => ({ id: newToolCallId(), ...call }));
  if (result.finishReason !== 'stop') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(result.text);
  } catch {
    return undefined; // the grammar makes this unreachable for a finished generation
  }
  if (plan.mode === 'single') return [{ id: newToolCallId(), name: plan.name, arguments: parsed }];
  return (parsed as { name: string; arguments: unknown }[]).map((call) => ({ id: newToolCallId(), name: call.name, arguments: call.arguments }));
}
