/**
 * The rotation store: every read and write of keyctl's rotation state — rotations, the key-version
 * registry, the audit chain and re-encryption checkpoints — goes through this module. Nothing else
 * queries those tables. Values read back are validated (phases against the machine, states and
 * outcomes against their unions), never cast.
 */
import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import { fromDbTime } from '../db/adapter.js';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import { withRetry } from '../base/retry.js';
import { TABLES } from '../db/migrations.js';
import { versionNumber } from '../crypto/keys.js';
import { auditFieldsOf } from '../db/audit-fields.js';
import { auditRowHash, GENESIS_HASH, type HashedAuditFields } from '../db/audit-hash.js';
import { DatabaseError } from '../base/errors.js';
import type { Checkpoint, CheckpointStore } from '../reencrypt/checkpoint.js';
import type { PkValue, RowKey } from '../reencrypt/scan.js';
import { CLOSED_PHASES, isPhase, rule, type MachineAction, type Phase, type VerifyOutcome, type VerifyScope } from './machine.js';

type Executor = Knex | Knex.Transaction;
const knexOf = (db: Db | Knex.Transaction): Executor => ('knex' in db ? db.knex : db);

// ── rotations ──────────────────────────────────────────────────────────────────────────────────

export interface Rotation {
  id: number;
  keyring: string;
  phase: Phase;
  oldVersion: string;
  newVersion: string;
  emergency: boolean;
  reason: string | null;
  compromisedVersion: string | null;
  openedBy: string;
  openedAt: Date;
  phaseChangedAt: Date;
  rollbackDeadline: Date | null;
  closedAt: Date | null;
  /** The latest verify since the last write pass (null: none). */
  verifyScope: VerifyScope | null;
  verifyOutcome: VerifyOutcome | null;
  verifiedAt: Date | null;
}

function parsePhase(v: unknown, id: unknown): Phase {
  if (isPhase(v)) return v;
  throw new DatabaseError(
    `rotation #${String(id)} is in phase "${String(v)}", which keyctl does not know`,
    'the rotation row was edited outside keyctl, or a newer keyctl wrote it; check `keyctl audit --verify` and restore keyctl_rotations from the audit',
  );
}

function toRotation(r: Record<string, unknown>): Rotation {
  const scope = r.verify_scope === 'full' || r.verify_scope === 'sample' ? r.verify_scope : null;
  const outcome = r.verify_outcome === 'passed' || r.verify_outcome === 'failed' ? r.verify_outcome : null;
  return {
    id: Number(r.id),
    keyring: String(r.keyring),
    phase: parsePhase(r.phase, r.id),
    oldVersion: String(r.old_version),
    newVersion: String(r.new_version),
    emergency: Boolean(Number(r.emergency)),
    reason: r.reason === null || r.reason === undefined ? null : String(r.reason),
    compromisedVersion: r.compromised_version === null || r.compromised_version === undefined ? null : String(r.compromised_version),
    openedBy: String(r.opened_by),
    openedAt: fromDbTime(r.opened_at) ?? new Date(0),
    phaseChangedAt: fromDbTime(r.phase_changed_at) ?? new Date(0),
    rollbackDeadline: fromDbTime(r.rollback_deadline),
    closedAt: fromDbTime(r.closed_at),
    verifyScope: scope,
    verifyOutcome: outcome,
    verifiedAt: fromDbTime(r.verified_at),
  };
}

export async function openRotation(db: Db | Knex.Transaction, keyring: string): Promise<Rotation | null> {
  const row = await knexOf(db)(TABLES.rotations).where({ open_keyring: keyring }).first();
  return row ? toRotation(row as Record<string, unknown>) : null;
}

/** The id and phase of every open rotation, by keyring: the light check a pass over many tenants makes between batches. */
export async function openPhases(db: Db): Promise<Map<string, { id: number; phase: string }>> {
  const rows: Record<string, unknown>[] = await db.knex(TABLES.rotations).whereNotNull('open_keyring').select('keyring', 'id', 'phase');
  return new Map(rows.map((r) => [String(r.keyring), { id: Number(r.id), phase: String(r.phase) }]));
}

/** Every open rotation, by keyring (one query, for summaries over many tenants). */
export async function openRotations(db: Db): Promise<Map<string, Rotation>> {
  const rows: Record<string, unknown>[] = await db.knex(TABLES.rotations).whereNotNull('open_keyring');
  return new Map(rows.map((r) => [String(r.keyring), toRotation(r)]));
}

export async function getRotation(db: Db, id: number): Promise<Rotation | null> {
  const row = await db.knex(TABLES.rotations).where({ id }).first();
  return row ? toRotation(row as Record<string, unknown>) : null;
}

export async function latestRotation(db: Db, keyring: string): Promise<Rotation | null> {
  const row = await db.knex(TABLES.rotations).where({ keyring }).orderBy('id', 'desc').first();
  return row ? toRotation(row as Record<string, unknown>) : null;
}

/** When the newest closed rotation before `beforeId` (or any) closed. */
export async function lastClosedAt(db: Db, keyring: string, beforeId?: number): Promise<Date | null> {
  const row = (await db
    .knex(TABLES.rotations)
    .where({ keyring })
    .whereNotNull('closed_at')
    .modify((q) => {
      if (beforeId !== undefined) q.andWhere('id', '<', beforeId);
    })
    .orderBy('id', 'desc')
    .first()) as Record<string, unknown> | undefined;
  return row ? fromDbTime(row.closed_at) : null;
}

export type NewRotation = Pick<Rotation, 'keyring' | 'oldVersion' | 'newVersion' | 'emergency' | 'reason' | 'compromisedVersion' | 'openedBy'> & { at: Date };

export class RotationAlreadyOpen extends Error {}

/** Claim the keyring for a new rotation in phase `generating`; the unique open_keyring lets one win. */
export async function insertRotation(db: Db, r: NewRotation): Promise<Rotation> {
  try {
    await db.knex(TABLES.rotations).insert({
      keyring: r.keyring,
      phase: rule('open').to,
      old_version: r.oldVersion,
      new_version: r.newVersion,
      emergency: r.emergency,
      reason: r.reason,
      compromised_version: r.compromisedVersion,
      open_keyring: r.keyring,
      opened_by: r.openedBy,
      opened_at: db.adapter.toDbTime(r.at),
      phase_changed_at: db.adapter.toDbTime(r.at),
    });
  } catch (err) {
    if (db.adapter.isUniqueViolation(err)) throw new RotationAlreadyOpen(r.keyring);
    throw translateDbError(err, db.endpoint, 'open a rotation in');
  }
  return (await openRotation(db, r.keyring))!;
}

/** Extra columns a phase move may set on the rotation row. */
export interface RotationChanges {
  emergency?: boolean;
  reason?: string | null;
  compromisedVersion?: string | null;
  rollbackDeadline?: Date | null;
  verify?: { scope: VerifyScope; outcome: VerifyOutcome; at: Date } | null;
}

/**
 * `UPDATE keyctl_rotations SET phase = :to … WHERE id = :id AND phase = :from`: true when this
 * caller made the move, false when the rotation had left `from`.
 */
export async function casPhase(
  db: Db,
  trx: Knex.Transaction,
  id: number,
  from: Phase,
  to: Phase,
  at: Date,
  changes: RotationChanges = {},
  sincePhaseChangedAt?: Date,
): Promise<boolean> {
  const closing = CLOSED_PHASES.includes(to);
  const cols: Record<string, unknown> = { phase: to, phase_changed_at: db.adapter.toDbTime(at) };
  if (to === from) delete cols.phase_changed_at;
  if (closing) Object.assign(cols, { open_keyring: null, closed_at: db.adapter.toDbTime(at) });
  if (changes.emergency !== undefined) cols.emergency = changes.emergency;
  if (changes.reason !== undefined) cols.reason = changes.reason;
  if (changes.compromisedVersion !== undefined) cols.compromised_version = changes.compromisedVersion;
  if (changes.rollbackDeadline !== undefined) cols.rollback_deadline = changes.rollbackDeadline ? db.adapter.toDbTime(changes.rollbackDeadline) : null;
  if (changes.verify !== undefined) {
    cols.verify_scope = changes.verify?.scope ?? null;
    cols.verify_outcome = changes.verify?.outcome ?? null;
    cols.verified_at = changes.verify ? db.adapter.toDbTime(changes.verify.at) : null;
  }
  // With `sincePhaseChangedAt`: also no phase change since then (a move away and back counts).
  const changed = await trx(TABLES.rotations)
    .where({ id, phase: from })
    .modify((q) => {
      if (sincePhaseChangedAt) q.andWhere('phase_changed_at', db.adapter.toDbTime(sincePhaseChangedAt));
    })
    .update(cols);
  return changed === 1;
}

/** The phase a rotation is in now, as stored (validated). */
export async function currentPhase(db: Db, id: number): Promise<Phase | null> {
  const r = (await db.knex(TABLES.rotations).where({ id }).first()) as Record<string, unknown> | undefined;
  return r ? parsePhase(r.phase, id) : null;
}

// ── key-version registry ───────────────────────────────────────────────────────────────────────

export const VERSION_STATES = ['primary', 'decrypt-only', 'archived', 'retired'] as const;
export type VersionState = (typeof VERSION_STATES)[number];

function parseVersionState(v: unknown): VersionState {
  const s = VERSION_STATES.find((x) => x === v);
  if (!s)
    throw new DatabaseError(
      `keyctl_key_versions holds an unknown state "${String(v)}"`,
      'the registry was edited outside keyctl; restore it from a database backup',
    );
  return s;
}

export interface RegisteredVersion {
  keyring: string;
  version: string;
  state: VersionState;
  fingerprint: string;
  compromised: boolean;
  createdAt: Date;
  stateChangedAt: Date;
  /** When readers could first see the key (null: not yet published). */
  publishedAt: Date | null;
  /** Whether the key's material still exists in the keystore. */
  material: 'present' | 'destroyed';
}

export async function listVersions(db: Db | Knex.Transaction, keyring: string): Promise<RegisteredVersion[]> {
  const knex = 'knex' in db ? db.knex : db;
  const rows: Record<string, unknown>[] = await knex(TABLES.keyVersions).where({ keyring }).orderBy('version_number');
  return rows.map(toVersion);
}

/** The registry of every keyring, by keyring (one query, for summaries over many tenants). */
export async function versionsByKeyring(db: Db): Promise<Map<string, RegisteredVersion[]>> {
  const rows: Record<string, unknown>[] = await db.knex(TABLES.keyVersions).orderBy(['keyring', 'version_number']);
  const out = new Map<string, RegisteredVersion[]>();
  for (const r of rows) {
    const v = toVersion(r);
    const list = out.get(v.keyring);
    if (list) list.push(v);
    else out.set(v.keyring, [v]);
  }
  return out;
}

function toVersion(r: Record<string, unknown>): RegisteredVersion {
  return {
    keyring: String(r.keyring),
    version: String(r.version),
    state: parseVersionState(r.state),
    fingerprint: String(r.fingerprint),
    compromised: Boolean(Number(r.compromised)),
    createdAt: fromDbTime(r.created_at) ?? new Date(0),
    stateChangedAt: fromDbTime(r.state_changed_at) ?? new Date(0),
    publishedAt: fromDbTime(r.published_at),
    material: r.material === 'destroyed' ? 'destroyed' : 'present',
  };
}

export async function setVersionState(t: Executor, db: Db, keyring: string, version: string, state: VersionState, at: Date): Promise<void> {
  await t(TABLES.keyVersions)
    .where({ keyring, version })
    .update({ state, state_changed_at: db.adapter.toDbTime(at) });
}

export async function markCompromised(t: Executor, keyring: string, version: string): Promise<void> {
  await t(TABLES.keyVersions).where({ keyring, version }).update({ compromised: true });
}

export async function markMaterialDestroyed(t: Executor, keyring: string, version: string): Promise<void> {
  await t(TABLES.keyVersions).where({ keyring, version }).update({ material: 'destroyed' });
}

export async function markPublished(t: Executor, db: Db, keyring: string, version: string, at: Date): Promise<void> {
  await t(TABLES.keyVersions)
    .where({ keyring, version })
    .whereNull('published_at')
    .update({ published_at: db.adapter.toDbTime(at) });
}

export async function insertVersion(
  db: Db,
  v: Omit<RegisteredVersion, 'stateChangedAt' | 'publishedAt' | 'material'> & { published?: boolean },
  trx?: Knex.Transaction,
): Promise<void> {
  const at = db.adapter.toDbTime(v.createdAt);
  await (trx ?? db.knex)(TABLES.keyVersions).insert({
    published_at: v.published === false ? null : at,
    keyring: v.keyring,
    version: v.version,
    version_number: versionNumber(v.version),
    state: v.state,
    fingerprint: v.fingerprint,
    compromised: v.compromised,
    created_at: at,
    state_changed_at: at,
  });
}

/**
 * SHA-256 over what the registry says of each version that matters for key material: version,
 * state, fingerprint, compromised, material and when the state last changed (the retention of a
 * retired key counts from it) — not the publication time, which sync sets.
 */
export async function registryDigest(t: Executor, keyring: string): Promise<string> {
  const rows: Array<Record<string, unknown>> = await t(TABLES.keyVersions).where({ keyring }).orderBy('version_number');
  const canonical = rows.map((r) => [
    String(r.version),
    String(r.state),
    String(r.fingerprint),
    Boolean(Number(r.compromised)),
    r.material === 'destroyed' ? 'destroyed' : 'present',
    fromDbTime(r.state_changed_at)?.toISOString() ?? null,
  ]);
  return createHash('sha256')
    .update(JSON.stringify(['keyctl-registry-v1', keyring, canonical]))
    .digest('hex');
}

export interface RegistryCheck {
  ok: boolean;
  /** The digest the newest registry-changing audit row recorded (null: none recorded yet). */
  recorded: { seq: number; digest: string; action: string } | null;
  current: string;
}

/** Whether the registry is what keyctl's audited history last recorded (a direct UPDATE is not). */
export async function checkRegistry(db: Db, keyring: string): Promise<RegistryCheck> {
  for (let attempt = 0; ; attempt++) {
    const current = await registryDigest(db.knex, keyring);
    // Rows whose details mention "registry" anywhere; only a top-level digest counts (a runbook input
    // of that name, say, must not hide the newest real one).
    const rows: Array<Record<string, unknown>> = await db
      .knex(TABLES.audit)
      .where({ keyring })
      .andWhere('details', 'like', '%"registry":"%')
      .orderBy('id', 'desc')
      .limit(200);
    let recorded: RegistryCheck['recorded'] = null;
    for (const row of rows) {
      const digest = (JSON.parse(String(row.details)) as { registry?: unknown }).registry;
      if (typeof digest === 'string' && /^[0-9a-f]{64}$/.test(digest)) {
        recorded = { seq: Number(row.seq), digest, action: String(row.action) };
        break;
      }
    }
    const ok = !recorded || recorded.digest === current;
    // A change committing between the two reads looks like a mismatch for a moment.
    if (ok || attempt >= 3) return { ok, recorded, current };
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** An audited move that destroyed `version`'s material (retire, the new key of a closed rollback, or purge). */
export async function destructionRecorded(db: Db, keyring: string, version: string): Promise<boolean> {
  const rows: Array<Record<string, unknown>> = await db
    .knex(TABLES.audit)
    .where({ keyring, outcome: 'ok' })
    .andWhere('details', 'like', '%"material":"destroyed"%')
    .andWhere((q) => {
      q.where((w) => w.whereIn('action', ['retire', 'rollback', 'verify']).whereIn('to_phase', CLOSED_PHASES)).orWhere('action', 'purge');
    });
  return rows.some((r) => {
    if (String(r.action) === 'purge') return ((JSON.parse(String(r.details)) as { versions?: unknown[] }).versions ?? []).includes(version);
    return String(r.action) === 'retire' ? r.old_version === version : r.new_version === version;
  });
}

// ── audit chain ────────────────────────────────────────────────────────────────────────────────

/** What a row records. Phase moves use the machine's actions; the rest are operations around them. */
export type AuditAction =
  | MachineAction
  | 'register'
  | 'runbook-step'
  | 'backup'
  | 'recover-test'
  | 'restore'
  | 'init'
  | 'integrity'
  | 'purge'
  | 'approval-request'
  | 'approval-sign'
  | 'approval-consume'
  | 'tenant-add'
  | 'shred'
  | 'rewrap';
export type AuditOutcome = 'ok' | 'refused' | 'failed' | 'interrupted' | 'skipped';
export const AUDIT_OUTCOMES: readonly AuditOutcome[] = ['ok', 'refused', 'failed', 'interrupted', 'skipped'];

const AUDIT_ACTIONS: readonly AuditAction[] = [
  'generate',
  'escalate',
  'dual-key',
  'reencrypt-start',
  'reencrypt',
  'verify',
  'promote',
  'retire',
  'rollback',
  'register',
  'runbook-step',
  'backup',
  'recover-test',
  'restore',
  'init',
  'integrity',
  'purge',
  'approval-request',
  'approval-sign',
  'approval-consume',
  'tenant-add',
  'shred',
  'rewrap',
];

function parseAction(v: string): AuditAction {
  const a = AUDIT_ACTIONS.find((x) => x === v);
  if (!a) throw new DatabaseError(`rotation_audit holds an unknown action "${v}"`, 'run `keyctl audit --verify`: the row was written outside keyctl');
  return a;
}

function parseOutcome(v: string): AuditOutcome {
  const o = AUDIT_OUTCOMES.find((x) => x === v);
  if (!o) throw new DatabaseError(`rotation_audit holds an unknown outcome "${v}"`, 'run `keyctl audit --verify`: the row was written outside keyctl');
  return o;
}

export interface AuditEntry {
  /**
   * The row records a change of the key-version registry (made in the same transaction): it then
   * carries the registry's digest after the change, so a registry edited outside keyctl no longer
   * matches the newest digest in the hash-chained history.
   */
  registryChanged?: boolean;
  rotationId?: number | null;
  keyring: string;
  action: AuditAction;
  fromPhase?: string | null;
  toPhase?: string | null;
  actor: string;
  oldVersion?: string | null;
  newVersion?: string | null;
  rowsAffected?: number | null;
  outcome: AuditOutcome;
  details?: Record<string, unknown> | null;
}

export interface AuditRow extends Omit<HashedAuditFields, 'detailsText' | 'createdAt' | 'outcome' | 'action'> {
  id: number;
  action: AuditAction;
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
    const locked = await t(TABLES.auditHead)
      .where({ keyring: entry.keyring })
      .update({ seq: t.raw('seq') });
    if (locked === 0) {
      await t(TABLES.auditHead).insert({ keyring: entry.keyring, seq: 0, last_hash: GENESIS_HASH }).onConflict('keyring').ignore();
      await t(TABLES.auditHead)
        .where({ keyring: entry.keyring })
        .update({ seq: t.raw('seq') });
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
      details: entry.registryChanged
        ? JSON.stringify({ ...entry.details, registry: await registryDigest(t, entry.keyring) })
        : entry.details
          ? JSON.stringify(entry.details)
          : null,
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
    else
      await withRetry('appending to rotation_audit', () => db.knex.transaction(write), {
        tries: 5,
        baseDelayMs: 100,
        retryable: (e) => db.adapter.isRetryable(e),
        onRetry: () => undefined,
      });
    // (Inside a caller's transaction it may still roll back: anchoring reads the committed head, so that is harmless.)
    noteAppended(db, entry.keyring);
  } catch (err) {
    throw translateDbError(err, db.endpoint, 'append to rotation_audit in');
  }
}

function toAuditRow(r: Record<string, unknown>): AuditRow {
  const { detailsText, createdAt: _iso, ...f } = auditFieldsOf(r);
  return {
    ...f,
    id: Number(r.id),
    action: parseAction(f.action),
    outcome: parseOutcome(f.outcome),
    details: detailsText ? (JSON.parse(detailsText) as Record<string, unknown>) : null,
    createdAt: fromDbTime(r.created_at) ?? new Date(0),
    rowHash: (r.row_hash as string | null) ?? null,
  };
}

/** The newest `limit` ok rows of one action (newest first): cheap however long the history. */
export async function latestAuditOf(db: Db, keyring: string, action: AuditAction, limit = 1000): Promise<AuditRow[]> {
  const rows: Record<string, unknown>[] = await db.knex(TABLES.audit).where({ keyring, action, outcome: 'ok' }).orderBy('id', 'desc').limit(limit);
  return rows.map(toAuditRow);
}

/** The newest row of one action in one rotation, whatever its outcome, or null. */
export async function lastAuditOfRotation(db: Db, keyring: string, action: AuditAction, rotationId: number): Promise<AuditRow | null> {
  const row: Record<string, unknown> | undefined = await db
    .knex(TABLES.audit)
    .where({ keyring, action, rotation_id: rotationId })
    .orderBy('id', 'desc')
    .first();
  return row ? toAuditRow(row) : null;
}

/** Rows of a keyring in order (oldest first), optionally of one rotation. */
export async function listAudit(db: Db, keyring: string, opts: { rotationId?: number; limit?: number } = {}): Promise<AuditRow[]> {
  let q = db.knex(TABLES.audit).where({ keyring });
  if (opts.rotationId !== undefined) q = q.andWhere({ rotation_id: opts.rotationId });
  const rows: Record<string, unknown>[] = await q.orderBy('id', 'asc').limit(opts.limit ?? 100_000);
  return rows.map(toAuditRow);
}

/**
 * The rows a runbook run stands on (oldest first): those of rotation `rotationId` (the open one),
 * and the rows without a rotation written since the rotation before it closed — the checks a
 * runbook makes before `generate`. With no rotation open (null), only the latter. A run reads
 * these on every step, so this stays as short as the run, however long the keyring's history.
 */
export async function runbookRunAudit(db: Db, keyring: string, rotationId: number | null): Promise<AuditRow[]> {
  const since = await lastClosedAt(db, keyring, rotationId ?? undefined);
  const rows: Record<string, unknown>[] = await db
    .knex(TABLES.audit)
    .where({ keyring })
    .andWhere((q) => {
      if (rotationId !== null) q.orWhere({ rotation_id: rotationId });
      q.orWhere((pre) => {
        pre.whereNull('rotation_id');
        if (since) pre.andWhere('created_at', '>=', db.adapter.toDbTime(since));
      });
    })
    .orderBy('id', 'asc');
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
  const rowKeyrings: Array<{ keyring: string }> = await db
    .knex(TABLES.audit)
    .distinct('keyring')
    .modify((q) => {
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
    const registry = await checkRegistry(db, k);
    if (!registry.ok && registry.recorded) {
      problems.push(
        `keyctl_key_versions does not match the registry recorded by audit row seq ${registry.recorded.seq} (${registry.recorded.action}): the registry was changed outside keyctl`,
      );
    }
    reports.push({ keyring: k, rows: rows.length, headSeq, lastHash: head?.last_hash ?? GENESIS_HASH, problems });
  }
  return reports;
}

// ── what the audit anchor needs (src/core/audit-anchor.ts) ───────────────────────────────────

const appended = new WeakMap<Db, Set<string>>();

function noteAppended(db: Db, keyring: string): void {
  const set = appended.get(db) ?? new Set<string>();
  appended.set(db, set.add(keyring));
}

/** Keyrings this database handle appended (or tried to append) audit rows to: their anchors are brought up to date. */
export function keyringsAppended(db: Db): string[] {
  return [...(appended.get(db) ?? [])];
}

export interface AuditHead {
  seq: number;
  hash: string;
}

/** keyctl_audit_head of `keyring` as committed (null: no row). */
export async function readAuditHead(db: Db, keyring: string): Promise<AuditHead | null> {
  const h = (await db.knex(TABLES.auditHead).where({ keyring }).first()) as { seq: unknown; last_hash: string } | undefined;
  return h ? { seq: Number(h.seq), hash: h.last_hash } : null;
}

/** The stored hash of row `seq` of `keyring`, and the highest seq stored (0: no rows). */
export async function auditRowAt(db: Db, keyring: string, seq: number): Promise<{ rowHash: string | null; maxSeq: number }> {
  const r = (await db.knex(TABLES.audit).where({ keyring, seq }).first('row_hash')) as { row_hash: string | null } | undefined;
  const m = (await db.knex(TABLES.audit).where({ keyring }).max({ m: 'seq' }).first()) as { m: unknown } | undefined;
  return { rowHash: r ? (r.row_hash ?? null) : null, maxSeq: m?.m === null || m?.m === undefined ? 0 : Number(m.m) };
}

/**
 * Whether the rows from `from.seq` on link, hash for hash, from `from` up to `to`: the chain grew
 * by appending only. A row at `from.seq` with another hash, a gap, or an edited row says no.
 */
export async function chainExtends(db: Db, keyring: string, from: AuditHead, to: AuditHead): Promise<{ ok: true } | { ok: false; reason: string }> {
  const rows: Record<string, unknown>[] = await db.knex(TABLES.audit).where({ keyring }).andWhere('seq', '>=', from.seq).orderBy('seq', 'asc');
  let prev: string | null = null;
  let expected = from.seq;
  for (const r of rows) {
    const f = auditFieldsOf(r);
    if (f.seq !== expected) return { ok: false, reason: `seq ${expected} is missing` };
    if (prev === null) {
      if (r.row_hash !== from.hash) return { ok: false, reason: `row seq ${from.seq} no longer has the anchored hash` };
    } else if (r.prev_hash !== prev || auditRowHash(prev, f) !== r.row_hash) {
      return { ok: false, reason: `row seq ${f.seq} does not link to the row before it` };
    }
    prev = String(r.row_hash);
    expected += 1;
  }
  if (prev === null) return { ok: false, reason: `row seq ${from.seq} is missing` };
  if (expected - 1 !== to.seq || prev !== to.hash) return { ok: false, reason: `the head (seq ${to.seq}) is not the last row (seq ${expected - 1})` };
  return { ok: true };
}

/** Every row of `keyring` as stored (oldest first), for export: the hashed fields and both hashes. */
export async function exportAuditRows(
  db: Db,
  keyring: string,
): Promise<Array<HashedAuditFields & { id: number; prevHash: string | null; rowHash: string | null }>> {
  const rows: Record<string, unknown>[] = await db.knex(TABLES.audit).where({ keyring }).orderBy('id', 'asc');
  return rows.map((r) => ({
    id: Number(r.id),
    ...auditFieldsOf(r),
    prevHash: (r.prev_hash as string | null) ?? null,
    rowHash: (r.row_hash as string | null) ?? null,
  }));
}

/** keyctl's audit tables that do not exist (dropped by hand), so a check can say so instead of failing on the query. */
export async function missingAuditTables(db: Db): Promise<string[]> {
  const missing: string[] = [];
  for (const t of [TABLES.audit, TABLES.auditHead]) if (!(await db.knex.schema.hasTable(t))) missing.push(t);
  return missing;
}

// ── re-encryption checkpoints ──────────────────────────────────────────────────────────────────

/**
 * Cursors are JSON: a one-column key's value (`1042`, `"a-17"`; as every existing checkpoint
 * holds), a composite key's tuple as an array (`[7,1042]`). A bigint is written as its decimal
 * string, so no driver's number type loses digits.
 */
function cursorText(cursor: RowKey): string {
  const plain = (v: PkValue) => (typeof v === 'bigint' ? v.toString() : v);
  return JSON.stringify(Array.isArray(cursor) ? cursor.map(plain) : plain(cursor));
}

function parseCursor(text: unknown): RowKey {
  return JSON.parse(String(text)) as RowKey;
}

export async function loadCheckpoint(db: Db, rotationId: number, table: string, shard: string): Promise<Checkpoint | null> {
  const r = (await db.knex(TABLES.checkpoints).where({ rotation_id: rotationId, table_name: table, shard }).first()) as Record<string, unknown> | undefined;
  if (!r) return null;
  return {
    cursor: r.cursor === null || r.cursor === undefined ? null : parseCursor(r.cursor),
    rowsScanned: Number(r.rows_scanned),
    rowsRewritten: Number(r.rows_rewritten),
    rowsFailed: Number(r.rows_failed),
    completed: Boolean(Number(r.completed)),
  };
}

export async function saveCheckpoint(
  db: Db,
  t: Knex | Knex.Transaction,
  rotationId: number,
  table: string,
  shard: string,
  cp: Checkpoint,
  at: Date,
): Promise<void> {
  const values = {
    cursor: cp.cursor === null ? null : cursorText(cp.cursor),
    rows_scanned: cp.rowsScanned,
    rows_rewritten: cp.rowsRewritten,
    rows_failed: cp.rowsFailed,
    completed: cp.completed,
    updated_at: db.adapter.toDbTime(at),
  };
  const updated = await t(TABLES.checkpoints).where({ rotation_id: rotationId, table_name: table, shard }).update(values);
  if (updated === 0) await t(TABLES.checkpoints).insert({ rotation_id: rotationId, table_name: table, shard, ...values });
}

export const checkpointStore: CheckpointStore = { load: loadCheckpoint, save: saveCheckpoint };

/** A rotation's saved cursors (for status): one per table and shard key (`0/1>v2`). */
export interface CheckpointRow extends Checkpoint {
  table: string;
  shard: string;
  updatedAt: Date | null;
}

export async function listCheckpoints(db: Db, rotationId: number): Promise<CheckpointRow[]> {
  const rows = (await db.knex(TABLES.checkpoints).where({ rotation_id: rotationId }).orderBy(['table_name', 'shard'])) as Array<Record<string, unknown>>;
  return rows.map((r) => ({
    table: String(r.table_name),
    shard: String(r.shard),
    cursor: r.cursor === null || r.cursor === undefined ? null : parseCursor(r.cursor),
    rowsScanned: Number(r.rows_scanned),
    rowsRewritten: Number(r.rows_rewritten),
    rowsFailed: Number(r.rows_failed),
    completed: Boolean(Number(r.completed)),
    updatedAt: fromDbTime(r.updated_at),
  }));
}

// ── tenants ───────────────────────────────────────────────────────────────────────────────────

export interface TenantRow {
  tenant: string;
  keyring: string;
  createdBy: string;
  createdAt: Date;
  shreddedAt: Date | null;
  shredReason: string | null;
}

function toTenant(r: Record<string, unknown>): TenantRow {
  return {
    tenant: String(r.tenant),
    keyring: String(r.keyring),
    createdBy: String(r.created_by),
    createdAt: fromDbTime(r.created_at) ?? new Date(0),
    shreddedAt: fromDbTime(r.shredded_at),
    shredReason: r.shred_reason === null || r.shred_reason === undefined ? null : String(r.shred_reason),
  };
}

export async function listTenantRows(db: Db): Promise<TenantRow[]> {
  const rows: Record<string, unknown>[] = await db.knex(TABLES.tenants).orderBy('tenant');
  return rows.map(toTenant);
}

export async function getTenantRow(db: Db, tenant: string): Promise<TenantRow | null> {
  const row = (await db.knex(TABLES.tenants).where({ tenant }).first()) as Record<string, unknown> | undefined;
  return row ? toTenant(row) : null;
}

export async function insertTenantRow(t: Executor, db: Db, row: { tenant: string; keyring: string; createdBy: string; at: Date }): Promise<void> {
  await t(TABLES.tenants).insert({ tenant: row.tenant, keyring: row.keyring, created_by: row.createdBy, created_at: db.adapter.toDbTime(row.at) });
}

/** Marks a tenant shredded; false when it already was (compare-and-set on shredded_at). */
export async function markTenantShredded(t: Executor, db: Db, tenant: string, reason: string, at: Date): Promise<boolean> {
  const n = await t(TABLES.tenants)
    .where({ tenant })
    .whereNull('shredded_at')
    .update({ shredded_at: db.adapter.toDbTime(at), shred_reason: reason });
  return Number(n) === 1;
}
