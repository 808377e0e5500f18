import type { Config } from '../config.js';
import type { LoginThrottle } from '../limits/login-throttle.js';
import type { Logger } from '../logging/logger.js';
import type { Telemetry } from '../observability/telemetry.js';
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
  /** Metrics, usage accounting, traces: one call per event. */
  telemetry: Telemetry;
  /** Tells the other replicas that persisted settings changed (shared mode with Redis); absent alone. */
  settingsChanged?: () => void;
}
