/**
 * Keyset pagination over a target table: `WHERE pk > :last ORDER BY pk LIMIT :n`, never OFFSET,
 * so each batch costs the same however deep into the table it is. A composite key
 * (`primaryKey: [tenant_id, id]`) is walked as a tuple: `ORDER BY tenant_id, id` and the
 * dialect's "after this tuple" condition (`keyAfter`), so a leading value repeated across batch
 * boundaries is neither skipped nor read twice.
 */
import type { Knex } from 'knex';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import type { RowScope } from '../config/tenancy.js';

export type { PkValue, RowKey } from '../db/adapter.js';
import type { PkValue, RowKey } from '../db/adapter.js';
export type Row = Record<string, unknown>;

/** A target's key as configured: one column, or a composite key's columns in key order. */
export type KeySpec = string | readonly string[];

/** Shard `index` of `count`: the rows whose integer primary key ≡ index (mod count). */
export interface Shard {
  index: number;
  count: number;
}

/** The key's columns in key order. */
export function keyColumns(pk: KeySpec): readonly string[] {
  return typeof pk === 'string' ? [pk] : pk;
}

/**
 * The column `--shard` splits on: the key itself, or a composite key's last column (in
 * `(tenant_id, id)` the row id, which spreads rows evenly where the tenant would not).
 */
export function shardColumn(pk: KeySpec): string {
  const cols = keyColumns(pk);
  return cols[cols.length - 1]!;
}

/** A row's key: the one column's value, or the tuple of a composite key's values. */
export function keyOf(row: Row, pk: KeySpec): RowKey {
  if (typeof pk === 'string') return row[pk] as PkValue;
  return pk.length === 1 ? (row[pk[0]!] as PkValue) : pk.map((c) => row[c] as PkValue);
}

/**
 * A key as operators read it (failures, status, resume messages): a one-column key as it is
 * (`1042`), a tuple in parentheses (`(7, 1042)`), where a value that is not a plain number is
 * quoted as SQL writes it (`('acme', 1042)`), so the text can be pasted into a WHERE clause.
 */
export function formatKey(key: RowKey): string {
  if (!Array.isArray(key)) return String(key);
  return `(${key.map((v) => (typeof v === 'string' && !/^-?\d+(\.\d+)?$/.test(v) ? `'${v.replace(/'/g, "''")}'` : String(v))).join(', ')})`;
}

/** Whether a saved cursor fits the key (a tuple of its width, or one value for a one-column key). */
export function cursorFits(cursor: RowKey, pk: KeySpec): boolean {
  const width = keyColumns(pk).length;
  return Array.isArray(cursor) ? cursor.length === width && width > 1 : width === 1;
}

/** Only one tenant's rows (`column = value`), when the target is scoped to a tenant (config/tenancy). */
export function scopeFilter(q: Knex.QueryBuilder, scope: RowScope | undefined): Knex.QueryBuilder {
  return scope ? q.where(scope.column, scope.value) : q;
}

export function shardFilter(q: Knex.QueryBuilder, pk: KeySpec, shard: Shard | undefined, scope?: RowScope): Knex.QueryBuilder {
  scopeFilter(q, scope);
  if (!shard || shard.count === 1) return q;
  // ((pk % n) + n) % n: the same residue for negative keys on every dialect.
  return q.whereRaw('((?? % ?) + ?) % ? = ?', [shardColumn(pk), shard.count, shard.count, shard.count, shard.index]);
}

export async function readBatch(
  db: Db,
  table: string,
  pk: KeySpec,
  columns: string[],
  after: RowKey | null,
  limit: number,
  shard?: Shard,
  scope?: RowScope,
): Promise<Row[]> {
  try {
    const keys = keyColumns(pk);
    if (keys.length === 1) {
      const col = keys[0]!;
      const q = shardFilter(
        db
          .knex(table)
          .select([col, ...columns])
          .orderBy(col, 'asc')
          .limit(limit),
        col,
        shard,
        scope,
      );
      if (after !== null) q.where(col, '>', after as string | number);
      return (await q) as Row[];
    }
    const q = shardFilter(
      db
        .knex(table)
        .select([...keys, ...columns])
        .orderBy(keys.map((column) => ({ column, order: 'asc' as const })))
        .limit(limit),
      pk,
      shard,
      scope,
    );
    if (after !== null) {
      const cond = db.adapter.keyAfter(keys, after as PkValue[]);
      q.whereRaw(cond.sql, cond.bindings as Knex.RawBinding[]);
    }
    return (await q) as Row[];
  } catch (err) {
    throw translateDbError(err, db.endpoint, `read ${table} from`);
  }
}

export async function* scanTable(
  db: Db,
  table: string,
  pk: KeySpec,
  columns: string[],
  batchSize: number,
  from: RowKey | null = null,
  shard?: Shard,
  scope?: RowScope,
): AsyncGenerator<Row[]> {
  let cursor = from;
  for (;;) {
    const rows = await readBatch(db, table, pk, columns, cursor, batchSize, shard, scope);
    if (rows.length === 0) return;
    yield rows;
    cursor = keyOf(rows[rows.length - 1]!, pk);
    if (rows.length < batchSize) return;
  }
}

/** A random sample of rows (ORDER BY random(): a full sort, acceptable for verify --sample). */
export async function sampleRows(db: Db, table: string, pk: KeySpec, columns: string[], n: number, scope?: RowScope): Promise<Row[]> {
  try {
    const keys = keyColumns(pk);
    return (await scopeFilter(db.knex(table), scope)
      .select([...keys, ...columns])
      .orderByRaw(db.adapter.randomOrder)
      .limit(n)) as Row[];
  } catch (err) {
    throw translateDbError(err, db.endpoint, `sample ${table} from`);
  }
}
