import type { Config } from './config.js';
import type { Logger } from './logging/logger.js';
import type { SettingsStore } from './store/types.js';
import type { ConfigPatch } from './gen/types.gen.js';
import { zConfigPatch } from './gen/zod.gen.js';

/** A patch as `section.key` → value pairs, the form it is persisted in. */
export function flattenPatch(patch: ConfigPatch): Record<string, unknown> {
  const flat: Record<string, unknown> = {};
  for (const [section, values] of Object.entries(patch)) {
    for (const [key, value] of Object.entries(values ?? {})) if (value !== undefined) flat[`${section}.${key}`] = value;
  }
  return flat;
}

/** Applies runtime settings to the live config (every reader takes values from it per request). */
export function applySettings(config: Config, flat: Record<string, unknown>): void {
  for (const [dotted, value] of Object.entries(flat)) {
    const [section, key] = dotted.split('.') as [keyof Config, string];
    (config[section] as Record<string, unknown>)[key] = value;
  }
}

/**
 * Settings persisted by `PATCH /config` win over the file and the environment at start. Entries
 * that no longer validate (a key removed in a newer version) are skipped and reported.
 */
export function applyPersistedSettings(config: Config, persisted: Record<string, unknown>): { applied: string[]; skipped: string[] } {
  const applied: string[] = [];
  const skipped: string[] = [];
  for (const [dotted, value] of Object.entries(persisted)) {
    const [section, key] = dotted.split('.');
    const check = zConfigPatch.safeParse({ [section!]: { [key!]: value } });
    const accepted = check.success && flattenPatch(check.data)[dotted] !== undefined;
    if (!accepted) {
      skipped.push(dotted);
      continue;
    }
    applySettings(config, { [dotted]: value });
    applied.push(dotted);
  }
  return { applied, skipped };
}

/** A running settings watch: `refresh` re-reads the settings now (a replica announced a change); `stop` ends it. */
export interface SettingsWatch {
  refresh(): void;
  stop(): void;
}

/**
 * Several replicas on one store: polls the persisted settings and applies the ones another
 * replica changed (PATCH /config there), so a change reaches every replica within `intervalMs`
 * and a bit, or at once when `refresh` is called on word of it (Redis pub/sub).
 */
export function watchSettings(store: SettingsStore, config: Config, logger: Logger, intervalMs: number): SettingsWatch {
  const seen = new Map<string, string>();
  let running = false;
  // A refresh asked for during a read may have come after that read: read once more.
  let again = false;
  const poll = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      const persisted = await store.getSettings();
      const changed: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(persisted)) {
        const json = JSON.stringify(value);
        if (seen.get(key) !== json) changed[key] = value;
        seen.set(key, json);
      }
      if (Object.keys(changed).length === 0) return;
      const result = applyPersistedSettings(config, changed);
      if ('logging.level' in changed) logger.level = config.logging.level;
      if (result.applied.length > 0) logger.debug({ keys: result.applied }, 'applied settings changed on another replica');
    } catch (error) {
      logger.warn({ err: error }, 'could not read the shared settings; will retry');
    } finally {
      running = false;
      if (again) {
        again = false;
        void poll();
      }
    }
  };
  void poll();
  const timer = setInterval(() => void poll(), intervalMs);
  timer.unref();
  return { refresh: () => void poll(), stop: () => clearInterval(timer) };
}
