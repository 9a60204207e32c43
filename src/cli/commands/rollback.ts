/** `keyctl rollback`: parse flags → core step → render. */
import { rollback } from '../../core/rotation/steps.js';
import { CLOSED_PHASES } from '../../rotation/machine.js';
import { done } from './phase-output.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { RollbackOptions } from '../specs.js';

export async function run(rt: CliRuntime, f: RollbackOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const r = await rollback(ctx, { force: f.force, reason: f.reason });
    return done(
      rt,
      r,
      `${r.oldVersion} is primary again; ${CLOSED_PHASES.includes(r.phase) ? `${r.newVersion} was never used and is retired` : `${r.newVersion} stays readable until its values are re-encrypted back`}`,
    );
  });
}
