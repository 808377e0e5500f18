#!/usr/bin/env node
// The server's command line: `inferno-server [serve|models create-demo|help] [options]`.
// The server runs from its TypeScript sources through tsx's loader.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
