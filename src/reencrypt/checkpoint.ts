/**
 * Re-encryption cursors, one per rotation, table and shard, saved in the same transaction as
 * the batch they follow. The shard key also names the version being written (`0/1>v2`), so a
 * rollback's pass back to the old key starts from the beginning rather than from the forward
 * pass's cursor.
 */
import type { Knex } from 'knex';
import type { Db } from '../db/connect.js';
import { TABLES } from '../db/migrations.js';
import type { PkValue } from './scan.js';

export interface Checkpoint {
  cursor: PkValue | null;
  rowsScanned: number;
  rowsRewritten: number;
  rowsFailed: number;
  completed: boolean;
}

export function shardKey(targetVersion: string, shard = '0/1'): string {
  return `${shard}>${targetVersion}`;
}

export async function loadCheckpoint(db: Db, rotationId: number, table: string, shard: string): Promise<Checkpoint | null> {
  const r = (await db.knex(TABLES.checkpoints).where({ rotation_id: rotationId, table_name: table, shard }).first()) as Record<string, unknown> | undefined;
  if (!r) return null;
  return {
    cursor: r.cursor === null || r.cursor === undefined ? null : (JSON.parse(String(r.cursor)) as PkValue),
    rowsScanned: Number(r.rows_scanned),
    rowsRewritten: Number(r.rows_rewritten),
    rowsFailed: Number(r.rows_failed),
    completed: Boolean(Number(r.completed)),
  };
}

export async function saveCheckpoint(db: Db, t: Knex | Knex.Transaction, rotationId: number, table: string, shard: string, cp: Checkpoint, at: Date): Promise<void> {
  const values = {
    cursor: cp.cursor === null ? null : JSON.stringify(typeof cp.cursor === 'bigint' ? cp.cursor.toString() : cp.cursor),
    rows_scanned: cp.rowsScanned,
    rows_rewritten: cp.rowsRewritten,
    rows_failed: cp.rowsFailed,
    completed: cp.completed,
    updated_at: db.adapter.toDbTime(at),
  };
  const updated = await t(TABLES.checkpoints).where({ rotation_id: rotationId, table_name: table, shard }).update(values);
  if (updated === 0) await t(TABLES.checkpoints).insert({ rotation_id: rotationId, table_name: table, shard, ...values });
}
