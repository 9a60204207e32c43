/**
 * The bulk compare-and-set: one UPDATE per batch that writes a column's new ciphertext only
 * where the column still holds the exact old ciphertext read by the batch. A value the
 * application changed in between is left as the application wrote it. Each dialect writes its
 * own statement (src/db/dialects/: `compareAndSetPlan`); this module runs it.
 */
import type { Knex } from 'knex';
import type { CasBatch } from '../db/adapter.js';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';

export type { CasBatch } from '../db/adapter.js';

/** Largest batch whose statement stays under every dialect's bind-parameter limit. */
export function maxCasBatch(columnCount: number, keyColumnCount = 1): number {
  return Math.floor(30_000 / (keyColumnCount + 2 * columnCount));
}

/** Run the batch's compare-and-set (in `trx`); returns the rows the database reports as updated. */
export async function compareAndSetBatch(
  db: Db,
  trx: Knex.Transaction,
  table: string,
  pk: string | readonly string[],
  columns: string[],
  batch: CasBatch,
  pkType?: string | readonly string[],
  guardedBy?: readonly (number | null)[],
): Promise<number> {
  if (batch.pks.length === 0) return 0;
  // Columns holding bytes, for dialects that type the batch's values (PostgreSQL's bytea[]).
  const n = batch.next.length / columns.length;
  const binary = columns.map((_, c) => {
    for (let r = 0; r < n; r++) {
      const v = batch.next[r * columns.length + c];
      if (v !== null && v !== undefined) return Buffer.isBuffer(v);
    }
    return false;
  });
  const plan = db.adapter.compareAndSetPlan({ table, pk, columns, batch, pkType, guardedBy, binary });
  try {
    return await db.adapter.runCompareAndSet(trx, plan);
  } catch (err) {
    throw translateDbError(err, db.endpoint, `rewrite a batch of ${table} in`);
  }
}
