/**
 * Refusals. A guard that says no records the refused attempt in rotation_audit (outcome
 * `refused`) and throws a RefusedError that says why and what to run next.
 */
import { appendAudit } from '../audit.js';
import type { CoreContext } from '../context.js';
import { RefusedError } from '../errors.js';
import type { Rotation } from '../rotations.js';

export interface Refusal {
  action: string;
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
