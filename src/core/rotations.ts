/** Reading rotations (one run of the procedure per keyring; at most one open at a time). */
import { fromDbTime } from '../db/adapter.js';
import type { Db } from '../db/connect.js';
import { TABLES } from '../db/migrations.js';

export interface Rotation {
  id: number;
  keyring: string;
  phase: string;
  oldVersion: string | null;
  newVersion: string | null;
  emergency: boolean;
  openedBy: string;
  openedAt: Date;
  phaseChangedAt: Date;
  closedAt: Date | null;
}

function toRotation(r: Record<string, unknown>): Rotation {
  return {
    id: Number(r.id),
    keyring: String(r.keyring),
    phase: String(r.phase),
    oldVersion: (r.old_version as string | null) ?? null,
    newVersion: (r.new_version as string | null) ?? null,
    emergency: Boolean(Number(r.emergency)),
    openedBy: String(r.opened_by),
    openedAt: fromDbTime(r.opened_at) ?? new Date(0),
    phaseChangedAt: fromDbTime(r.phase_changed_at) ?? new Date(0),
    closedAt: fromDbTime(r.closed_at),
  };
}

export async function openRotation(db: Db, keyring: string): Promise<Rotation | null> {
  const row = await db.knex(TABLES.rotations).where({ open_keyring: keyring }).first();
  return row ? toRotation(row as Record<string, unknown>) : null;
}
