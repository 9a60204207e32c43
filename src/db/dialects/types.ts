/**
 * One interface for everything that differs between SQLite, PostgreSQL and MySQL/MariaDB:
 * capability properties (what a dialect has or lacks) and the SQL it writes. Each dialect is
 * one class in this folder; no other module branches on the dialect's name.
 */
import type { Knex } from 'knex';
import type { DatabaseConfig } from '../../config/schema.js';

export type Dialect = 'sqlite' | 'pg' | 'mysql';

/** A primary-key value as the drivers return it. */
export type PkValue = string | number | bigint;

/**
 * A row's key: the value of a one-column key, or the values of a composite key in key order
 * (`primaryKey: [tenant_id, id]` → `[7, 1042]`).
 */
export type RowKey = PkValue | PkValue[];

export interface DbEndpoint {
  dialect: Dialect;
  /** e.g. "PostgreSQL at 127.0.0.1:5432, database test" or "SQLite database /x/keyctl.db" */
  description: string;
  host?: string;
  port?: number;
  database?: string;
}

/** The rows of one batch to write, flat: `columns` entries per row in `old` and `next`. */
export interface CasBatch {
  /** The rows' keys, flat: one entry per key column per row (pks[row * keyColumns + k]). */
  pks: PkValue[];
  /**
   * read[row * columns + column]: every column's value as read with the batch, written or not (a
   * blind index's too). A per-column compare-and-set compares only a written column's (`casOld`);
   * MySQL/MariaDB's first, per-row statement compares them all and gives a column not written its
   * value back.
   */
  read: Array<string | Buffer | null>;
  /** next[row * columns + column]: the new ciphertext, or null where the column is not written. */
  next: Array<string | Buffer | null>;
}

/** What a per-column compare-and-set compares entry `i` with: the value read where it is written, else NULL (matches nothing). */
export function casOld(batch: CasBatch, i: number): string | Buffer | null {
  return batch.next[i] === null || batch.next[i] === undefined ? null : (batch.read[i] ?? null);
}

/**
 * A compare-and-set as SQL: one statement text, run once per entry of `executions` with that
 * entry's bindings (one execution for a multi-row statement, one per row for SQLite's prepared one).
 */
export interface CasPlan {
  sql: string;
  executions: unknown[][];
  /** Run as a server-side prepared statement (binary protocol), reused for plans of the same text. */
  prepared?: boolean;
  /**
   * The same compare-and-set for the text protocol, where it must differ from the prepared one
   * (MySQL/MariaDB: see compareAndSetPlan), for a prepared statement the server fails.
   */
  asText?: () => Pick<CasPlan, 'sql' | 'executions'>;
  /**
   * A first statement that rewrites only rows with every value still as read (MySQL/MariaDB): the
   * batch's row count, and the per-column compare-and-set to run as well when it matched fewer.
   */
  leftovers?: { rows: number; plan: () => CasPlan };
}

export interface CasRequest {
  table: string;
  /** The key column, or a composite key's columns in key order. */
  pk: string | readonly string[];
  columns: string[];
  batch: CasBatch;
  /**
   * The key's SQL type (one per column of a composite key), for dialects whose `casNeedsKeyType`
   * is true.
   */
  pkType?: string | readonly string[] | undefined;
  /**
   * Per column, the column whose value guards it, or null (the default) for its own old value. A
   * guarded column (a blind index) is written only where its guard still holds the old value read
   * with the batch or the new one this statement writes, whatever order a database evaluates the
   * assignments in; it does not count towards matching a row, and its own value read is not
   * compared. (A per-row statement, MySQL/MariaDB's first, compares it like any column.)
   */
  guardedBy?: readonly (number | null)[] | undefined;
  /** Per column, whether it holds bytes (bytea, BLOB): values are Buffers, for dialects that type them. */
  binary?: readonly boolean[] | undefined;
}

/** The guard of column `i` (itself when unguarded). */
export function guardOf(req: Pick<CasRequest, 'guardedBy'>, i: number): number {
  return req.guardedBy?.[i] ?? i;
}

/** The columns guarded by their own old value: those whose match makes a row count as updated. */
export function ownColumns(req: Pick<CasRequest, 'guardedBy' | 'columns'>): number[] {
  return req.columns.map((_, i) => i).filter((i) => guardOf(req, i) === i);
}

/**
 * The condition under which column `i` takes its new value, in a dialect's own expressions for
 * the table's column, the batch's old value and the batch's new value of a column.
 */
export function casMatch(
  req: Pick<CasRequest, 'guardedBy'>,
  i: number,
  col: (c: number) => string,
  old: (c: number) => string,
  next: (c: number) => string,
  /** The new value as compared with the column (a dialect may cast it); `next` by default. */
  nextCompared: (c: number) => string = next,
): string {
  const g = guardOf(req, i);
  if (g === i) return `${next(i)} IS NOT NULL AND ${col(i)} = ${old(i)}`;
  return `${next(i)} IS NOT NULL AND (${col(g)} = ${old(g)} OR ${col(g)} = ${nextCompared(g)})`;
}

/** A WHERE fragment for Knex's `whereRaw`: `??` for identifiers, `?` for values. */
export interface RawCondition {
  sql: string;
  bindings: Array<string | number | bigint>;
}

/** Driver errors keyctl explains the same way on every dialect (see db/errors.ts). */
export type DbErrorKind = 'login-refused' | 'no-such-database' | 'cannot-open';

export interface SqlDialect {
  readonly dialect: Dialect;
  /** Human name for messages. */
  readonly label: string;
  /** Knex client name. */
  readonly knexClient: string;

  // ---- capabilities ----
  /** The database is a file opened in this process (no server, no host, no load to probe). */
  readonly embedded: boolean;
  /** SELECT … FOR UPDATE locks the rows it reads (false where a write transaction already excludes all others). */
  readonly locksSelectedRows: boolean;
  /** No timestamp type: keyctl stores ISO-8601 text. */
  readonly timestampsAsText: boolean;
  /** The compare-and-set needs the primary key's SQL type (see `primaryKeyType`). */
  readonly casNeedsKeyType: boolean;
  /** URL schemes (without ':') that select this dialect; empty for a file path. */
  readonly urlSchemes: readonly string[];
  /** The ORDER BY expression for a random sample. */
  readonly randomOrder: string;

  /** Quote an identifier (dotted names quote each part), exactly as Knex's `??` does. */
  quoteIdentifier(name: string): string;
  /** Where the database is, for messages; validates the connection string. */
  describeEndpoint(cfg: DatabaseConfig, baseDir: string): DbEndpoint;
  /** Knex configuration for the endpoint. */
  knexConfig(cfg: DatabaseConfig, ep: DbEndpoint): Knex.Config;

  /**
   * A SQL expression that classifies a column value: '#null', '#unparseable', or the version
   * prefix (e.g. 'v2') of a value matching `shape`. With `fernetShape`, a Fernet token is
   * '#fernet' (its version is found by trying keys) and a value matching `fernetClaims` but not the
   * shape is '#unparseable'. With `claims` (a target with `plaintext: encrypt`), a value that
   * matches no shape nor either claims pattern is '#plaintext' instead of '#unparseable'.
   */
  versionBucket(knex: Knex, column: string, patterns: BucketPatterns): Knex.Raw;
  /**
   * The same for a binary column (docs/format.md, "Binary values"): '#null', the lowercase hex of
   * the two version bytes of a value long enough and starting with `magic`, '#plaintext' for other
   * bytes when `plaintext` (a target being onboarded), else '#unparseable'.
   */
  binaryVersionBucket(knex: Knex, column: string, magic: number, minBytes: number, plaintext: boolean): Knex.Raw;
  /**
   * A SQL expression: 1 when the column holds a value that does not start with `prefix`
   * (e.g. 'v2:'), else 0. A byte comparison of a prefix — much cheaper than the shape regex.
   * With `claimsPattern` (a target with `plaintext: encrypt`), also 1 for a value that has the
   * prefix but does not claim to be ciphertext (plaintext such as `v2: call back`).
   */
  notPrefixed(knex: Knex, column: string, prefix: string, claimsPattern?: string): Knex.Raw;
  /** Timestamps as the driver should bind them (UTC). */
  toDbTime(d: Date): Date | string;

  /** How busy the server is (`reencrypt --max-load`), or null where there is no server. */
  loadProbe(knex: Knex): (() => Promise<number>) | null;
  /** The primary key's SQL type where the compare-and-set needs it, else undefined. */
  primaryKeyType(knex: Knex, table: string, column: string): Promise<string | undefined>;
  /**
   * The column lists of the table's primary key and of its unique indexes that hold for every row
   * (not partial, no expressions). `table` may be `schema.table`. keyset pagination and the
   * compare-and-set need a unique key: a column is one when some list is exactly that column.
   */
  uniqueKeys(knex: Knex, table: string): Promise<string[][]>;
  /** Every index's columns in order, unique or not (the primary key first where the dialect lists it), same rules. */
  indexKeys(knex: Knex, table: string): Promise<string[][]>;
  /**
   * Keyset pagination on a composite key: the rows whose key columns, as a tuple, come after
   * `after` (same length as `columns`) in key order — written so the database walks the key's index.
   */
  keyAfter(columns: readonly string[], after: readonly PkValue[]): RawCondition;
  /** The compare-and-set statement and its bindings for one batch (pure: no database needed). */
  compareAndSetPlan(req: CasRequest): CasPlan;
  /** Run a plan inside the batch's transaction; returns the rows the database reports updated. */
  runCompareAndSet(trx: Knex.Transaction, plan: CasPlan): Promise<number>;

  /** Whether a driver error is a unique-constraint violation. */
  isUniqueViolation(err: unknown): boolean;
  /** Whether a failure is transient (deadlock, lock wait, dropped connection): worth another try. */
  isRetryable(err: unknown): boolean;
  /** Whether a failure means another process holds a lock we need right now. */
  isLockContention(err: unknown): boolean;
  /** What a driver error code means, where keyctl has a dialect-independent explanation. */
  errorKind(code: string): DbErrorKind | undefined;
  /** What to check when the server cannot be reached. */
  serverCheckHint(ep: DbEndpoint): string;
  /** How to create a missing database. */
  createDatabaseHint(ep: DbEndpoint): string;
}

/** The regular expressions a version bucket classifies values by (src/crypto/field.ts makes them). */
export interface BucketPatterns {
  shape: string;
  claims?: string | undefined;
  fernetShape?: string | undefined;
  fernetClaims?: string | undefined;
}

/**
 * The CASE expression every dialect's versionBucket builds, in one place: `match(pattern)` is the
 * dialect's regular-expression test of the column (`?? ~ ?`, `?? REGEXP ?`) and `version` its
 * expression for the text before the first `:`; the bindings come back in placeholder order.
 */
export function bucketCase(
  column: string,
  p: BucketPatterns,
  match: (pattern: string) => { sql: string; bindings: unknown[] },
  version: { sql: string; bindings: unknown[] },
): { sql: string; bindings: unknown[] } {
  const parts: string[] = [`CASE WHEN ?? IS NULL THEN '#null'`];
  const bindings: unknown[] = [column];
  const arm = (pattern: string, then: string, thenBindings: unknown[] = []) => {
    const m = match(pattern);
    parts.push(`WHEN ${m.sql} THEN ${then}`);
    bindings.push(...m.bindings, ...thenBindings);
  };
  if (p.fernetShape) arm(p.fernetShape, `'#fernet'`);
  arm(p.shape, version.sql, version.bindings);
  if (p.fernetClaims) arm(p.fernetClaims, `'#unparseable'`);
  if (p.claims) {
    arm(p.claims, `'#unparseable'`);
    parts.push(`ELSE '#plaintext' END`);
  } else parts.push(`ELSE '#unparseable' END`);
  return { sql: parts.join(' '), bindings };
}

/**
 * binaryVersionBucket's CASE, in one place: `hexOfVersion` is the dialect's lowercase hex of
 * `substr(column, 2, 2)`. substr and length count bytes on bytea, BLOB and VARBINARY alike.
 */
export function binaryBucketCase(knex: Knex, column: string, magic: number, minBytes: number, plaintext: boolean, hexOfVersion: string): Knex.Raw {
  const head = Buffer.from([magic]);
  return knex.raw(
    `CASE WHEN ?? IS NULL THEN '#null' WHEN length(??) >= ? AND substr(??, 1, 1) = ? THEN ${hexOfVersion} WHEN substr(??, 1, 1) = ? THEN '#unparseable' ELSE '${plaintext ? '#plaintext' : '#unparseable'}' END`,
    [column, column, minBytes, column, head, column, column, head],
  );
}
