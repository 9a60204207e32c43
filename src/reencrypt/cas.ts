/**
 * The bulk compare-and-set: one UPDATE per batch that writes a column's new ciphertext only
 * where the column still holds the exact old ciphertext read by the batch. A value the
 * application changed in between is left as the application wrote it.
 *
 *   PostgreSQL     UPDATE t SET c = CASE … END FROM (VALUES …) AS v(…) WHERE t.pk = v.pk AND …
 *   SQLite ≥3.33   WITH v(…) AS (VALUES …) UPDATE t SET c = CASE … END FROM v WHERE …
 *   MySQL/MariaDB  UPDATE t JOIN (SELECT … UNION ALL SELECT …) AS v ON t.pk = v.pk SET …
 * MySQL compares as BINARY: its default collations ignore case and trailing spaces.
 */
import type { Knex } from 'knex';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import type { PkValue } from './scan.js';

export interface CasRow {
  pk: PkValue;
  /** column → [old ciphertext, new ciphertext]; columns without a change are absent. */
  changes: Map<string, [string, string]>;
}

/** Largest batch whose statement stays under every dialect's bind-parameter limit. */
export function maxCasBatch(columnCount: number): number {
  return Math.floor(30_000 / (1 + 2 * columnCount));
}

/** PostgreSQL needs the primary key's type to compare with VALUES (parameters arrive as text). */
export async function pgColumnType(db: Db, table: string, column: string): Promise<string> {
  const r = await db.knex.raw(`SELECT format_type(a.atttypid, a.atttypmod) AS t FROM pg_attribute a WHERE a.attrelid = ?::regclass AND a.attname = ?`, [table, column]);
  const t = (r.rows as Array<{ t: string }>)[0]?.t;
  if (!t) throw new Error(`cannot read the type of ${table}.${column}`);
  return t;
}

export interface CasStatement {
  sql: string;
  bindings: unknown[];
}

/** The statement text and its bindings, built directly (no second pass through Knex's formatter). */
export function buildCasStatement(knex: Knex, dialect: Db['adapter']['dialect'], table: string, pk: string, columns: string[], rows: CasRow[], pkType = 'text'): CasStatement {
  const q = (name: string) => knex.raw('??', [name]).toQuery();
  const vcols = ['pk'];
  for (let i = 0; i < columns.length; i++) vcols.push(`o${i}`, `n${i}`);
  const bindings: unknown[] = [];
  for (const r of rows) {
    bindings.push(r.pk);
    for (const c of columns) {
      const change = r.changes.get(c);
      if (change) bindings.push(change[0], change[1]);
      else bindings.push(null, null);
    }
  }
  const matches = (i: number, col: string) =>
    dialect === 'mysql' ? `v.n${i} IS NOT NULL AND CAST(t.${q(col)} AS BINARY) = CAST(v.o${i} AS BINARY)` : `v.n${i} IS NOT NULL AND t.${q(col)} = v.o${i}`;
  const sets = columns.map((c, i) => `${dialect === 'mysql' ? 't.' : ''}${q(c)} = CASE WHEN ${matches(i, c)} THEN v.n${i} ELSE t.${q(c)} END`).join(', ');
  // The batch's key range (rows arrive in key order): without it PostgreSQL hash-joins the VALUES
  // list against a sequential scan of the whole table, for every batch.
  const anyMatch = `t.${q(pk)} BETWEEN ? AND ? AND (${columns.map((c, i) => `(${matches(i, c)})`).join(' OR ')})`;
  const range = [rows[0]!.pk, rows[rows.length - 1]!.pk];
  const tableRef = knex.raw('??', [table]).toQuery();
  const repeat = (one: string) => Array<string>(rows.length).fill(one).join(', ');
  switch (dialect) {
    case 'pg': {
      const rowSql = `(CAST(? AS ${pkType}), ${columns.map(() => 'CAST(? AS text), CAST(? AS text)').join(', ')})`;
      return { sql: `UPDATE ${tableRef} AS t SET ${sets} FROM (VALUES ${repeat(rowSql)}) AS v(${vcols.join(', ')}) WHERE t.${q(pk)} = v.pk AND ${anyMatch.replace('BETWEEN ? AND ?', `BETWEEN CAST(? AS ${pkType}) AND CAST(? AS ${pkType})`)}`, bindings: [...bindings, ...range] };
    }
    case 'sqlite': {
      const rowSql = `(${vcols.map(() => '?').join(', ')})`;
      return { sql: `WITH v(${vcols.join(', ')}) AS (VALUES ${repeat(rowSql)}) UPDATE ${tableRef} AS t SET ${sets} FROM v WHERE t.${q(pk)} = v.pk AND ${anyMatch}`, bindings: [...bindings, ...range] };
    }
    case 'mysql': {
      const first = `SELECT ${vcols.map((c) => `? AS ${c}`).join(', ')}`;
      const rest = ` UNION ALL SELECT ${vcols.map(() => '?').join(', ')}`;
      const derived = first + rest.repeat(rows.length - 1);
      return { sql: `UPDATE ${tableRef} AS t JOIN (${derived}) AS v ON t.${q(pk)} = v.pk SET ${sets} WHERE ${anyMatch}`, bindings: [...bindings, ...range] };
    }
  }
}

/** Run the statement (in `trx`); returns the rows the database reports as matched/updated. */
export async function compareAndSetBatch(db: Db, trx: Knex.Transaction, table: string, pk: string, columns: string[], rows: CasRow[], pkType?: string): Promise<number> {
  if (rows.length === 0) return 0;
  const stmt = buildCasStatement(trx as unknown as Knex, db.adapter.dialect, table, pk, columns, rows, pkType);
  try {
    const res: unknown = await trx.raw(stmt.sql, stmt.bindings as Knex.RawBinding[]);
    return affectedRows(db.adapter.dialect, res);
  } catch (err) {
    throw translateDbError(err, db.endpoint, `rewrite a batch of ${table} in`);
  }
}

function affectedRows(dialect: Db['adapter']['dialect'], res: unknown): number {
  if (dialect === 'pg') return Number((res as { rowCount?: number }).rowCount ?? 0);
  if (dialect === 'mysql') return Number((res as Array<{ affectedRows?: number }>)[0]?.affectedRows ?? 0);
  return Number((res as { changes?: number }).changes ?? 0);
}
