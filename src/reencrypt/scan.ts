/**
 * Keyset pagination over a target table: `WHERE pk > :last ORDER BY pk LIMIT :n`, never OFFSET,
 * so each batch costs the same however deep into the table it is.
 */
import type { Knex } from 'knex';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';

export type { PkValue } from '../db/adapter.js';
import type { PkValue } from '../db/adapter.js';
export type Row = Record<string, unknown>;

/** Shard `index` of `count`: the rows whose integer primary key ≡ index (mod count). */
export interface Shard {
  index: number;
  count: number;
}

export function shardFilter(q: Knex.QueryBuilder, pk: string, shard: Shard | undefined): Knex.QueryBuilder {
  if (!shard || shard.count === 1) return q;
  // ((pk % n) + n) % n: the same residue for negative keys on every dialect.
  return q.whereRaw('((?? % ?) + ?) % ? = ?', [pk, shard.count, shard.count, shard.count, shard.index]);
}

export async function readBatch(db: Db, table: string, pk: string, columns: string[], after: PkValue | null, limit: number, shard?: Shard): Promise<Row[]> {
  try {
    const q = shardFilter(
      db
        .knex(table)
        .select([pk, ...columns])
        .orderBy(pk, 'asc')
        .limit(limit),
      pk,
      shard,
    );
    if (after !== null) q.where(pk, '>', after as string | number);
    return (await q) as Row[];
  } catch (err) {
    throw translateDbError(err, db.endpoint, `read ${table} from`);
  }
}

export async function* scanTable(db: Db, table: string, pk: string, columns: string[], batchSize: number, from: PkValue | null = null): AsyncGenerator<Row[]> {
  let cursor = from;
  for (;;) {
    const rows = await readBatch(db, table, pk, columns, cursor, batchSize);
    if (rows.length === 0) return;
    yield rows;
    cursor = rows[rows.length - 1]![pk] as PkValue;
    if (rows.length < batchSize) return;
  }
}

/** A random sample of rows (ORDER BY random(): a full sort, acceptable for verify --sample). */
export async function sampleRows(db: Db, table: string, pk: string, columns: string[], n: number): Promise<Row[]> {
  try {
    return (await db
      .knex(table)
      .select([pk, ...columns])
      .orderByRaw(db.adapter.randomOrder)
      .limit(n)) as Row[];
  } catch (err) {
    throw translateDbError(err, db.endpoint, `sample ${table} from`);
  }
}
