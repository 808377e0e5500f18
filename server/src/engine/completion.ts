import { randomInt } from 'node:crypto';
import { LlamaGrammarEvaluationState, LlamaVocabularyType, type LlamaGrammar, type LlamaModel, type Token } from 'node-llama-cpp';
import { createSampler, type DecodeLoop } from './decode-loop.js';

/**
 * A plain-prompt completion on the engine's own decode loop: the prompt tokenized as node-llama-cpp's
 * LlamaCompletion tokenizes it (its BOS, no special tokens parsed from the text), sampled with the
 * same defaults, and the text streamed as it becomes final: a piece is held back while it could be
 * the start of a stop sequence, while it ends inside a UTF-8 character, and (for JSON grammars) while
 * it is only trailing whitespace.
 */

export interface CompletionOptions {
  /** A text (tokenized here) or its tokens (a chat's rendered prompt). */
  prompt: string | readonly Token[];
  maxTokens: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: readonly string[];
  /** Token sequences that end the generation (a chat template's special tokens): not part of the text. */
  stopTokens?: readonly (readonly Token[])[];
  grammar?: LlamaGrammar;
  /** A piece still inside a character when the generation ends: kept as the detokenizer gives it (LlamaCompletion does), or dropped (LlamaChat does). */
  incompleteEnd?: 'keep' | 'drop';
  signal?: AbortSignal;
  /** Decoded in steps of its own on a shared context (decode-loop.ts): the text never depends on what else runs. */
  alone?: boolean;
  onText?: (text: string) => void;
  /** The first token was sampled (the prompt is decoded). */
  onFirstToken?: () => void;
}

export interface CompletionOutcome {
  text: string;
  stopReason: 'eog' | 'stop' | 'maxTokens' | 'abort';
  promptTokens: number;
  completionTokens: number;
}

/** A token's text can end inside a multi-byte character: the detokenizer gives U+FFFD until the rest arrives. */
const INCOMPLETE = '\uFFFD';
/** Tokens of context given to the detokenizer, so a piece gets the spacing it has after them. */
const CONTEXT_TOKENS = 8;

export function promptTokens(model: LlamaModel, prompt: string): Token[] {
  const bos = beginningToken(model);
  const tokens = model.tokenize(prompt, false, bos === undefined ? undefined : 'trimLeadingSpace');
  if (bos !== undefined) return [bos, ...tokens];
  // An empty prompt on a model that prepends nothing: generation starts after the BOS (or EOS) it has.
  const start = tokens.length === 0 ? (model.tokens.bos ?? model.tokens.eos) : null;
  return start === null ? tokens : [start];
}

function beginningToken(model: LlamaModel): Token | undefined {
  const type = model.vocabularyType;
  if (type === LlamaVocabularyType.rwkv || type === LlamaVocabularyType.ugm) return undefined;
  if (type === LlamaVocabularyType.wpm || model.tokens.shouldPrependBosToken) return model.tokens.bos ?? undefined;
  return undefined;
}

export async function complete(loop: DecodeLoop, sequence: Parameters<DecodeLoop['run']>[0], options: CompletionOptions): Promise<CompletionOutcome> {
  const model = sequence.model;
  const prompt = typeof options.prompt === 'string' ? promptTokens(model, options.prompt) : options.prompt;
  const grammarState = options.grammar ? new LlamaGrammarEvaluationState({ model, grammar: options.grammar }) : undefined;
  const sampler = createSampler(model, {
    temperature: options.temperature ?? 0,
    topK: options.topK ?? 40,
    topP: options.topP ?? 0.95,
    minP: 0,
    seed: options.seed ?? randomInt(2 ** 31),
    grammarEvaluationState: grammarState && (grammarState as unknown as { _state: unknown })._state,
  });
  const stops = [...(options.stop ?? []), ...grammarStops(options.grammar)].filter((stop) => stop.length > 0);
  const text = new TextAssembler(stops, options.grammar?.trimWhitespaceSuffix === true, options.onText);
  const generated: Token[] = [];
  let pieceStart = 0;
  // The text of the tokens since the last whole piece, spaced as it follows the ones before.
  const piece = () => model.detokenize(generated.slice(pieceStart), false, generated.slice(Math.max(0, pieceStart - CONTEXT_TOKENS), pieceStart));
  let stopReason = 'maxTokens' as CompletionOutcome['stopReason'];
  let stoppedByToken = false;
  const stopTokens = options.stopTokens ?? [];
  // Whether `token`, after the tokens generated so far, completes a stop token sequence.
  const endsWithStop = (token: Token) =>
    stopTokens.some((stop) => stop.at(-1) === token && stop.length - 1 <= generated.length && stop.every((item, i) => i === stop.length - 1 || generated[generated.length - stop.length + 1 + i] === item));
  const { signal } = options;
  try {
    await loop.run(sequence, prompt, sampler, (token) => {
      if (generated.length === 0) options.onFirstToken?.();
      if (model.isEogToken(token)) {
        stopReason = 'eog';
        return false;
      }
      if (stopTokens.length > 0 && endsWithStop(token)) {
        stopReason = 'stop';
        stoppedByToken = true;
        return false;
      }
      generated.push(token);
      // A piece is added once it no longer ends inside a character.
      const next = piece();
      if (!next.endsWith(INCOMPLETE) || generated.length - pieceStart >= 4) {
        pieceStart = generated.length;
        if (text.add(next)) {
          stopReason = 'stop';
          return false;
        }
      }
      if (signal?.aborted) {
        stopReason = 'abort';
        return false;
      }
      return generated.length < options.maxTokens;
    }, { signal, alone: options.alone, limit: options.maxTokens });
    if (signal?.aborted && generated.length === 0) stopReason = 'abort';
  } finally {
    sampler.dispose();
  }
  if (stopReason !== 'stop' || stoppedByToken) {
    // A piece left incomplete at the end is kept as the detokenizer gives it, or dropped.
    if (pieceStart < generated.length && !(options.incompleteEnd === 'drop' && piece().endsWith(INCOMPLETE))) text.add(piece());
    text.end();
  }
  return { text: text.value, stopReason, promptTokens: prompt.length, completionTokens: generated.length };
}

/** A grammar's own stop texts (node-llama-cpp's JSON grammars end on a run of newlines). */
function grammarStops(grammar: LlamaGrammar | undefined): string[] {
  if (!grammar) return [];
  return grammar.stopGenerationTriggers.flatMap((trigger) => {
    const values: readonly unknown[] = typeof trigger === 'string' ? [trigger] : Array.isArray(trigger) ? trigger : (trigger as { values: readonly unknown[] }).values;
    return values.every((value) => typeof value === 'string') ? [values.join('')] : [];
  });
}

/**
 * The generated text, emitted as it becomes final: the end of what has come is held while it
 * could begin a stop sequence (or is whitespace that a JSON grammar trims), and a stop sequence
 * ends the text before it.
 */
export class TextAssembler {
  #done = '';
  #held = '';

  constructor(
    private readonly stops: readonly string[],
    private readonly trimTrailingSpace: boolean,
    private readonly emit?: (text: string) => void,
  ) {}

  get value(): string {
    return this.#done + this.#held;
  }

  /** Adds a piece; true when a stop sequence is complete (the text before it is final). */
  add(piece: string): boolean {
    if (piece === '') return false;
    const pending = this.#held + piece;
    let at = -1;
    for (const stop of this.stops) {
      const found = pending.indexOf(stop);
      if (found >= 0 && (at < 0 || found < at)) at = found;
    }
    if (at >= 0) {
      const before = pending.slice(0, at);
      this.#flush(this.trimTrailingSpace ? before.trimEnd() : before);
      this.#held = '';
      return true;
    }
    const keep = Math.max(this.#stopPrefix(pending), this.trimTrailingSpace ? pending.length - pending.trimEnd().length : 0);
    this.#flush(pending.slice(0, pending.length - keep));
    this.#held = pending.slice(pending.length - keep);
    return false;
  }

  /** The generation ended without a stop sequence: what was held is text after all (bar trimmed space). */
  end(): void {
    const rest = this.trimTrailingSpace ? this.#held.trimEnd() : this.#held;
    this.#held = '';
    this.#flush(rest);
  }

  #flush(text: string): void {
    if (text === '') return;
    this.#done += text;
    this.emit?.(text);
  }

  /** The length of the longest end of `text` that begins a stop sequence. */
  #stopPrefix(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, text.length); length > longest; length--) {
        if (text.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
