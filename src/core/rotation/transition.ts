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
  const [moved] = await transitionMany([[ctx, spec]]);
  return moved!;
}

/** The phase a move leads to, or a refusal (recorded) when the machine has no such move. */
async function targetOf(ctx: CoreContext, spec: TransitionSpec): Promise<Phase> {
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
  return to;
}

/**
 * Several rotations' moves (one per rotation; a command over many tenants) in one transaction:
 * each is the same compare-and-set, registry change and audit row as `transition`'s, and one
 * commit instead of one per tenant. A move that loses its compare-and-set is then settled on its
 * own, as `transition` settles it (quietly when `alreadyThereIsFine`, else refused). Each move
 * comes with its keyring's context (a tenant's, for its refusals); all share one database. Results
 * are in the order of `moves`.
 */
export async function transitionMany(moves: ReadonlyArray<readonly [CoreContext, TransitionSpec]>): Promise<Rotation[]> {
  if (moves.length === 0) return [];
  const ctx = moves[0]![0];
  const { db } = ctx;
  const specs = moves.map(([, spec]) => spec);
  const targets: Phase[] = [];
  for (const [c, spec] of moves) targets.push(await targetOf(c, spec));
  const at = ctx.now();
  let won: boolean[] = [];
  const what = specs.length === 1 ? rule(specs[0]!.rule).action : `${specs.length} phase changes`;
  try {
    // A lock conflict (SQLite busy, a deadlock) rolls the whole transaction back: safe to run again.
    await withRetry(
      'recording a phase change',
      () =>
        db.knex.transaction(async (trx) => {
          won = [];
          for (const [i, [c, spec]] of moves.entries()) {
            const r = rule(spec.rule);
            const from = spec.rotation.phase;
            const to = targets[i]!;
            const ok = await casPhase(
              db,
              trx,
              spec.rotation.id,
              from,
              to,
              at,
              spec.changes,
              spec.unchangedSinceRead ? spec.rotation.phaseChangedAt : undefined,
            );
            won.push(ok);
            if (!ok) continue;
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
                actor: c.actor,
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
          }
        }),
      {
        tries: 5,
        baseDelayMs: 200,
        retryable: (e) => db.adapter.isRetryable(e),
        onRetry: (x) => ctx.log.warn(`${what}: ${x.what} hit ${x.code}; retrying in ${x.delayMs} ms`),
      },
    );
  } catch (err) {
    throw translateDbError(err, db.endpoint, `record ${what} in`);
  }
  const out: Rotation[] = [];
  for (const [i, [c, spec]] of moves.entries()) out.push(won[i] ? moved(spec, targets[i]!, at) : await lost(c, spec, targets[i]!));
  return out;
}

/** A move whose compare-and-set matched nothing: made already by another command, or refused. */
async function lost(ctx: CoreContext, spec: TransitionSpec, to: Phase): Promise<Rotation> {
  const r = rule(spec.rule);
  const from = spec.rotation.phase;
  const now = await currentPhase(ctx.db, spec.rotation.id);
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

/** The rotation as a won move left it. */
function moved(spec: TransitionSpec, to: Phase, at: Date): Rotation {
  const from = spec.rotation.phase;
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
