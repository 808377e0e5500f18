#!/usr/bin/env node
import { ConfigError, loadConfig } from './config.js';
import { startServer } from './server.js';

const USAGE = `Usage: inferno-server [serve] [options]

Commands:
  serve                     Run the server (default)
  help                      Show this help

Options (override inferno.toml and INFERNO_* variables):
  --config <file>           TOML config file (default ./inferno.toml if present)
  --host <host>             Interface to listen on (default 127.0.0.1)
  --port <port>             Port (default 8080; 0 picks a free one)
  --data-dir <dir>          SQLite database and secrets (default ./data)
  --models-dir <dir>        GGUF models (default ./models)
  --set <section.key=value> Any other setting, e.g. --set rate_limit.requests_per_minute=120
`;

async function serve(argv: string[]) {
  const config = loadConfig({ argv });
  const server = await startServer(config);
  process.stdout.write(`Inferno listening on ${server.url}\n`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.logger.info({ signal }, 'shutting down');
    await server.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

async function main(args: string[]) {
  if (args.includes('--help') || args.includes('-h')) args = ['help'];
  const [command, ...rest] = args[0] && !args[0].startsWith('-') ? args : ['serve', ...args];
  switch (command) {
    case 'serve':
      return serve(rest);
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
  process.stderr.write(`inferno: failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
