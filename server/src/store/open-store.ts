import type { Config } from '../config.js';
import { PostgresStore } from './postgres-store.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './types.js';

/** `[storage] database_url` selects PostgreSQL (shared by replicas); without it, SQLite in the data dir. */
export async function openStore(storage: Config['storage']): Promise<Store> {
  if (storage.database_url) return PostgresStore.open(storage.database_url, { poolSize: storage.pool_size });
  return new SqliteStore(storage.data_dir);
}
