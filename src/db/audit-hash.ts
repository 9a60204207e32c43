/**
 * The tamper-evidence of `rotation_audit`: each row stores `row_hash` =
 * SHA-256 over the previous row's hash and the row's own fields, in a fixed order. Rows form one
 * chain per keyring (`seq` 1, 2, 3, …); `keyctl_audit_head` holds each chain's last seq and hash,
 * so deleting the newest row is detected too. Editing, deleting or reordering any row breaks the
 * chain from that point on.
 */
import { createHash } from 'node:crypto';

export const GENESIS_HASH = '0'.repeat(64);

export interface HashedAuditFields {
  seq: number;
  rotationId: number | null;
  keyring: string;
  action: string;
  fromPhase: string | null;
  toPhase: string | null;
  actor: string;
  oldVersion: string | null;
  newVersion: string | null;
  rowsAffected: number | null;
  outcome: string;
  /** The exact JSON text stored in `details`. */
  detailsText: string | null;
  /** ISO-8601 UTC with milliseconds. */
  createdAt: string;
}

export function auditRowHash(prevHash: string, f: HashedAuditFields): string {
  const canonical = JSON.stringify([
    'keyctl-audit-v1',
    prevHash,
    f.seq,
    f.rotationId,
    f.keyring,
    f.action,
    f.fromPhase,
    f.toPhase,
    f.actor,
    f.oldVersion,
    f.newVersion,
    f.rowsAffected,
    f.outcome,
    f.detailsText,
    f.createdAt,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}
