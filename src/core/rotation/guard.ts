/**
 * Refusals, and asking the machine before a move. A guard that says no records the refused attempt
 * in rotation_audit (outcome `refused`, the guard's name in details) and throws a RefusedError that
 * says why and what to run next.
 */
import { actionOf, evaluate, nextStep, phasesFor, rule, type GuardInput, type GuardName, type MachineCommand, type Snapshot } from '../../rotation/machine.js';
import { appendAudit, type AuditAction, type Rotation } from '../../rotation/store.js';
import type { CoreContext } from '../context.js';
import { RefusedError } from '../../base/errors.js';

export interface Refusal {
  action: AuditAction;
  rotation: Rotation | null;
  reason: string;
  hint: string;
  details?: Record<string, unknown>;
}

export async function refuse(ctx: CoreContext, r: Refusal): Promise<never> {
  await appendAudit(
    ctx.db,
    {
      rotationId: r.rotation?.id ?? null,
      keyring: ctx.config.keyring,
      action: r.action,
      fromPhase: r.rotation?.phase ?? null,
      toPhase: null,
      actor: ctx.actor,
      oldVersion: r.rotation?.oldVersion ?? null,
      newVersion: r.rotation?.newVersion ?? null,
      outcome: 'refused',
      details: { reason: r.reason, ...r.details },
    },
    ctx.now(),
  );
  throw new RefusedError(r.reason, r.hint);
}

/** The open rotation, in a phase some rule of `command` starts from, or a recorded refusal. */
export async function requireRotation(ctx: CoreContext, command: MachineCommand, s: Snapshot, label: string = command): Promise<Rotation> {
  const action = actionOf(command);
  const r = s.rotation;
  if (!r) {
    return refuse(ctx, {
      action,
      rotation: null,
      reason: `no rotation is open for keyring ${ctx.config.keyring}`,
      hint: 'start one with `keyctl generate`',
      details: { guard: 'phase' },
    });
  }
  const phases = phasesFor(command);
  if (!phases.includes(r.phase)) {
    return refuse(ctx, {
      action,
      rotation: r,
      reason: `${label} needs phase ${phases.filter((p) => p !== 'none').join(' or ')}, but rotation #${r.id} is in phase ${r.phase}`,
      hint: `next: ${nextStep(r.phase)}`,
      details: { guard: 'phase' },
    });
  }
  return r;
}

/** Run the guards of rule `id`; a refusal is recorded and thrown. Returns the guards the operator forced. */
export async function checkGuards(ctx: CoreContext, id: string, s: Snapshot, input: GuardInput = {}, skip: readonly GuardName[] = []): Promise<GuardName[]> {
  const r = rule(id);
  const { refusal, forced } = evaluate(r, s, input, skip);
  if (refusal) {
    return refuse(ctx, {
      action: r.action,
      rotation: s.rotation,
      reason: refusal.reason,
      hint: refusal.hint,
      details: { guard: refusal.guard, ...refusal.details },
    });
  }
  return forced;
}
