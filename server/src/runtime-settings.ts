import type { Config } from './config.js';
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
