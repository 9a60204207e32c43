/**
 * Phase changes as compare-and-set: `UPDATE keyctl_rotations SET phase = :to WHERE id = :id AND
 * phase = :from`, the registry changes and the audit row, all in one transaction. When two
 * operators race, exactly one UPDATE matches; the other is refused (and that is recorded too).
 */
import type { Knex } from 'knex';
import { TABLES } from '../../db/migrations.js';
import { translateDbError } from '../../db/errors.js';
import { withRetry } from '../../db/retry.js';
import { appendAudit } from '../audit.js';
import type { CoreContext } from '../context.js';
import { CLOSED_PHASES, NEXT_STEP, type Phase, type Rotation } from '../rotations.js';
import { refuse } from './guard.js';

export interface TransitionSpec {
  action: string;
  rotation: Rotation;
  to: Phase;
  /** Registry (and other) changes made in the same transaction. */
  apply?: (trx: Knex.Transaction, at: Date) => Promise<void>;
  rowsAffected?: number | null;
  details?: Record<string, unknown>;
  /** Extra columns of keyctl_rotations to set. */
  rotationColumns?: Record<string, unknown>;
  /** If someone else already made this very change, succeed quietly instead of refusing. */
  alreadyThereIsFine?: boolean;
}

export async function transition(ctx: CoreContext, spec: TransitionSpec): Promise<Rotation> {
  const { db } = ctx;
  const at = ctx.now();
  const from = spec.rotation.phase;
  const closing = CLOSED_PHASES.includes(spec.to);
  let won = false;
  try {
    // A lock conflict (SQLite busy, a deadlock) rolls the whole transaction back: safe to run again.
    await withRetry('recording a phase change', () => db.knex.transaction(async (trx) => {
      won = false;
      const changed = await trx(TABLES.rotations)
        .where({ id: spec.rotation.id, phase: from })
        .update({
          phase: spec.to,
          phase_changed_at: db.adapter.toDbTime(at),
          ...(closing ? { open_keyring: null, closed_at: db.adapter.toDbTime(at) } : {}),
          ...spec.rotationColumns,
        });
      if (changed !== 1) return;
      won = true;
      await spec.apply?.(trx, at);
      await appendAudit(
        db,
        {
          rotationId: spec.rotation.id,
          keyring: spec.rotation.keyring,
          action: spec.action,
          fromPhase: from,
          toPhase: spec.to,
          actor: ctx.actor,
          oldVersion: spec.rotation.oldVersion,
          newVersion: spec.rotation.newVersion,
          rowsAffected: spec.rowsAffected ?? null,
          outcome: 'ok',
          details: spec.details ?? null,
        },
        at,
        trx,
      );
    }), { tries: 5, baseDelayMs: 200, onRetry: (r) => ctx.log.warn(`${spec.action}: ${r.what} hit ${r.code}; retrying in ${r.delayMs} ms`) });
  } catch (err) {
    throw translateDbError(err, db.endpoint, `record ${spec.action} in`);
  }
  if (!won) {
    const current = (await db.knex(TABLES.rotations).where({ id: spec.rotation.id }).first()) as { phase?: string } | undefined;
    const now = (current?.phase ?? 'unknown') as Phase;
    if (spec.alreadyThereIsFine && now === spec.to) return { ...spec.rotation, phase: spec.to };
    return refuse(ctx, {
      action: spec.action,
      rotation: spec.rotation,
      reason: `rotation #${spec.rotation.id} left phase ${from} while ${spec.action} was running (it is now ${now}); another operator got there first`,
      hint: `run \`keyctl status\` to see where it stands; next: ${NEXT_STEP[now] ?? '`keyctl status`'}`,
      details: { expectedPhase: from, actualPhase: now },
    });
  }
  return { ...spec.rotation, phase: spec.to, phaseChangedAt: at, closedAt: closing ? at : spec.rotation.closedAt };
}
