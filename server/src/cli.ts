#!/usr/bin/env node
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { hashPassword } from './auth/passwords.js';
import { openStore } from './store/open-store.js';
import { ConfigError, loadConfig, redactUrl } from './config.js';
import { DEFAULT_DEMO_SEED, DEMO_PRESETS, writeDemoModel, type DemoFileType, type DemoPresetName } from './engine/demo-model.js';
import { isModelId } from './engine/model-catalog.js';
import { startServer } from './server.js';

const USAGE = `Usage: inferno-server [serve] [options]

Commands:
  serve                     Run the server (default)
  models create-demo        Write a generated demo GGUF model into the models dir
      [--preset tiny|small] [--seed N] [--file-type f32|f16|q8_0] [--id NAME]
  users reset-password <username> [--password-from-env]
                            Set a new password (generated and printed once, or
                            INFERNO_ADMIN_PASSWORD with --password-from-env); ends the
                            user's sessions and login lockouts. Works while the server runs.
  help                      Show this help

Options (override inferno.toml and INFERNO_* variables):
  --config <file>           TOML config file (default ./inferno.toml if present)
  --host <host>             Interface to listen on (default 127.0.0.1)
  --port <port>             Port (default 8080; 0 picks a free one)
  --data-dir <dir>          SQLite database and secrets (default ./data)
  --models-dir <dir>        GGUF models (default ./models)

Several replicas share state through INFERNO_DATABASE_URL (postgres://...) and
INFERNO_REDIS_URL (redis://...); see the README, "Running several replicas".
  --set <section.key=value> Any other setting, e.g. --set rate_limit.requests_per_minute=120
`;

async function serve(argv: string[]) {
  const config = loadConfig({ argv });
  const server = await startServer(config);
  // A stray rejection inside a library must not take every other request down with the process.
  process.on('unhandledRejection', (reason) => server.logger.error({ err: reason }, 'unhandled promise rejection'));
  process.stdout.write(`Inferno listening on ${server.url}\n`);
  let stopping = false;
  const stop = async (signal: string) => {
    // A second signal skips what is left of the grace period.
    if (stopping) {
      server.logger.warn({ signal }, 'second signal: stopping now');
      await server.close();
      process.exit(0);
    }
    stopping = true;
    server.logger.info({ signal }, 'shutting down');
    await server.shutdown();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

const DEMO_FLAGS = ['preset', 'seed', 'file-type', 'id'] as const;

/** Splits `--name value` / `--name=value` demo flags from the rest (config flags such as --models-dir). */
function splitDemoFlags(argv: string[]): { demo: Partial<Record<(typeof DEMO_FLAGS)[number], string>>; rest: string[] } {
  const demo: Partial<Record<(typeof DEMO_FLAGS)[number], string>> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]!);
    const name = match?.[1] as (typeof DEMO_FLAGS)[number] | undefined;
    if (!name || !DEMO_FLAGS.includes(name)) {
      rest.push(argv[i]!);
      continue;
    }
    const value = match![2] ?? argv[++i];
    if (value === undefined) throw new ConfigError(`--${name} needs a value`);
    demo[name] = value;
  }
  return { demo, rest };
}

/** `models create-demo`: writes a demo model (same seed, same bytes) where the server looks for models. */
async function createDemo(argv: string[]) {
  const { demo, rest } = splitDemoFlags(argv);
  const preset = (demo.preset ?? 'tiny') as DemoPresetName;
  if (!(preset in DEMO_PRESETS)) throw new ConfigError(`Unknown preset "${preset}": use ${Object.keys(DEMO_PRESETS).join(' or ')}`);
  const seed = demo.seed === undefined ? DEFAULT_DEMO_SEED : Number(demo.seed);
  if (!Number.isInteger(seed) || seed < 0) throw new ConfigError('--seed must be a non-negative integer');
  const fileType = demo['file-type'] as DemoFileType | undefined;
  if (fileType && !['f32', 'f16', 'q8_0'].includes(fileType)) throw new ConfigError('--file-type must be f32, f16 or q8_0');
  const id = demo.id ?? `demo-${preset}`;
  if (!isModelId(id)) throw new ConfigError(`--id "${id}" is not a valid model id (letters, digits, ., _ and -)`);
  const config = loadConfig({ argv: rest });
  await mkdir(config.models.dir, { recursive: true });
  const file = path.join(config.models.dir, `${id}.gguf`);
  process.stdout.write(`Writing demo model "${id}" (preset ${preset}, seed ${seed}) to ${file} ...\n`);
  const result = await writeDemoModel(file, { preset, seed, fileType });
  process.stdout.write(`Done: ${(result.bytes / 1e6).toFixed(1)} MB, ${result.parameters.toLocaleString('en')} parameters.\n`);
}

/** `users reset-password`: the operator's way back in, straight on the store in the data dir. */
async function resetPassword(argv: string[]) {
  const fromEnv = argv.includes('--password-from-env');
  const [username, ...rest] = argv.filter((arg) => arg !== '--password-from-env');
  if (!username || username.startsWith('-')) throw new ConfigError(`users reset-password needs a username\n\n${USAGE}`);
  const config = loadConfig({ argv: rest });
  const file = config.storage.database_url ? redactUrl(config.storage.database_url) : path.join(config.storage.data_dir, 'inferno.db');
  if (!config.storage.database_url && !existsSync(file)) throw new ConfigError(`No database at ${file}: start the server once (it creates the admin), or give --data-dir`);
  let password: string;
  if (fromEnv) {
    password = config.auth.admin_password ?? '';
    if (password.length < 12) throw new ConfigError('--password-from-env needs INFERNO_ADMIN_PASSWORD set to at least 12 characters');
  } else {
    password = randomBytes(18).toString('base64url');
  }
  const store = await openStore(config.storage);
  try {
    const user = await store.getUserByUsername(username);
    if (!user) throw new ConfigError(`No user "${username}" in ${file}`);
    // A new session version ends every token of the user, and with it the user's login lockouts.
    await store.updateUser(user.id, { passwordHash: await hashPassword(password), sessionVersion: user.sessionVersion + 1 });
    await store.recordAudit({ action: 'user.update', outcome: 'success', target: user.username, details: { password_reset: 'cli' } });
    process.stdout.write(`Reset the password of "${user.username}"; its sessions and login lockouts are ended.\n`);
    if (!fromEnv) process.stdout.write(`New password (shown only this once): ${password}\n`);
    if (user.disabled) process.stdout.write(`Note: "${user.username}" is disabled; an admin can enable it (PATCH /api/v1/users/${user.id}).\n`);
  } finally {
    await store.close();
  }
}

async function main(args: string[]) {
  if (args.includes('--help') || args.includes('-h')) args = ['help'];
  const [command, ...rest] = args[0] && !args[0].startsWith('-') ? args : ['serve', ...args];
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'models':
      if (rest[0] === 'create-demo') return createDemo(rest.slice(1));
      throw new ConfigError(`Unknown models command "${rest[0] ?? ''}"\n\n${USAGE}`);
    case 'users':
      if (rest[0] === 'reset-password') return resetPassword(rest.slice(1));
      throw new ConfigError(`Unknown users command "${rest[0] ?? ''}"\n\n${USAGE}`);
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      throw new ConfigError(`Unknown command "${command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`inferno: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`inferno: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
