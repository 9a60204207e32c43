/** Reading an audit row from the database into the fields its hash covers. */
import { fromDbTime } from './adapter.js';
import type { HashedAuditFields } from './audit-hash.js';

const nullableString = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const nullableNumber = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export function auditFieldsOf(r: Record<string, unknown>): HashedAuditFields {
  return {
    seq: Number(r.seq),
    rotationId: nullableNumber(r.rotation_id),
    keyring: String(r.keyring),
    action: String(r.action),
    fromPhase: nullableString(r.from_phase),
    toPhase: nullableString(r.to_phase),
    actor: String(r.actor),
    oldVersion: nullableString(r.old_version),
    newVersion: nullableString(r.new_version),
    rowsAffected: nullableNumber(r.rows_affected),
    outcome: String(r.outcome),
    detailsText: nullableString(r.details),
    createdAt: (fromDbTime(r.created_at) ?? new Date(0)).toISOString(),
  };
}
