/**
 * The performance benchmark (`npm run bench`): in one run, alternating, on the demo models
 * tiny (f16), small q8_0 and small f16:
 *
 *   raw node-llama-cpp in this process (contexts arranged as the server's engine arranges them, on
 *     --raw-threads threads each, default 1: without a persistent threadpool, which node-llama-cpp
 *     never attaches, 2 threads a context ran 2-3x slower than 1 on 2 cores)
 *   our server (a child process): the native SSE stream (POST /api/v1/inference) and the OpenAI
 *     streams (POST /v1/completions, and POST /v1/chat/completions against node-llama-cpp's own
 *     LlamaChatSession on the same reply)
 *   llama.cpp's llama-server, when given --llama-server PATH to a binary you built yourself: one
 *     process per slot count and thread count (-np 1 for the 1-stream figures, -np 4 for the
 *     4-stream ones; -t each of --llama-threads, default 1,2), so its best arrangement is in the run;
 *     its /completion stream, and its /v1/chat/completions for the chats
 *
 * at 1 and 4 concurrent streams: tokens/s (aggregate for 4), time to first text, CPU time per
 * token of the process that generates, and ratios against raw; then the HTTP floor
 * (bench/http-floor.ts: authenticated GET /api/v1/models and /health against a bare Koa handler,
 * autocannon).
 *
 *   npm run bench -- [--quick] [--tokens 128] [--rounds 7] [--models tiny,small-q8_0,small-f16]
 *                    [--threads N] [--raw-threads 1] [--sequences-per-context 1] [--batch-deterministic] [--llama-server PATH] [--llama-threads 1,2] [--baseline DIR]
 *                    [--no-http] [--only-http]
 *
 * --threads: the server's `[engine] threads` (default: its default, the machine's cores).
 * --sequences-per-context N --batch-deterministic: the throughput arrangement (one context of N
 *   sequences whose greedy streams share each decode, as llama-server's slots do).
 * --quick: 3 rounds, shorter HTTP runs (about 2-3 minutes on 2 cores).
 * --baseline DIR: also runs the server of another checkout (e.g. main: `git archive main | tar -x -C DIR`
 * and link this checkout's node_modules into DIR), for before/after ratios in the same run.
 * Medians over the rounds. The load average is printed before and after: on a shared machine
 * compare ratios, not absolute figures.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Llama, LlamaContextSequence } from 'node-llama-cpp';
import { DEFAULT_CONFIG } from '../server/src/config.js';
import { openContexts } from '../server/src/engine/contexts.js';
import { writeDemoModel } from '../server/src/engine/demo-model.js';
import { httpFloor } from './http-floor.js';
import { cpuSeconds, DEMO_MODELS, fetchOnce, fmt, resent, machineLine, median, parseFlags, rawChat, rawGenerate, readSse, runResult, serverStream, startChildServer, startLlama, table, tempDir, type BenchServer, type GenerationSettings, type RunResult } from './lib.js';

const flags = parseFlags(process.argv.slice(2));
const quick = flags.has('quick');
const tokens = Number(flags.get('tokens') ?? 128);
const rounds = Number(flags.get('rounds') ?? (quick ? 3 : 7));
const threads = Number(flags.get('threads') ?? DEFAULT_CONFIG.engine.threads);
const rawThreads = Number(flags.get('raw-threads') ?? 1);
const perContext = Number(flags.get('sequences-per-context') ?? DEFAULT_CONFIG.engine.sequences_per_context);
/** Greedy streams share a context's batch (`isolate_deterministic = false`), as llama-server batches them. */
const batchDeterministic = flags.has('batch-deterministic');
const llamaServerBin = flags.get('llama-server');
const llamaThreads = (flags.get('llama-threads') ?? '1,2').split(',').map(Number);
const baselineRoot = flags.get('baseline');
const STREAMS = DEFAULT_CONFIG.engine.parallel; // 4
const MODELS = DEMO_MODELS;
const modelNames = (flags.get('models') ?? Object.keys(MODELS).join(',')).split(',');
for (const name of modelNames) if (!MODELS[name]) throw new Error(`unknown model ${name}; one of ${Object.keys(MODELS).join(', ')}`);
const PROMPTS = ['Hello world', 'The quick brown fox', 'Once upon a time', 'In the beginning'];
const CHAT_PROMPTS = ['Tell me a story', 'Write a long poem about the sea'];
const log = (line = '') => process.stdout.write(line + '\n');

interface Sample {
  tps: number;
  ttftMs: number;
  cpuMsPerToken: number;
  /** CPU of the generating process's main thread alone (the JavaScript around each token, in node). */
  mainMsPerToken: number;
  tokens: number;
}

/** CPU seconds of this thread (the main one). */
const ownMainThreadCpu = () => {
  const usage = process.threadCpuUsage();
  return (usage.user + usage.system) / 1e6;
};

/** CPU seconds of this process (all its threads: llama.cpp's too). */
const ownCpu = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
};

/** n concurrent runs; aggregate tokens/s over the wall time, median TTFT, CPU of `pid` (or this process) per token. */
async function measure(run: (i: number) => Promise<RunResult>, n: number, pid?: number): Promise<Sample> {
  const cpu = () => (pid === undefined ? ownCpu() : cpuSeconds(pid));
  const main = () => (pid === undefined ? ownMainThreadCpu() : cpuSeconds(pid, pid));
  const cpuBefore = cpu();
  const mainBefore = main();
  const started = performance.now();
  const results = await Promise.all(Array.from({ length: n }, (_, i) => run(i)));
  const wallMs = performance.now() - started;
  const total = results.reduce((sum, r) => sum + r.tokens, 0);
  if (results.some((r) => r.tokens !== tokens)) throw new Error(`a run made ${results.map((r) => r.tokens).join('/')} tokens, not ${tokens} each`);
  return {
    tps: (total * 1000) / wallMs,
    ttftMs: median(results.map((r) => r.ttftMs)),
    cpuMsPerToken: ((cpu() - cpuBefore) * 1000) / total,
    mainMsPerToken: ((main() - mainBefore) * 1000) / total,
    tokens: total,
  };
}

/**
 * Reads a stream of JSON server-sent events (`[DONE]` aside) into a run's figures: `read` gives
 * each event's text piece and, in the event that has it, the count of tokens generated.
 */
async function readJsonStream(response: Response, started: number, read: (chunk: never) => { piece?: string | null; count?: number }): Promise<RunResult> {
  let firstAt: number | undefined;
  let text = '';
  let count = 0;
  await readSse(response, (data) => {
    if (data === '[DONE]') return;
    const { piece, count: counted } = read(JSON.parse(data) as never);
    if (piece) {
      firstAt ??= performance.now();
      text += piece;
    }
    if (counted !== undefined) count = counted;
  });
  return runResult(count, text, started, firstAt, performance.now());
}

/** An OpenAI stream's event (`/v1/completions`: `text`; `/v1/chat/completions`: `delta.content`). */
type OpenAIChunk = { choices?: { text?: string; delta?: { content?: string | null } }[]; usage?: { completion_tokens: number } | null };
const openAIPiece = (chunk: OpenAIChunk) => ({ piece: chunk.choices?.[0]?.text ?? chunk.choices?.[0]?.delta?.content, count: chunk.usage?.completion_tokens });

/**
 * One stream through OpenAI's `/v1`: `POST /v1/completions` with the prompt, or `POST
 * /v1/chat/completions` with it as the one user message.
 */
async function openAIStream(server: { url: string; token: string }, model: string, settings: GenerationSettings, kind: 'completion' | 'chat' = 'completion'): Promise<RunResult> {
  const endpoint = kind === 'chat' ? '/v1/chat/completions' : '/v1/completions';
  const input = kind === 'chat' ? { messages: [{ role: 'user', content: settings.prompt }] } : { prompt: settings.prompt };
  const { response, started } = await fetchOnce(`${server.url}${endpoint}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, ...input, max_tokens: settings.maxTokens, temperature: settings.temperature, seed: settings.seed, stream: true, stream_options: { include_usage: true } }),
  });
  if (response.status !== 200) throw new Error(`${endpoint} answered ${response.status}: ${await response.text()}`);
  return readJsonStream(response, started, openAIPiece);
}

// ---- llama-server (optional, a binary the user built) ----------------------------------------------

interface LlamaServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** llama-server on `modelFile` with `slots` parallel slots of the engine's context size each, on `t` threads. */
async function startLlamaServer(bin: string, modelFile: string, slots: number, t: number): Promise<LlamaServer> {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const args = ['-m', modelFile, '--host', '127.0.0.1', '--port', String(port), '-t', String(t), '-tb', String(t), '-np', String(slots), '-c', String(DEFAULT_CONFIG.engine.context_size * slots), '-b', String(DEFAULT_CONFIG.engine.batch_size), '--no-webui'];
  const child: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + String(d)).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  while ((await fetch(`${url}/health`).then((r) => r.status, () => 0)) !== 200) {
    if (child.exitCode !== null) throw new Error(`llama-server exited with ${child.exitCode}: ${stderr}`);
    if (Date.now() > deadline) throw new Error(`llama-server never became ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: child.pid!,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

/**
 * One stream on llama-server, greedy, exactly N tokens (`ignore_eos`): its own `/completion`
 * endpoint with the prompt, or its `/v1/chat/completions` with the prompt as the one user message
 * (the model's chat template, as ours).
 */
async function llamaServerStream(server: LlamaServer, settings: GenerationSettings, kind: 'completion' | 'chat' = 'completion'): Promise<RunResult> {
  const chat = kind === 'chat';
  const sampling = { temperature: settings.temperature, seed: settings.seed, stream: true, ignore_eos: true, cache_prompt: false };
  const { response, started } = await fetchOnce(`${server.url}${chat ? '/v1/chat/completions' : '/completion'}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(
      chat
        ? { messages: [{ role: 'user', content: settings.prompt }], max_tokens: settings.maxTokens, stream_options: { include_usage: true }, ...sampling }
        : { prompt: settings.prompt, n_predict: settings.maxTokens, ...sampling },
    ),
  });
  if (response.status !== 200) throw new Error(`llama-server answered ${response.status}: ${await response.text()}`);
  type Native = { content?: string; stop?: boolean; tokens_predicted?: number; timings?: { predicted_n?: number } };
  const native = (chunk: Native) => ({ piece: chunk.content, count: chunk.stop ? (chunk.timings?.predicted_n ?? chunk.tokens_predicted ?? 0) : undefined });
  return readJsonStream(response, started, chat ? openAIPiece : native);
}

// ---- the run ----------------------------------------------------------------------------------------

/** A prompt whose greedy continuation (or chat reply, with `generate = rawChat`) runs the full N tokens on this model (no end of text). */
async function fullLengthPrompt(sequence: LlamaContextSequence, generate = rawGenerate): Promise<GenerationSettings> {
  for (const prompt of [...PROMPTS, ...CHAT_PROMPTS]) {
    const settings = { prompt, maxTokens: tokens, temperature: 0, seed: 42 };
    if ((await generate(sequence, settings)).tokens === tokens) return settings;
  }
  throw new Error(`no prompt runs ${tokens} greedy tokens without stopping`);
}

interface Path {
  name: string;
  /** A chat's path: its ratios are taken against raw node-llama-cpp's chats and llama-server's. */
  chat?: boolean;
  /** Absent: the path has no figure for that column (llama-server -np 4 in the 1-stream one...). */
  run1?: () => Promise<Sample>;
  run4?: () => Promise<Sample>;
}

async function benchModel(llama: Llama, name: string, file: string, server: BenchServer, before: BenchServer | undefined): Promise<string[][]> {
  const model = await llama.loadModel({ modelPath: file });
  // node-llama-cpp alone, its contexts arranged as the server's ([engine] defaults), `rawThreads` threads each.
  const contexts = await openContexts(model, { ...DEFAULT_CONFIG.engine, parallel: STREAMS, threads: rawThreads, sequences_per_context: perContext });
  const sequences = contexts.flatMap((context) => Array.from({ length: context.totalSequences }, () => context.getSequence()));
  const llamaServers: { slots: number; t: number; server: LlamaServer }[] = [];
  try {
    if (llamaServerBin) {
      for (const slots of [1, STREAMS]) for (const t of llamaThreads) llamaServers.push({ slots, t, server: await startLlamaServer(llamaServerBin, file, slots, t) });
    }
    const settings = await fullLengthPrompt(sequences[0]!);
    const chat = await fullLengthPrompt(sequences[0]!, rawChat);
    const id = path.basename(file, '.gguf');
    const paths: Path[] = [
      { name: 'raw node-llama-cpp', run1: () => measure(() => rawGenerate(sequences[0]!, settings), 1), run4: () => measure((i) => rawGenerate(sequences[i]!, settings), STREAMS) },
      { name: 'server, native SSE', run1: () => measure(() => serverStream(server, id, settings), 1, server.pid), run4: () => measure(() => serverStream(server, id, settings), STREAMS, server.pid) },
      { name: 'server, /v1 stream', run1: () => measure(() => openAIStream(server, id, settings), 1, server.pid), run4: () => measure(() => openAIStream(server, id, settings), STREAMS, server.pid) },
      // Chats: OpenAI clients' usual request, against node-llama-cpp's own chat session on the same reply.
      { name: 'raw node-llama-cpp chat', chat: true, run1: () => measure(() => rawChat(sequences[0]!, chat), 1), run4: () => measure((i) => rawChat(sequences[i]!, chat), STREAMS) },
      { name: 'server, /v1 chat stream', chat: true, run1: () => measure(() => openAIStream(server, id, chat, 'chat'), 1, server.pid), run4: () => measure(() => openAIStream(server, id, chat, 'chat'), STREAMS, server.pid) },
    ];
    if (before) {
      paths.push({ name: 'baseline server, native SSE', run1: () => measure(() => serverStream(before, id, settings), 1, before.pid), run4: () => measure(() => serverStream(before, id, settings), STREAMS, before.pid) });
      paths.push({ name: 'baseline server, /v1 stream', run1: () => measure(() => openAIStream(before, id, settings), 1, before.pid), run4: () => measure(() => openAIStream(before, id, settings), STREAMS, before.pid) });
      paths.push({ name: 'baseline server, /v1 chat stream', chat: true, run1: () => measure(() => openAIStream(before, id, chat, 'chat'), 1, before.pid), run4: () => measure(() => openAIStream(before, id, chat, 'chat'), STREAMS, before.pid) });
    }
    for (const { slots, t, server: ls } of llamaServers) {
      const run = () => measure(() => llamaServerStream(ls, settings), slots, ls.pid);
      paths.push({ name: `llama-server -np ${slots} -t ${t}`, ...(slots === 1 ? { run1: run } : { run4: run }) });
      const runChat = () => measure(() => llamaServerStream(ls, chat, 'chat'), slots, ls.pid);
      paths.push({ name: `llama-server -np ${slots} -t ${t} chat`, chat: true, ...(slots === 1 ? { run1: runChat } : { run4: runChat }) });
    }
    for (const p of paths) {
      await p.run1?.(); // warm-up: loads the model in the server, JITs every path
      await p.run4?.();
    }
    const samples = paths.map(() => ({ one: [] as Sample[], four: [] as Sample[] }));
    for (let r = 0; r < rounds; r++) {
      for (const [i, p] of paths.entries()) if (p.run1) samples[i]!.one.push(await p.run1());
      for (const [i, p] of paths.entries()) if (p.run4) samples[i]!.four.push(await p.run4());
    }
    const m = (xs: Sample[], k: keyof Sample) => median(xs.map((x) => x[k]));
    const cell = (xs: Sample[], text: () => string) => (xs.length ? text() : '-');
    const rawOf = (chat = false) => samples[paths.findIndex((p) => p.name === (chat ? 'raw node-llama-cpp chat' : 'raw node-llama-cpp'))]!;
    const rows = paths.map((p, i) => {
      const s = samples[i]!;
      const raw = rawOf(p.chat && !p.name.startsWith('raw')); // (raw chats against raw completions: the template's cost)
      return [
        `${name}: ${p.name}`,
        cell(s.one, () => fmt(m(s.one, 'tps'))),
        cell(s.one, () => fmt(m(s.one, 'tps') / m(raw.one, 'tps'), 3)),
        cell(s.one, () => fmt(m(s.one, 'ttftMs'), 2)),
        cell(s.one, () => fmt(m(s.one, 'ttftMs') - m(raw.one, 'ttftMs'), 2)),
        cell(s.one, () => fmt(m(s.one, 'cpuMsPerToken'), 3)),
        cell(s.one, () => fmt(m(s.one, 'mainMsPerToken'), 3)),
        cell(s.four, () => fmt(m(s.four, 'tps'))),
        cell(s.four, () => fmt(m(s.four, 'tps') / m(raw.four, 'tps'), 3)),
        cell(s.four, () => fmt(m(s.four, 'cpuMsPerToken'), 3)),
      ];
    });
    if (llamaServers.length) {
      // Our server against llama-server at its best thread count, per column (chats against its chats).
      const best = (column: 'one' | 'four', chat = false) =>
        Math.max(...paths.map((p, i) => (p.name.startsWith('llama-server') && !!p.chat === chat && samples[i]![column].length ? m(samples[i]![column], 'tps') : 0)));
      for (const which of ['server, native SSE', 'server, /v1 stream', 'server, /v1 chat stream', 'raw node-llama-cpp', 'raw node-llama-cpp chat']) {
        const index = paths.findIndex((p) => p.name === which);
        const { chat } = paths[index]!;
        const ours = (column: 'one' | 'four') => m(samples[index]![column], 'tps');
        rows.push([`${name}: ${which} / best llama-server${chat ? ' chat' : ''}`, fmt(ours('one') / best('one', chat), 3), '', '', '', '', '', fmt(ours('four') / best('four', chat), 3), '', '']);
      }
    }
    return rows;
  } finally {
    for (const { server: ls } of llamaServers) await ls.stop();
    for (const context of contexts) await context.dispose();
    await model.dispose();
  }
}

log(`bench: ${tokens} greedy tokens per stream, ${rounds} alternating rounds, server engine threads ${threads} (shared by its busy contexts), raw ${rawThreads} per context, ${perContext} sequence(s) per context${batchDeterministic ? ' (greedy streams batched: isolate_deterministic = false)' : ''}, ${STREAMS} streams for the parallel figures${llamaServerBin ? `, llama-server ${llamaServerBin}` : ''}`);
log(machineLine());
if (!flags.has('only-http')) {
  const dir = tempDir('inferno-bench-perf-');
  const llama = await startLlama();
  try {
    const files: Record<string, string> = {};
    for (const name of modelNames) {
      const { preset, fileType } = MODELS[name]!;
      files[name] = path.join(dir.dir, `demo-${name}.gguf`);
      const written = await writeDemoModel(files[name], { preset, fileType });
      log(`model demo-${name}: ${preset} ${fileType}, ${(written.bytes / 1e6).toFixed(1)} MB, ${(written.parameters / 1e6).toFixed(2)}M parameters`);
    }
    const serverSettings = { 'engine.threads': threads, 'engine.sequences_per_context': perContext, 'engine.isolate_deterministic': !batchDeterministic, 'logging.level': 'info' };
    const server = await startChildServer({ modelsDir: dir.dir, settings: serverSettings });
    // The baseline at its own default threads (before the threadpools, `threads` was per context and 1).
    const { 'engine.threads': _, ...baselineSettings } = serverSettings;
    const before = baselineRoot ? await startChildServer({ modelsDir: dir.dir, settings: baselineSettings, root: baselineRoot }) : undefined;
    log(`server: ${server.where}, logging at info (a line per request), rate limit on${before ? `; baseline server of ${baselineRoot}: ${before.where}` : ''}`);
    const rows: string[][] = [];
    try {
      for (const name of modelNames) {
        rows.push(...(await benchModel(llama, name, files[name]!, server, before)));
        log(`  ${name} done (load average ${machineLine().split('load average ')[1]})`);
      }
    } finally {
      await before?.stop();
      await server.stop();
    }
    log();
    log(`Streaming: medians of ${rounds}; ratios against raw node-llama-cpp in the same round (chats against its LlamaChatSession on the same reply); CPU per token of the generating process (this one for raw, the server's, llama-server's) and of its main thread alone`);
    log(table(['model: path', '1 stream tok/s', 'vs raw', 'TTFT ms', 'TTFT - raw', 'CPU ms/token', 'main thread', `${STREAMS} streams tok/s`, 'vs raw', 'CPU ms/token'], rows));
    log('targets: server >= 0.97x raw tok/s on every model, TTFT <= raw + 2 ms');
  } finally {
    await llama.dispose();
    dir.remove();
  }
  log();
}
if (!flags.has('no-http')) {
  await httpFloor({ seconds: quick ? 2 : 3, rounds: quick ? 3 : 5, connections: 16, log, baseline: baselineRoot });
}
log();
if (resent.count > 0) log(`${resent.count} streaming request(s) sent a second time: the first went out on a connection that was closed or reset before any answer`);
log(`done; ${machineLine()}`);
