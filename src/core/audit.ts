/**
 * The append-only `rotation_audit` record: every transition, refusal and notable operation.
 * keyctl only ever inserts rows. Each row is hash-chained to the previous row of its keyring
 * (see audit-hash.ts); `verifyAuditChain` detects edited, deleted or reordered rows.
 * `details` is JSON text; callers must never put key material or plaintext in it.
 */
import type { Knex } from 'knex';
import { fromDbTime } from '../db/adapter.js';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import { withRetry } from '../db/retry.js';
import { TABLES } from '../db/migrations.js';
import { auditFieldsOf } from './audit-fields.js';
import { auditRowHash, GENESIS_HASH, type HashedAuditFields } from './audit-hash.js';

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

export interface AuditRow extends Omit<HashedAuditFields, 'detailsText' | 'createdAt' | 'outcome'> {
  id: number;
  outcome: AuditOutcome;
  details: Record<string, unknown> | null;
  createdAt: Date;
  rowHash: string | null;
}

/**
 * Append one row. Inside `trx` when given (the row then commits or rolls back with the change it
 * records); otherwise in a transaction of its own. The chain head row is locked first, so
 * concurrent writers append one after the other instead of forking the chain.
 */
export async function appendAudit(db: Db, entry: AuditEntry, at: Date, trx?: Knex.Transaction): Promise<void> {
  const write = async (t: Knex.Transaction): Promise<void> => {
    // A write first: takes the head row's exclusive lock (PostgreSQL, MySQL) or the write lock
    // (SQLite) before reading. (An INSERT … IGNORE first would take a shared lock on MySQL, and two
    // writers upgrading shared locks deadlock.)
    const locked = await t(TABLES.auditHead).where({ keyring: entry.keyring }).update({ seq: t.raw('seq') });
    if (locked === 0) {
      await t(TABLES.auditHead).insert({ keyring: entry.keyring, seq: 0, last_hash: GENESIS_HASH }).onConflict('keyring').ignore();
      await t(TABLES.auditHead).where({ keyring: entry.keyring }).update({ seq: t.raw('seq') });
    }
    const head = (await t(TABLES.auditHead).where({ keyring: entry.keyring }).forUpdate().first()) as { seq: unknown; last_hash: string };
    const seq = Number(head.seq) + 1;
    const row = {
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
      created_at: at,
      seq,
    };
    const hash = auditRowHash(head.last_hash, auditFieldsOf(row));
    await t(TABLES.audit).insert({ ...row, created_at: db.adapter.toDbTime(at), prev_hash: head.last_hash, row_hash: hash });
    await t(TABLES.auditHead).where({ keyring: entry.keyring }).update({ seq, last_hash: hash });
  };
  try {
    if (trx) await write(trx);
    // On its own: a lock conflict rolls the whole append back, so it is safe to try again.
    else await withRetry('appending to rotation_audit', () => db.knex.transaction(write), { tries: 5, baseDelayMs: 100, onRetry: () => undefined });
  } catch (err) {
    throw translateDbError(err, db.endpoint, 'append to rotation_audit in');
  }
}

function toAuditRow(r: Record<string, unknown>): AuditRow {
  const { detailsText, createdAt: _iso, ...f } = auditFieldsOf(r);
  return {
    ...f,
    id: Number(r.id),
    outcome: f.outcome as AuditOutcome,
    details: detailsText ? (JSON.parse(detailsText) as Record<string, unknown>) : null,
    createdAt: fromDbTime(r.created_at) ?? new Date(0),
    rowHash: (r.row_hash as string | null) ?? null,
  };
}

/** Rows of a keyring in order (oldest first), optionally of one rotation. */
export async function listAudit(db: Db, keyring: string, opts: { rotationId?: number; limit?: number } = {}): Promise<AuditRow[]> {
  let q = db.knex(TABLES.audit).where({ keyring });
  if (opts.rotationId !== undefined) q = q.andWhere({ rotation_id: opts.rotationId });
  const rows: Record<string, unknown>[] = await q.orderBy('id', 'asc').limit(opts.limit ?? 100_000);
  return rows.map(toAuditRow);
}

export interface ChainReport {
  keyring: string;
  rows: number;
  headSeq: number;
  lastHash: string;
  problems: string[];
}

/** Recompute every keyring's chain; a problem names the row (id and seq) where it breaks. */
export async function verifyAuditChain(db: Db, keyring?: string): Promise<ChainReport[]> {
  const heads: Array<{ keyring: string; seq: unknown; last_hash: string }> = await db.knex(TABLES.auditHead).modify((q) => {
    if (keyring) q.where({ keyring });
  });
  const keyrings = new Set(heads.map((h) => h.keyring));
  const rowKeyrings: Array<{ keyring: string }> = await db.knex(TABLES.audit).distinct('keyring').modify((q) => {
    if (keyring) q.where({ keyring });
  });
  for (const r of rowKeyrings) keyrings.add(r.keyring);
  const reports: ChainReport[] = [];
  for (const k of [...keyrings].sort()) {
    const head = heads.find((h) => h.keyring === k);
    const rows: Record<string, unknown>[] = await db.knex(TABLES.audit).where({ keyring: k }).orderBy('id', 'asc');
    const problems: string[] = [];
    let prev = GENESIS_HASH;
    let expectedSeq = 1;
    for (const r of rows) {
      const f = auditFieldsOf(r);
      const where = `row id ${String(r.id)} (seq ${String(r.seq)})`;
      if (r.row_hash === null || r.row_hash === undefined) {
        problems.push(`${where} has no hash: it was inserted outside keyctl`);
        continue;
      }
      if (f.seq !== expectedSeq) problems.push(`${where}: expected seq ${expectedSeq} — a row before it was deleted or rows were reordered`);
      if (r.prev_hash !== prev) problems.push(`${where}: does not link to the row before it — a row was deleted or edited`);
      if (auditRowHash(String(r.prev_hash), f) !== r.row_hash) problems.push(`${where}: its content does not match its hash — the row was edited`);
      prev = String(r.row_hash);
      expectedSeq = f.seq + 1;
    }
    const headSeq = head ? Number(head.seq) : 0;
    if (!head && rows.length > 0) problems.push('the chain head is missing');
    if (head && (headSeq !== expectedSeq - 1 || head.last_hash !== prev)) {
      problems.push(`the chain head says seq ${headSeq} but the last row is seq ${expectedSeq - 1} — the newest row(s) were deleted or the head was edited`);
    }
    reports.push({ keyring: k, rows: rows.length, headSeq, lastHash: head?.last_hash ?? GENESIS_HASH, problems });
  }
  return reports;
}
