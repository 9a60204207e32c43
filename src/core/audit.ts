/**
 * The append-only `rotation_audit` record: every transition, refusal and notable operation.
 * `details` is JSON text; callers must never put key material or plaintext in it.
 */
import type { Knex } from 'knex';
import { fromDbTime } from '../db/adapter.js';
import type { Db } from '../db/connect.js';
import { TABLES } from '../db/migrations.js';

export type AuditOutcome = 'ok' | 'refused' | 'failed' | 'interrupted';

export interface AuditEntry {
  rotationId?: number | null;
  keyring: string;
  action: string;
  fromPhase?: string | null;
  toPhase?: string | null;
  actor: string;
  oldVersion?: string | null;
  newVersion?: string | null;
  rowsAffected?: number | null;
  outcome: AuditOutcome;
  details?: Record<string, unknown> | null;
}

export interface AuditRow extends Required<Omit<AuditEntry, 'details'>> {
  id: number;
  details: Record<string, unknown> | null;
  createdAt: Date;
}

export async function appendAudit(db: Db, entry: AuditEntry, at: Date, trx?: Knex.Transaction): Promise<void> {
  await (trx ?? db.knex)(TABLES.audit).insert({
    rotation_id: entry.rotationId ?? null,
    keyring: entry.keyring,
    action: entry.action,
    from_phase: entry.fromPhase ?? null,
    to_phase: entry.toPhase ?? null,
    actor: entry.actor,
    old_version: entry.oldVersion ?? null,
    new_version: entry.newVersion ?? null,
    rows_affected: entry.rowsAffected ?? null,
    outcome: entry.outcome,
    details: entry.details ? JSON.stringify(entry.details) : null,
    created_at: db.adapter.toDbTime(at),
  });
}

export async function listAudit(db: Db, keyring: string, limit = 100): Promise<AuditRow[]> {
  const rows = await db.knex(TABLES.audit).where({ keyring }).orderBy('id', 'desc').limit(limit);
  return rows.map((r: Record<string, unknown>) => ({
    id: Number(r.id),
    rotationId: r.rotation_id === null ? null : Number(r.rotation_id),
    keyring: String(r.keyring),
    action: String(r.action),
    fromPhase: (r.from_phase as string | null) ?? null,
    toPhase: (r.to_phase as string | null) ?? null,
    actor: String(r.actor),
    oldVersion: (r.old_version as string | null) ?? null,
    newVersion: (r.new_version as string | null) ?? null,
    rowsAffected: r.rows_affected === null ? null : Number(r.rows_affected),
    outcome: r.outcome as AuditOutcome,
    details: typeof r.details === 'string' ? (JSON.parse(r.details) as Record<string, unknown>) : null,
    createdAt: fromDbTime(r.created_at) ?? new Date(0),
  }));
}
