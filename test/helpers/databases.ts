/**
 * Per-test databases: every test that touches a server creates its own database with a random
 * name and drops it afterwards, so tests never collide and never depend on leftovers.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { afterEach, beforeEach, inject } from 'vitest';
import type { DatabaseConfig } from '../../src/config/schema.js';
import { MYSQL_ADMIN_URL, PG_ADMIN_URL, type TestDialect } from './env.js';

export const DIALECTS: TestDialect[] = (process.env.KEYCTL_TEST_DIALECTS?.split(',') as TestDialect[] | undefined) ?? ['sqlite', 'pg', 'mysql'];

export function dialectAvailable(d: TestDialect): boolean {
  return inject('available')[d];
}

const quiet = { warn() {}, error() {}, debug() {}, deprecate() {} };

function adminKnex(dialect: 'pg' | 'mysql'): Knex {
  const url = new URL(dialect === 'pg' ? PG_ADMIN_URL : MYSQL_ADMIN_URL);
  return knexFactory({
    client: dialect === 'pg' ? 'pg' : 'mysql2',
    connection:
      dialect === 'pg'
        ? { connectionString: url.toString() }
        : { host: url.hostname, port: Number(url.port || 3306), user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) },
    pool: { min: 0, max: 1 },
    log: quiet,
  });
}

export interface TestDatabase {
  dialect: TestDialect;
  /** database.connection as keyctl.yaml would hold it (a URL, or an absolute SQLite path). */
  connection: string;
  config: DatabaseConfig;
  /** A scratch directory that lives as long as the database. */
  dir: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(dialect: TestDialect): Promise<TestDatabase> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `keyctl-${dialect}-`));
  const name = `keyctl_t_${randomBytes(5).toString('hex')}`;
  if (dialect === 'sqlite') {
    const file = path.join(dir, `${name}.db`);
    return {
      dialect,
      connection: file,
      config: { client: 'sqlite', connection: file, connectTimeoutSeconds: 10 },
      dir,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const admin = adminKnex(dialect);
  try {
    await admin.raw(dialect === 'pg' ? `CREATE DATABASE "${name}"` : `CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`);
  } finally {
    await admin.destroy();
  }
  const url = new URL(dialect === 'pg' ? PG_ADMIN_URL : MYSQL_ADMIN_URL);
  url.pathname = `/${name}`;
  const connection = url.toString();
  return {
    dialect,
    connection,
    config: { client: dialect, connection, connectTimeoutSeconds: 10 },
    dir,
    drop: async () => {
      const a = adminKnex(dialect);
      try {
        await a.raw(dialect === 'pg' ? `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)` : `DROP DATABASE IF EXISTS \`${name}\``);
      } finally {
        await a.destroy();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Gives every test of the enclosing suite a database of its own: created before each test,
 * dropped after it together with whatever the test registered with `cleanup` (closed last-in,
 * first-out, before the drop).
 */
export function perTestDatabase(dialect: TestDialect): { readonly db: TestDatabase; cleanup(...fns: Array<() => Promise<void>>): void } {
  let current: TestDatabase | undefined;
  const cleanups: Array<() => Promise<void>> = [];
  beforeEach(async () => {
    current = await createTestDatabase(dialect);
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    await current?.drop();
    current = undefined;
  });
  return {
    get db(): TestDatabase {
      if (!current) throw new Error('perTestDatabase: used outside a test');
      return current;
    },
    cleanup: (...fns) => void cleanups.push(...fns),
  };
}

/** A Knex of the test's own for the project's database (`connection` as keyctl.yaml names it; a SQLite path is relative to `cwd`). */
export function knexForProject(dialect: string, cwd: string, connection: string): Knex {
  return knexFactory(
    dialect === 'sqlite'
      ? { client: 'better-sqlite3', connection: { filename: path.resolve(cwd, connection) }, useNullAsDefault: true }
      : dialect === 'pg'
        ? { client: 'pg', connection, pool: { min: 0, max: 1 } }
        : { client: 'mysql2', connection, pool: { min: 0, max: 1 } },
  );
}
