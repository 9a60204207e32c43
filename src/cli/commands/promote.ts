/** `keyctl promote`: parse flags → core step → render. */
import { promote } from '../../core/rotation/steps.js';
import { done } from './phase-output.js';
import { formatTime } from '../../ui/format.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { PromoteOptions } from '../specs.js';

export async function run(rt: CliRuntime, f: PromoteOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const r = await promote(ctx, { force: f.force, reason: f.reason, breakGlass: f.breakGlass });
    return done(
      rt,
      r,
      r.emergency
        ? `${r.oldVersion} removed from the published keyring; an emergency rotation has no rollback window (no rollback to a compromised key): retire it now`
        : `${r.oldVersion} removed from the published keyring and archived for rollback until ${r.rollbackDeadline ? formatTime(r.rollbackDeadline) : '?'}`,
    );
  });
}
