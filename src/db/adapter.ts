/**
 * Per-dialect adapters: the few places where SQL differs between SQLite, PostgreSQL and
 * MySQL/MariaDB live here; everything else is written once against Knex.
 */
import type { Knex } from 'knex';

export type Dialect = 'sqlite' | 'pg' | 'mysql';

export interface DialectAdapter {
  readonly dialect: Dialect;
  /** Knex client name. */
  readonly knexClient: string;
  /** Human name for messages. */
  readonly label: string;
  /**
   * A SQL expression that classifies a column value: '#null', '#unparseable', or the version
   * prefix (e.g. 'v2') of a value matching the codec's shape pattern. Bindings: the column
   * identifier three times around the pattern, as returned.
   */
  versionBucket(column: string, shapePattern: string): Knex.Raw;
  /** Timestamps as the driver should bind them (UTC). */
  toDbTime(d: Date): Date | string;
}

export function fromDbTime(v: unknown): Date | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v;
  if (typeof v === 'number') return new Date(v);
  if (typeof v === 'string') {
    // SQLite stores ISO strings; tolerate "YYYY-MM-DD HH:MM:SS" written by hand (UTC).
    const iso = /Z|[+-]\d\d:?\d\d$/.test(v) ? v : `${v.replace(' ', 'T')}Z`;
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}

export function createAdapter(dialect: Dialect, knex: Knex): DialectAdapter {
  switch (dialect) {
    case 'sqlite':
      return {
        dialect,
        knexClient: 'better-sqlite3',
        label: 'SQLite',
        // keyctl registers REGEXP on every SQLite connection (see connect.ts).
        versionBucket: (column, pattern) =>
          knex.raw(
            `CASE WHEN ?? IS NULL THEN '#null' WHEN ?? REGEXP ? THEN substr(??, 1, instr(??, ':') - 1) ELSE '#unparseable' END`,
            [column, column, pattern, column, column],
          ),
        toDbTime: (d) => d.toISOString(),
      };
    case 'pg':
      return {
        dialect,
        knexClient: 'pg',
        label: 'PostgreSQL',
        versionBucket: (column, pattern) =>
          knex.raw(
            `CASE WHEN ?? IS NULL THEN '#null' WHEN ?? ~ ? THEN split_part(??, ':', 1) ELSE '#unparseable' END`,
            [column, column, pattern, column],
          ),
        toDbTime: (d) => d,
      };
    case 'mysql':
      return {
        dialect,
        knexClient: 'mysql2',
        label: 'MySQL',
        // (?-i): REGEXP follows the column's collation, usually case-insensitive; the format is not.
        versionBucket: (column, pattern) =>
          knex.raw(
            `CASE WHEN ?? IS NULL THEN '#null' WHEN ?? REGEXP ? THEN SUBSTRING_INDEX(??, ':', 1) ELSE '#unparseable' END`,
            [column, column, `(?-i)${pattern}`, column],
          ),
        toDbTime: (d) => d,
      };
  }
}
