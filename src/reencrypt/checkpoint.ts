/**
 * Re-encryption cursors, one per rotation, table and shard, saved in the same transaction as
 * the batch they follow. The shard key also names the version being written (`0/1>v2`), so a
 * rollback's pass back to the old key starts from the beginning rather than from the forward
 * pass's cursor.
 */
import type { Knex } from 'knex';
import type { Db } from '../db/connect.js';
import type { RowKey } from './scan.js';

export interface Checkpoint {
  /** The last committed row's key: one value, or a composite key's tuple (stored as a JSON array). */
  cursor: RowKey | null;
  /** Rows the current pass has scanned up to the cursor (0 when a new pass starts). */
  rowsScanned: number;
  rowsRewritten: number;
  rowsFailed: number;
  completed: boolean;
}

export function shardKey(targetVersion: string, shard = '0/1'): string {
  return `${shard}>${targetVersion}`;
}

/** Where checkpoints are kept (the rotation store); passed in so this layer never queries keyctl's tables. */
export interface CheckpointStore {
  load(db: Db, rotationId: number, table: string, shard: string): Promise<Checkpoint | null>;
  /** Inside the batch's transaction, so the cursor commits with the rows it covers. */
  save(db: Db, t: Knex | Knex.Transaction, rotationId: number, table: string, shard: string, cp: Checkpoint, at: Date): Promise<void>;
}
