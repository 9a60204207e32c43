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
  /**
   * A SQL expression: 1 when the column holds a value that does not start with `prefix`
   * (e.g. 'v2:'), else 0. A byte comparison of a prefix — much cheaper than the shape regex,
   * for counting what is left to re-encrypt.
   */
  notPrefixed(column: string, prefix: string): Knex.Raw;
  /** Whether a driver error is a unique-constraint violation. */
  isUniqueViolation(err: unknown): boolean;
}

const UNIQUE_VIOLATION: Record<Dialect, (code: string) => boolean> = {
  sqlite: (code) => code.startsWith('SQLITE_CONSTRAINT'),
  pg: (code) => code === '23505',
  mysql: (code) => code === 'ER_DUP_ENTRY',
};

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

interface DialectSpec {
  knexClient: string;
  label: string;
  /** Regex match operator; SQLite's REGEXP is a function keyctl registers (see connect.ts). */
  regexOperator: '~' | 'REGEXP';
  /** MySQL's REGEXP follows the column's collation, usually case-insensitive; the format is not. */
  patternPrefix: string;
  /** SQL for "the text before the first ':'" of the column bound as ??. */
  versionPrefixSql: string;
  /** SQLite has no timestamp type: keyctl stores ISO-8601 text there. */
  timeAsText: boolean;
}

const SPECS: Record<Dialect, DialectSpec> = {
  sqlite: {
    knexClient: 'better-sqlite3',
    label: 'SQLite',
    regexOperator: 'REGEXP',
    patternPrefix: '',
    versionPrefixSql: "substr(??, 1, instr(??, ':') - 1)",
    timeAsText: true,
  },
  pg: { knexClient: 'pg', label: 'PostgreSQL', regexOperator: '~', patternPrefix: '', versionPrefixSql: "split_part(??, ':', 1)", timeAsText: false },
  mysql: { knexClient: 'mysql2', label: 'MySQL', regexOperator: 'REGEXP', patternPrefix: '(?-i)', versionPrefixSql: "SUBSTRING_INDEX(??, ':', 1)", timeAsText: false },
};

export function createAdapter(dialect: Dialect, knex: Knex): DialectAdapter {
  const spec = SPECS[dialect];
  const prefixRefs = spec.versionPrefixSql.split('??').length - 1;
  return {
    dialect,
    knexClient: spec.knexClient,
    label: spec.label,
    versionBucket: (column, pattern) =>
      knex.raw(
        `CASE WHEN ?? IS NULL THEN '#null' WHEN ?? ${spec.regexOperator} ? THEN ${spec.versionPrefixSql} ELSE '#unparseable' END`,
        [column, column, spec.patternPrefix + pattern, ...Array<string>(prefixRefs).fill(column)],
      ),
    toDbTime: (d) => (spec.timeAsText ? d.toISOString() : d),
    notPrefixed: (column, prefix) =>
      dialect === 'mysql'
        ? knex.raw(`CASE WHEN ?? IS NOT NULL AND CAST(SUBSTRING(??, 1, ?) AS BINARY) <> CAST(? AS BINARY) THEN 1 ELSE 0 END`, [column, column, prefix.length, prefix])
        : knex.raw(`CASE WHEN ?? IS NOT NULL AND substr(??, 1, ?) <> ? THEN 1 ELSE 0 END`, [column, column, prefix.length, prefix]),
    isUniqueViolation: (err) => UNIQUE_VIOLATION[dialect](String((err as { code?: unknown } | null)?.code ?? '')),
  };
}
