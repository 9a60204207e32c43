/** Rotations (one run of the procedure per keyring; at most one open at a time) and their phases. */
import type { Knex } from 'knex';
import { fromDbTime } from '../db/adapter.js';
import type { Db } from '../db/connect.js';
import { TABLES } from '../db/migrations.js';

/**
 * generating → generated → dual_key → reencrypting → reencrypted → verified → promoted → retired
 * rollback from generated … promoted → rolling_back → rolled_back (or straight to rolled_back
 * when the new key was never primary). docs/rotation.md has the full table of guards.
 */
export const PHASES = [
  'generating',
  'generated',
  'dual_key',
  'reencrypting',
  'reencrypted',
  'verified',
  'promoted',
  'rolling_back',
  'retired',
  'rolled_back',
] as const;
export type Phase = (typeof PHASES)[number];
export const CLOSED_PHASES: readonly Phase[] = ['retired', 'rolled_back'];

/** What an operator runs next in each phase. */
export const NEXT_STEP: Record<Phase, string> = {
  generating: '`keyctl generate` again, to finish opening the rotation',
  generated: '`keyctl dual-key` once every application has reloaded the keyring',
  dual_key: '`keyctl reencrypt`',
  reencrypting: '`keyctl reencrypt` (it resumes where it stopped)',
  reencrypted: '`keyctl verify`',
  verified: '`keyctl promote`',
  promoted: '`keyctl retire` when the rollback window has passed',
  rolling_back: '`keyctl reencrypt`, then `keyctl verify`',
  retired: '`keyctl generate` to start the next rotation',
  rolled_back: '`keyctl generate` to start a new rotation',
};

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
}

function toRotation(r: Record<string, unknown>): Rotation {
  return {
    id: Number(r.id),
    keyring: String(r.keyring),
    phase: String(r.phase) as Phase,
    oldVersion: String(r.old_version),
    newVersion: String(r.new_version),
    emergency: Boolean(Number(r.emergency)),
    reason: (r.reason as string | null) ?? null,
    compromisedVersion: (r.compromised_version as string | null) ?? null,
    openedBy: String(r.opened_by),
    openedAt: fromDbTime(r.opened_at) ?? new Date(0),
    phaseChangedAt: fromDbTime(r.phase_changed_at) ?? new Date(0),
    rollbackDeadline: fromDbTime(r.rollback_deadline),
    closedAt: fromDbTime(r.closed_at),
  };
}

export async function openRotation(db: Db | Knex.Transaction, keyring: string): Promise<Rotation | null> {
  const knex = 'knex' in db ? db.knex : db;
  const row = await knex(TABLES.rotations).where({ open_keyring: keyring }).first();
  return row ? toRotation(row as Record<string, unknown>) : null;
}

export async function getRotation(db: Db, id: number): Promise<Rotation | null> {
  const row = await db.knex(TABLES.rotations).where({ id }).first();
  return row ? toRotation(row as Record<string, unknown>) : null;
}

export async function latestRotation(db: Db, keyring: string): Promise<Rotation | null> {
  const row = await db.knex(TABLES.rotations).where({ keyring }).orderBy('id', 'desc').first();
  return row ? toRotation(row as Record<string, unknown>) : null;
}
