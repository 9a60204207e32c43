/**
 * Phase moves as compare-and-set: `UPDATE keyctl_rotations SET phase = :to WHERE id = :id AND
 * phase = :from`, the registry changes and the audit row, all in one transaction — and only moves
 * the machine's table allows (a move it does not know is refused and recorded, never made).
 * When two operators race, exactly one UPDATE matches; the other is refused (and that is recorded too).
 */
import type { Knex } from 'knex';
import { translateDbError } from '../../db/errors.js';
import { withRetry } from '../../base/retry.js';
import { allows, CLOSED_PHASES, nextStep, rule, targetPhase, type Phase } from '../../rotation/machine.js';
import { appendAudit, casPhase, currentPhase, type AuditOutcome, type Rotation, type RotationChanges } from '../../rotation/store.js';
import type { CoreContext } from '../context.js';
import { refuse } from './guard.js';

export interface TransitionSpec {
  /** The machine rule this move follows (src/rotation/machine.ts). */
  rule: string;
  rotation: Rotation;
  /** Registry (and other) changes made in the same transaction. */
  apply?: (trx: Knex.Transaction, at: Date) => Promise<void>;
  /** Other records made in the same transaction after the move's audit row (an approval's consumption). */
  after?: (trx: Knex.Transaction, at: Date) => Promise<void>;
  rowsAffected?: number | null;
  details?: Record<string, unknown>;
  /** Columns of the rotation row to change with the phase. */
  changes?: RotationChanges;
  outcome?: AuditOutcome;
  /** If someone else already made this very change, succeed quietly instead of refusing. */
  alreadyThereIsFine?: boolean;
  /**
   * The move rests on evidence gathered since the rotation was read (a verify's scan): refuse it if
   * the phase changed meanwhile, even away and back (another operator's write pass).
   */
  unchangedSinceRead?: boolean;
}

/** Rotations `transition` returned because another command had already made the move (`alreadyThereIsFine`). */
const movedByAnother = new WeakSet<Rotation>();

/** Whether `transition` found the move already made by another command (and wrote no audit row). */
export function wasMovedByAnother(rotation: Rotation): boolean {
  return movedByAnother.has(rotation);
}

export async function transition(ctx: CoreContext, spec: TransitionSpec): Promise<Rotation> {
  const { db } = ctx;
  const r = rule(spec.rule);
  const from = spec.rotation.phase;
  const to: Phase = r.from.includes(from) ? targetPhase(r, from) : from;
  if (!allows(r, from, to)) {
    return refuse(ctx, {
      action: r.action,
      rotation: spec.rotation,
      reason: `the rotation machine has no move ${r.id} from phase ${from} (it starts from ${r.from.join(', ')})`,
      hint: `next: ${nextStep(from)}`,
      details: { guard: 'phase', rule: r.id },
    });
  }
  const at = ctx.now();
  let won = false;
  try {
    // A lock conflict (SQLite busy, a deadlock) rolls the whole transaction back: safe to run again.
    await withRetry(
      'recording a phase change',
      () =>
        db.knex.transaction(async (trx) => {
          won = await casPhase(db, trx, spec.rotation.id, from, to, at, spec.changes, spec.unchangedSinceRead ? spec.rotation.phaseChangedAt : undefined);
          if (!won) return;
          await spec.apply?.(trx, at);
          await appendAudit(
            db,
            {
              registryChanged: spec.apply !== undefined,
              rotationId: spec.rotation.id,
              keyring: spec.rotation.keyring,
              action: r.action,
              fromPhase: from,
              toPhase: to,
              actor: ctx.actor,
              oldVersion: spec.rotation.oldVersion,
              newVersion: spec.rotation.newVersion,
              rowsAffected: spec.rowsAffected ?? null,
              outcome: spec.outcome ?? 'ok',
              details: { rule: r.id, ...spec.details },
            },
            at,
            trx,
          );
          await spec.after?.(trx, at);
        }),
      {
        tries: 5,
        baseDelayMs: 200,
        retryable: (e) => db.adapter.isRetryable(e),
        onRetry: (x) => ctx.log.warn(`${r.action}: ${x.what} hit ${x.code}; retrying in ${x.delayMs} ms`),
      },
    );
  } catch (err) {
    throw translateDbError(err, db.endpoint, `record ${r.action} in`);
  }
  if (!won) {
    const now = await currentPhase(db, spec.rotation.id);
    if (spec.alreadyThereIsFine && now === to) {
      const there = { ...spec.rotation, phase: to };
      movedByAnother.add(there);
      return there;
    }
    return refuse(ctx, {
      action: r.action,
      rotation: spec.rotation,
      reason:
        now === from
          ? `rotation #${spec.rotation.id} moved away from phase ${from} and back while ${r.action} was running (another operator's command); what ${r.action} found no longer holds`
          : `rotation #${spec.rotation.id} left phase ${from} while ${r.action} was running (it is now ${now ?? 'gone'}); another operator got there first`,
      hint: `run \`keyctl status\` to see where it stands; next: ${now ? nextStep(now) : '`keyctl status`'}`,
      details: { expectedPhase: from, actualPhase: now },
    });
  }
  const c = spec.changes ?? {};
  return {
    ...spec.rotation,
    phase: to,
    phaseChangedAt: to === from ? spec.rotation.phaseChangedAt : at,
    closedAt: CLOSED_PHASES.includes(to) ? at : spec.rotation.closedAt,
    ...(c.emergency !== undefined ? { emergency: c.emergency } : {}),
    ...(c.reason !== undefined ? { reason: c.reason } : {}),
    ...(c.compromisedVersion !== undefined ? { compromisedVersion: c.compromisedVersion } : {}),
    ...(c.rollbackDeadline !== undefined ? { rollbackDeadline: c.rollbackDeadline } : {}),
    ...(c.verify !== undefined ? { verifyScope: c.verify?.scope ?? null, verifyOutcome: c.verify?.outcome ?? null, verifiedAt: c.verify?.at ?? null } : {}),
  };
}
