/**
 * Opens a Knex connection for the configured database and checks it answers, so a wrong URL
 * fails at once with a message naming the client, host and port. Knex and the drivers are
 * imported here, lazily, so commands that need no database start fast.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import type { DatabaseConfig } from '../config/schema.js';
import { DatabaseError, UsageError } from '../base/errors.js';
import { createAdapter, type DialectAdapter } from './adapter.js';
import { redactUrl, translateDbError, type DbEndpoint } from './errors.js';

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

const regexCache = new Map<string, RegExp>();

function sqliteRegexp(pattern: string, value: unknown): number {
  if (typeof value !== 'string') return 0;
  let re = regexCache.get(pattern);
  if (!re) {
    re = new RegExp(pattern);
    regexCache.set(pattern, re);
  }
  return re.test(value) ? 1 : 0;
}

interface BetterSqliteConnection {
  pragma(sql: string): unknown;
  function(name: string, opts: { deterministic: boolean }, fn: (...args: unknown[]) => unknown): void;
}

export function describeEndpoint(cfg: DatabaseConfig, baseDir: string): DbEndpoint {
  if (cfg.client === 'sqlite') {
    const file = cfg.connection === ':memory:' ? ':memory:' : path.resolve(baseDir, cfg.connection);
    return { dialect: 'sqlite', description: `SQLite database ${file}`, database: file };
  }
  let url: URL;
  try {
    url = new URL(cfg.connection);
  } catch {
    throw new UsageError(
      `database.connection for client "${cfg.client}" must be a URL, found a value that is not one`,
      cfg.client === 'pg'
        ? 'use postgres://USER[:PASSWORD]@HOST:PORT/DATABASE, e.g. connection: ${DATABASE_URL}'
        : 'use mysql://USER[:PASSWORD]@HOST:PORT/DATABASE, e.g. connection: ${DATABASE_URL}',
    );
  }
  const expected = cfg.client === 'pg' ? ['postgres:', 'postgresql:'] : ['mysql:', 'mariadb:'];
  if (!expected.includes(url.protocol)) {
    throw new UsageError(
      `database.connection has scheme "${url.protocol.replace(':', '')}" but database.client is "${cfg.client}"`,
      `use a ${expected[0]}// URL, or set database.client to match the URL`,
    );
  }
  const host = url.hostname || 'localhost';
  const port = url.port ? Number(url.port) : cfg.client === 'pg' ? 5432 : 3306;
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || undefined;
  const label = cfg.client === 'pg' ? 'PostgreSQL' : 'MySQL';
  return {
    dialect: cfg.client,
    description: `${label} at ${host}:${port}${database ? `, database ${database}` : ''} (${redactUrl(cfg.connection)})`,
    host,
    port,
    ...(database ? { database } : {}),
  };
}

function knexConfig(cfg: DatabaseConfig, ep: DbEndpoint): Knex.Config {
  const timeoutMs = Math.round(cfg.connectTimeoutSeconds * 1000);
  const pool = { min: cfg.pool?.min ?? 0, max: cfg.pool?.max ?? 4 };
  switch (cfg.client) {
    case 'sqlite':
      return {
        client: 'better-sqlite3',
        connection: { filename: ep.database! },
        useNullAsDefault: true,
        pool: {
          min: 1,
          max: 1,
          afterCreate(conn: BetterSqliteConnection, done: (err: Error | null, conn: unknown) => void) {
            try {
              conn.pragma('journal_mode = WAL');
              // Writers from other processes (shards) wait up to 5 s; a phase change that still finds
              // the database busy is retried (transition.ts), a batch too (engine.ts).
              conn.pragma('busy_timeout = 5000');
              conn.function('regexp', { deterministic: true }, (pattern, value) => sqliteRegexp(String(pattern), value));
              done(null, conn);
            } catch (err) {
              done(err as Error, conn);
            }
          },
        },
      };
    case 'pg':
      return {
        client: 'pg',
        connection: {
          connectionString: cfg.connection,
          connectionTimeoutMillis: timeoutMs,
          application_name: 'keyctl',
        },
        pool,
        acquireConnectionTimeout: timeoutMs + 2000,
      };
    case 'mysql': {
      const url = new URL(cfg.connection);
      const ssl = url.searchParams.get('ssl');
      return {
        client: 'mysql2',
        connection: {
          host: ep.host,
          port: ep.port,
          user: decodeURIComponent(url.username),
          password: decodeURIComponent(url.password),
          database: ep.database,
          timezone: 'Z',
          charset: 'utf8mb4',
          connectTimeout: timeoutMs,
          supportBigNumbers: true,
          ...(ssl === 'true' || ssl === 'required' ? { ssl: {} } : {}),
        },
        pool,
        acquireConnectionTimeout: timeoutMs + 2000,
      };
    }
  }
}

const ignore = (): void => undefined;
const QUIET_KNEX_LOG = { warn: ignore, error: ignore, debug: ignore, deprecate: ignore, log: ignore };

export async function openDatabase(cfg: DatabaseConfig, opts: OpenOptions): Promise<Db> {
  const endpoint = describeEndpoint(cfg, opts.baseDir);
  if (cfg.client === 'sqlite' && opts.mustExist && endpoint.database !== ':memory:' && !existsSync(endpoint.database!)) {
    throw new DatabaseError(
      `${endpoint.description} does not exist`,
      'run `keyctl init` to create it, or fix database.connection in keyctl.yaml',
    );
  }
  const { default: knexFactory } = await import('knex');
  // Knex logs connection failures with stack traces on its own; keyctl reports them itself.
  const knex = knexFactory({ ...knexConfig(cfg, endpoint), log: QUIET_KNEX_LOG });
  const db: Db = {
    knex,
    adapter: createAdapter(cfg.client, knex),
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
