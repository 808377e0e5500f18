import type { Config } from '../config.js';
import type { LoginThrottle } from '../limits/login-throttle.js';
import type { Logger } from '../logging/logger.js';
import type { Store } from '../store/types.js';

/** What the route modules need; built once in `app.ts`. */
export interface RouteDeps {
  config: Config;
  store: Store;
  logger: Logger;
  jwtSecret: Buffer;
  loginThrottle: LoginThrottle;
  startedAt: number;
  version: string;
}
