#!/usr/bin/env node
/**
 * `npm run contract -- [options]`: checks a server against openapi.yaml.
 * Exit status: 0 when every check holds, 1 when any fails (cleanup included), 2 for bad usage.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startLocalServer, type LocalServer } from './local-server.js';
import { formatReport, summaryLine, type ReportFormat } from './report.js';
import { runContract, type ContractOptions } from './runner.js';
import { loadSpec } from './spec.js';

const USAGE = `Usage: npm run contract -- [options]

Checks a server against openapi.yaml: every operation of the spec, with plausible requests,
requests the schemas forbid, missing and too narrow credentials, and streamed answers.

Options:
  --base-url URL          The server to test (default: start our own on a free port, with a temp data dir)
  --api-key KEY           Authenticate with an API key (or INFERNO_API_KEY)
  --username U            Log in with a username and password (admin credentials
  --password P              let the kit create the narrow keys of the 403 checks; or INFERNO_PASSWORD)
  --only TAG,...          Only these tags or operationIds (e.g. --only openai for the /v1 API alone)
  --skip TAG,...          Leave these tags or operationIds out (reported as skipped)
  --model ID              The model for inference requests (default: the first the server lists)
  --report text|json|junit  Report format (default text)
  --out FILE              Write the report to FILE (the summary line still goes to stdout)
  --spec FILE             Another OpenAPI document (default: this repository's openapi.yaml)
  --ignore-header H,...    Do not check these documented headers (* matches anything), for servers
                            that do not promise them, e.g. 'X-Request-Id,X-RateLimit-*'
  --no-rate-limit-probe   Do not provoke a 429 at the end (it uses up this address's window
                            for unauthenticated requests, when at most 1000 are left in it)
  --verbose               List every check, not only the first failure of each operation
  --help                  This help

Exit status: 0 everything holds, 1 something failed, 2 bad usage.
`;

class UsageError extends Error {}

function parse(argv: string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: false,
      allowNegative: true,
      options: {
        'base-url': { type: 'string' },
        'api-key': { type: 'string' },
        username: { type: 'string' },
        password: { type: 'string' },
        only: { type: 'string' },
        skip: { type: 'string' },
        model: { type: 'string' },
        report: { type: 'string', default: 'text' },
        out: { type: 'string' },
        spec: { type: 'string' },
        verbose: { type: 'boolean', default: false },
        'rate-limit-probe': { type: 'boolean', default: true },
        'ignore-header': { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    }).values;
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const format = parsed.report as ReportFormat;
  if (!['text', 'json', 'junit'].includes(format)) throw new UsageError(`--report must be text, json or junit, not "${parsed.report}"`);
  const apiKey = parsed['api-key'] ?? (parsed.username === undefined ? process.env.INFERNO_API_KEY || undefined : undefined);
  const password = parsed.password ?? (parsed.username !== undefined ? process.env.INFERNO_PASSWORD || undefined : undefined);
  if (apiKey && parsed.username !== undefined) throw new UsageError('give either --api-key or --username and --password, not both');
  if (parsed.username !== undefined && password === undefined) throw new UsageError('--username needs --password (or INFERNO_PASSWORD)');
  if (parsed.password !== undefined && parsed.username === undefined) throw new UsageError('--password needs --username');
  if (!parsed['base-url'] && (apiKey || parsed.username)) throw new UsageError('credentials go with --base-url (without it the kit starts its own server and logs in itself)');
  const baseUrl = parsed['base-url'];
  if (baseUrl !== undefined && !/^https?:\/\/[^/]+/.test(baseUrl)) throw new UsageError(`--base-url must be an http(s) URL, not "${baseUrl}"`);
  const list = (value?: string) => value?.split(',').map((s) => s.trim()).filter(Boolean);
  let spec;
  try {
    spec = loadSpec(parsed.spec);
  } catch (error) {
    throw new UsageError(`cannot read the spec: ${(error as Error).message}`);
  }
  const known = new Set([...spec.tags, ...spec.operations.map((o) => o.id)]);
  for (const name of [...(list(parsed.only) ?? []), ...(list(parsed.skip) ?? [])]) {
    if (!known.has(name)) throw new UsageError(`"${name}" is neither a tag nor an operationId of the spec (tags: ${spec.tags.join(', ')})`);
  }
  return { parsed, format, apiKey, password, only: list(parsed.only), skip: list(parsed.skip), ignoreHeaders: list(parsed['ignore-header']), baseUrl };
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parse(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`contract: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (args.parsed.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  let local: LocalServer | undefined;
  const options: ContractOptions = {
    baseUrl: args.baseUrl ?? '',
    only: args.only,
    skip: args.skip,
    specPath: args.parsed.spec,
    model: args.parsed.model,
    rateLimitProbe: args.parsed['rate-limit-probe'],
    ignoreHeaders: args.ignoreHeaders,
    log: (line) => process.stderr.write(`  ${line}\n`),
  };
  if (args.parsed.verbose === false) options.log = (line) => (/wait/.test(line) ? process.stderr.write(`contract: ${line}\n`) : undefined);
  try {
    if (args.baseUrl === undefined) {
      process.stderr.write('contract: starting our own server (temp data dir, demo model) ...\n');
      local = await startLocalServer();
      Object.assign(options, { baseUrl: local.url, username: local.username, password: local.password });
    } else if (args.apiKey) options.apiKey = args.apiKey;
    else if (args.parsed.username !== undefined) Object.assign(options, { username: args.parsed.username, password: args.password });
    const report = await runContract(options);
    const output = formatReport(report, args.format, { verbose: args.parsed.verbose });
    if (args.parsed.out) {
      writeFileSync(args.parsed.out, output);
      process.stdout.write(`${summaryLine(report)}\n`);
    } else process.stdout.write(output);
    return report.summary.failed > 0 || report.summary.cleanupFailed > 0 ? 1 : 0;
  } catch (error) {
    process.stderr.write(`contract: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await local?.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
