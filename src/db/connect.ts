/**
 * Opens a Knex connection for the configured database and checks it answers, so a wrong URL
 * fails at once with a message naming the client, host and port. Knex and the drivers are
 * imported here, lazily, so commands that need no database start fast.
 */
import { existsSync } from 'node:fs';
import type { Knex } from 'knex';
import type { DatabaseConfig } from '../config/schema.js';
import { DatabaseError } from '../base/errors.js';
import type { DialectAdapter } from './adapter.js';
import { dialectFor, type DbEndpoint } from './dialects/index.js';
import { translateDbError } from './errors.js';

export interface Db {
  knex: Knex;
  adapter: DialectAdapter;
  endpoint: DbEndpoint;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Directory relative SQLite paths are resolved against (the config file's). */
  baseDir: string;
  /** For SQLite: refuse a missing file instead of creating an empty database (all but init). */
  mustExist?: boolean;
}

/** Where the configured database is, for messages; validates the connection string. */
export function describeEndpoint(cfg: DatabaseConfig, baseDir: string): DbEndpoint {
  return dialectFor(cfg.client).describeEndpoint(cfg, baseDir);
}

const ignore = (): void => undefined;
const QUIET_KNEX_LOG = { warn: ignore, error: ignore, debug: ignore, deprecate: ignore, log: ignore };

export async function openDatabase(cfg: DatabaseConfig, opts: OpenOptions): Promise<Db> {
  const dialect = dialectFor(cfg.client);
  const endpoint = dialect.describeEndpoint(cfg, opts.baseDir);
  if (dialect.embedded && opts.mustExist && endpoint.database !== ':memory:' && !existsSync(endpoint.database!)) {
    throw new DatabaseError(`${endpoint.description} does not exist`, dialect.createDatabaseHint(endpoint));
  }
  const { default: knexFactory } = await import('knex');
  // Knex logs connection failures with stack traces on its own; keyctl reports them itself.
  const knex = knexFactory({ ...dialect.knexConfig(cfg, endpoint), log: QUIET_KNEX_LOG });
  const db: Db = {
    knex,
    adapter: dialect,
    endpoint,
    close: () => knex.destroy(),
  };
  try {
    await knex.raw('select 1');
  } catch (err) {
    await knex.destroy().catch(() => undefined);
    throw translateDbError(err, endpoint);
  }
  return db;
}
