/**
 * SQLite (better-sqlite3), the embedded default: a file in this process, ISO-8601 text for
 * timestamps, a REGEXP function keyctl registers, and a compare-and-set prepared once and run
 * per row inside the batch's transaction.
 */
import path from 'node:path';
import type { Knex } from 'knex';
import type { DatabaseConfig } from '../../config/schema.js';
import { driverCode, keyColumnsOf, quoteWith, retryableWith, rowValueAfter } from './common.js';
import {
  binaryBucketCase,
  bucketCase,
  casOld,
  guardOf,
  ownColumns,
  type BucketPatterns,
  type CasPlan,
  type CasRequest,
  type DbEndpoint,
  type DbErrorKind,
  type PkValue,
  type RawCondition,
  type SqlDialect,
} from './types.js';

const RETRYABLE = new Set(['SQLITE_BUSY', 'SQLITE_LOCKED']);

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

interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
}
interface SqliteConnection {
  prepare(sql: string): SqliteStatement;
}
const preparedStatements = new WeakMap<object, Map<string, SqliteStatement>>();

export class SqliteDialect implements SqlDialect {
  readonly dialect = 'sqlite' as const;
  readonly label = 'SQLite';
  readonly knexClient = 'better-sqlite3';
  readonly embedded = true;
  // One writer at a time: a write transaction already excludes every other.
  readonly locksSelectedRows = false;
  readonly timestampsAsText = true;
  readonly casNeedsKeyType = false;
  readonly urlSchemes: readonly string[] = [];
  readonly randomOrder = 'random()';

  quoteIdentifier(name: string): string {
    return quoteWith('`', name);
  }

  describeEndpoint(cfg: DatabaseConfig, baseDir: string): DbEndpoint {
    const file = cfg.connection === ':memory:' ? ':memory:' : path.resolve(baseDir, cfg.connection);
    return { dialect: 'sqlite', description: `SQLite database ${file}`, database: file };
  }

  knexConfig(_cfg: DatabaseConfig, ep: DbEndpoint): Knex.Config {
    return {
      client: this.knexClient,
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
            // SQLite's own default page cache (2 MB) instead of better-sqlite3's 16 MB: keyctl reads
            // and rewrites tables in key order, and the smaller cache keeps a 1,000,000-row
            // reencrypt inside its memory goal (docs/performance.md, "Memory").
            conn.pragma('cache_size = -2000');
            conn.function('regexp', { deterministic: true }, (pattern, value) => sqliteRegexp(String(pattern), value));
            done(null, conn);
          } catch (err) {
            done(err as Error, conn);
          }
        },
      },
    };
  }

  binaryVersionBucket(knex: Knex, column: string, magic: number, minBytes: number, plaintext: boolean): Knex.Raw {
    return binaryBucketCase(knex, column, magic, minBytes, plaintext, 'lower(hex(substr(??, 2, 2)))');
  }

  versionBucket(knex: Knex, column: string, patterns: BucketPatterns): Knex.Raw {
    const c = bucketCase(column, patterns, (pattern) => ({ sql: '?? REGEXP ?', bindings: [column, pattern] }), {
      sql: `substr(??, 1, instr(??, ':') - 1)`,
      bindings: [column, column],
    });
    return knex.raw(c.sql, c.bindings as Knex.RawBinding[]);
  }

  notPrefixed(knex: Knex, column: string, prefix: string, claimsPattern?: string): Knex.Raw {
    if (claimsPattern)
      return knex.raw(`CASE WHEN ?? IS NOT NULL AND (substr(??, 1, ?) <> ? OR NOT (?? REGEXP ?)) THEN 1 ELSE 0 END`, [
        column,
        column,
        prefix.length,
        prefix,
        column,
        claimsPattern,
      ]);
    return knex.raw(`CASE WHEN ?? IS NOT NULL AND substr(??, 1, ?) <> ? THEN 1 ELSE 0 END`, [column, column, prefix.length, prefix]);
  }

  toDbTime(d: Date): string {
    return d.toISOString();
  }

  loadProbe(): null {
    return null;
  }

  async primaryKeyType(): Promise<undefined> {
    return undefined;
  }

  /** PRAGMA table_info gives the primary key (also a rowid alias, which has no index); index_list the unique indexes. */
  uniqueKeys(knex: Knex, table: string): Promise<string[][]> {
    return this.keysOf(knex, table, true);
  }

  indexKeys(knex: Knex, table: string): Promise<string[][]> {
    return this.keysOf(knex, table, false);
  }

  private async keysOf(knex: Knex, table: string, uniqueOnly: boolean): Promise<string[][]> {
    const dot = table.indexOf('.');
    const schema = dot < 0 ? '' : `${this.quoteIdentifier(table.slice(0, dot))}.`;
    const name = this.quoteIdentifier(dot < 0 ? table : table.slice(dot + 1));
    const info = (await knex.raw(`PRAGMA ${schema}table_info(${name})`)) as Array<{ name: string; pk: number }>;
    const pk = info
      .filter((c) => c.pk > 0)
      .sort((a, b) => a.pk - b.pk)
      .map((c) => c.name);
    const keys = pk.length > 0 ? [pk] : [];
    const indexes = (await knex.raw(`PRAGMA ${schema}index_list(${name})`)) as Array<{ name: string; unique: number; partial: number }>;
    for (const ix of indexes) {
      if ((uniqueOnly && !ix.unique) || ix.partial) continue;
      const cols = (await knex.raw(`PRAGMA ${schema}index_info(${this.quoteIdentifier(ix.name)})`)) as Array<{ seqno: number; name: string | null }>;
      if (cols.every((c) => c.name !== null)) keys.push(cols.sort((a, b) => a.seqno - b.seqno).map((c) => c.name as string));
    }
    return keys;
  }

  /**
   * SQLite runs in this process, so a statement prepared once and run per row inside the batch's
   * transaction costs less than parsing a multi-row statement per batch (measured: the per-batch
   * prepare was a tenth of keyctl's main-thread time). The transaction keeps the batch atomic.
   */
  compareAndSetPlan(req: CasRequest): CasPlan {
    const { table, pk, columns, batch } = req;
    const q = (name: string) => this.quoteIdentifier(name);
    const keys = keyColumnsOf(pk);
    const where = keys.map((k) => `${q(k)} = ?`).join(' AND ');
    const own = ownColumns(req);
    // A guarded column (blind index): written where its guard holds the old or the new value.
    const set = (c: string, i: number) =>
      guardOf(req, i) === i
        ? `${q(c)} = CASE WHEN ${q(c)} = ? THEN ? ELSE ${q(c)} END`
        : `${q(c)} = CASE WHEN ? IS NOT NULL AND ${q(columns[guardOf(req, i)]!)} IN (?, ?) THEN ? ELSE ${q(c)} END`;
    const sql = `UPDATE ${q(table)} SET ${columns.map(set).join(', ')} WHERE ${where} AND (${own.map((i) => `${q(columns[i]!)} = ?`).join(' OR ')})`;
    const width = columns.length;
    const kw = keys.length;
    const rows = batch.pks.length / kw;
    const executions: unknown[][] = new Array(rows);
    for (let r = 0; r < rows; r++) {
      const params: unknown[] = [];
      for (let c = 0; c < width; c++) {
        const g = guardOf(req, c);
        if (g === c) params.push(casOld(batch, r * width + c), batch.next[r * width + c]);
        else params.push(batch.next[r * width + c], casOld(batch, r * width + g), batch.next[r * width + g], batch.next[r * width + c]);
      }
      for (let k = 0; k < kw; k++) params.push(batch.pks[r * kw + k]);
      for (const c of own) params.push(casOld(batch, r * width + c));
      executions[r] = params;
    }
    return { sql, executions };
  }

  /** Row values (SQLite ≥ 3.15): the planner searches the key's index with them (EXPLAIN QUERY PLAN: `SEARCH … ((a,b)>(?,?))`). */
  keyAfter(columns: readonly string[], after: readonly PkValue[]): RawCondition {
    return rowValueAfter(columns, after);
  }

  async runCompareAndSet(trx: Knex.Transaction, plan: CasPlan): Promise<number> {
    // Inside a transaction Knex hands out the transaction's own connection.
    const conn = (await (trx as unknown as { client: { acquireConnection(): Promise<SqliteConnection> } }).client.acquireConnection()) as SqliteConnection;
    let cache = preparedStatements.get(conn);
    if (!cache) {
      cache = new Map();
      preparedStatements.set(conn, cache);
    }
    let stmt = cache.get(plan.sql);
    if (!stmt) {
      stmt = conn.prepare(plan.sql);
      cache.set(plan.sql, stmt);
    }
    let updated = 0;
    for (const params of plan.executions) updated += stmt.run(...params).changes;
    return updated;
  }

  isUniqueViolation(err: unknown): boolean {
    return driverCode(err).startsWith('SQLITE_CONSTRAINT');
  }

  isRetryable(err: unknown): boolean {
    return retryableWith(RETRYABLE, err);
  }

  isLockContention(err: unknown): boolean {
    return driverCode(err) === 'SQLITE_BUSY' || /database is locked/i.test(String((err as { message?: unknown } | null)?.message ?? ''));
  }

  errorKind(code: string): DbErrorKind | undefined {
    return code === 'SQLITE_CANTOPEN' ? 'cannot-open' : undefined;
  }

  serverCheckHint(): string {
    return 'check the path in database.connection';
  }

  createDatabaseHint(): string {
    return 'run `keyctl init` to create it, or fix database.connection in keyctl.yaml';
  }
}
