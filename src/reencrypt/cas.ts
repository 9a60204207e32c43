/**
 * The bulk compare-and-set: one UPDATE per batch that writes a column's new ciphertext only
 * where the column still holds the exact old ciphertext read by the batch. A value the
 * application changed in between is left as the application wrote it.
 *
 *   PostgreSQL     UPDATE t SET c = CASE … END FROM unnest(pk[], o0[], n0[], …) AS v(…) WHERE t.pk = v.pk AND …
 *   SQLite         UPDATE t SET c = CASE WHEN c = old THEN new ELSE c END … WHERE pk = ? AND (c = old OR …),
 *                  prepared once and run per row inside the batch's transaction (see below)
 *   MySQL/MariaDB  UPDATE t JOIN (SELECT … UNION ALL SELECT …) AS v ON t.pk = v.pk SET …
 * MySQL compares as BINARY: its default collations ignore case and trailing spaces.
 */
import type { Knex } from 'knex';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import type { PkValue } from './scan.js';

/** The rows of one batch to write, flat: `columns` entries per row in `old` and `next`. */
export interface CasBatch {
  pks: PkValue[];
  /** old[row * columns + column]: the ciphertext read, or null where the column is not written. */
  old: Array<string | null>;
  /** next[row * columns + column]: the new ciphertext, or null where the column is not written. */
  next: Array<string | null>;
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
export function buildCasStatement(knex: Knex, dialect: 'pg' | 'mysql', table: string, pk: string, columns: string[], batch: CasBatch, pkType = 'text'): CasStatement {
  const q = (name: string) => knex.raw('??', [name]).toQuery();
  const vcols = ['pk'];
  for (let i = 0; i < columns.length; i++) vcols.push(`o${i}`, `n${i}`);
  const n = batch.pks.length;
  const width = columns.length;
  const matches = (i: number, col: string) =>
    dialect === 'mysql' ? `v.n${i} IS NOT NULL AND CAST(t.${q(col)} AS BINARY) = CAST(v.o${i} AS BINARY)` : `v.n${i} IS NOT NULL AND t.${q(col)} = v.o${i}`;
  const sets = columns.map((c, i) => `${dialect === 'mysql' ? 't.' : ''}${q(c)} = CASE WHEN ${matches(i, c)} THEN v.n${i} ELSE t.${q(c)} END`).join(', ');
  // The batch's key range (rows arrive in key order): without it PostgreSQL hash-joins the VALUES
  // list against a sequential scan of the whole table, for every batch.
  const anyMatch = `t.${q(pk)} BETWEEN ? AND ? AND (${columns.map((c, i) => `(${matches(i, c)})`).join(' OR ')})`;
  const range = [batch.pks[0], batch.pks[n - 1]];
  const tableRef = knex.raw('??', [table]).toQuery();
  switch (dialect) {
    case 'pg': {
      // One array per column (unnest) instead of a VALUES list: a constant-size statement that
      // PostgreSQL parses and plans in the same time for any batch size, and 2k+1 parameters
      // instead of a few thousand.
      const arrays = [pgArrayLiteral(n, (r) => batch.pks[r], false)];
      for (let c = 0; c < width; c++) arrays.push(pgArrayLiteral(n, (r) => batch.old[r * width + c], true), pgArrayLiteral(n, (r) => batch.next[r * width + c], true));
      const types = vcols.map((_, c) => (c === 0 ? pkType : 'text'));
      const unnest = `unnest(${types.map((ty) => `CAST(? AS ${ty}[])`).join(', ')}) AS v(${vcols.join(', ')})`;
      return { sql: `UPDATE ${tableRef} AS t SET ${sets} FROM ${unnest} WHERE t.${q(pk)} = v.pk AND ${anyMatch.replace('BETWEEN ? AND ?', `BETWEEN CAST(? AS ${pkType}) AND CAST(? AS ${pkType})`)}`, bindings: [...arrays, ...range] };
    }
    case 'mysql': {
      const bindings: unknown[] = [];
      for (let r = 0; r < n; r++) {
        bindings.push(batch.pks[r]);
        for (let c = 0; c < width; c++) bindings.push(batch.old[r * width + c], batch.next[r * width + c]);
      }
      const first = `SELECT ${vcols.map((c) => `? AS ${c}`).join(', ')}`;
      const rest = ` UNION ALL SELECT ${vcols.map(() => '?').join(', ')}`;
      const derived = first + rest.repeat(n - 1);
      return { sql: `UPDATE ${tableRef} AS t JOIN (${derived}) AS v ON t.${q(pk)} = v.pk SET ${sets} WHERE ${anyMatch}`, bindings: [...bindings, ...range] };
    }
  }
}

/**
 * A PostgreSQL array literal (`{"a","b",NULL}`), passed as one text parameter. Ciphertexts never
 * need escaping (the codec accepts only `v<N>:` and base64), so their elements are copied as they
 * are — one concatenation instead of node-postgres' two regex replaces per element; anything else
 * (a primary key) is escaped as the array syntax requires.
 */
export function pgArrayLiteral(length: number, at: (i: number) => unknown, ciphertexts: boolean): string {
  let out = '{';
  for (let i = 0; i < length; i++) {
    const v = at(i);
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else if (ciphertexts) {
      // A quote inside an element would shift every later element of this array against the
      // others: never let one through, even though the codec's shape check already excludes it.
      if ((v as string).includes('"') || (v as string).includes('\\')) throw new Error('internal error: a ciphertext with a quote or backslash reached the PostgreSQL array literal');
      out += '"' + (v as string) + '"';
    }
    else {
      const str = String(v);
      out += NEEDS_ESCAPE.test(str) ? `"${str.replace(/[\\"]/g, '\\$&')}"` : `"${str}"`;
    }
  }
  return out + '}';
}
const NEEDS_ESCAPE = /[\\"]/;

/** Run the statement (in `trx`); returns the rows the database reports as matched/updated. */
export async function compareAndSetBatch(db: Db, trx: Knex.Transaction, table: string, pk: string, columns: string[], batch: CasBatch, pkType?: string): Promise<number> {
  if (batch.pks.length === 0) return 0;
  if (db.adapter.dialect === 'sqlite') return sqliteCompareAndSet(db, trx, table, pk, columns, batch);
  const stmt = buildCasStatement(trx as unknown as Knex, db.adapter.dialect, table, pk, columns, batch, pkType);
  try {
    const res: unknown = await trx.raw(stmt.sql, stmt.bindings as Knex.RawBinding[]);
    return affectedRows(db.adapter.dialect, res);
  } catch (err) {
    throw translateDbError(err, db.endpoint, `rewrite a batch of ${table} in`);
  }
}

interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
}
interface SqliteConnection {
  prepare(sql: string): SqliteStatement;
}
const sqliteStatements = new WeakMap<object, Map<string, SqliteStatement>>();

/**
 * SQLite runs in this process, so a statement prepared once and run per row inside the batch's
 * transaction costs less than parsing a multi-row statement per batch (measured: the per-batch
 * prepare was a tenth of keyctl's main-thread time). The transaction keeps the batch atomic.
 */
async function sqliteCompareAndSet(db: Db, trx: Knex.Transaction, table: string, pk: string, columns: string[], batch: CasBatch): Promise<number> {
  const q = (name: string) => trx.raw('??', [name]).toQuery();
  const sql = `UPDATE ${q(table)} SET ${columns.map((c) => `${q(c)} = CASE WHEN ${q(c)} = ? THEN ? ELSE ${q(c)} END`).join(', ')} WHERE ${q(pk)} = ? AND (${columns.map((c) => `${q(c)} = ?`).join(' OR ')})`;
  // Inside a transaction Knex hands out the transaction's own connection.
  const conn = (await (trx as unknown as { client: { acquireConnection(): Promise<SqliteConnection> } }).client.acquireConnection()) as SqliteConnection;
  let cache = sqliteStatements.get(conn);
  if (!cache) sqliteStatements.set(conn, (cache = new Map()));
  try {
    let stmt = cache.get(sql);
    if (!stmt) cache.set(sql, (stmt = conn.prepare(sql)));
    let updated = 0;
    const width = columns.length;
    const params = new Array<unknown>(3 * width + 1);
    for (let r = 0; r < batch.pks.length; r++) {
      let i = 0;
      for (let c = 0; c < width; c++) {
        params[i++] = batch.old[r * width + c];
        params[i++] = batch.next[r * width + c];
      }
      params[i++] = batch.pks[r];
      for (let c = 0; c < width; c++) params[i++] = batch.old[r * width + c];
      updated += stmt.run(...params).changes;
    }
    return updated;
  } catch (err) {
    throw translateDbError(err, db.endpoint, `rewrite a batch of ${table} in`);
  }
}

function affectedRows(dialect: 'pg' | 'mysql', res: unknown): number {
  if (dialect === 'pg') return Number((res as { rowCount?: number }).rowCount ?? 0);
  return Number((res as Array<{ affectedRows?: number }>)[0]?.affectedRows ?? 0);
}
