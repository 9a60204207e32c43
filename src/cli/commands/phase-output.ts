/** Shared rendering for the phase commands: what happened, the phase now, and what is next. */
import { ExitCode } from '../../base/exit-codes.js';
import { nextStep } from '../../rotation/machine.js';
import type { Rotation } from '../../rotation/store.js';
import type { CliRuntime } from '../runtime.js';

export function rotationJson(r: Rotation) {
  return {
    id: r.id,
    phase: r.phase,
    oldVersion: r.oldVersion,
    newVersion: r.newVersion,
    emergency: r.emergency,
    rollbackDeadline: r.rollbackDeadline?.toISOString() ?? null,
    next: nextStep(r.phase).replace(/`/g, ''),
  };
}

export function done(rt: CliRuntime, r: Rotation, what: string, extra: Record<string, unknown> = {}): number {
  const c = rt.output.out;
  rt.output.result(
    { rotation: rotationJson(r), ...extra },
    () => `${c.green('✓')} ${what}\n  rotation #${r.id} is now in phase ${c.bold(r.phase)}; next: ${nextStep(r.phase)}`,
  );
  return ExitCode.OK;
}
