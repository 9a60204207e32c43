/** `keyctl retire`: parse flags → core step → render. */
import { retire } from '../../core/rotation/steps.js';
import { done } from './phase-output.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';

export async function run(rt: CliRuntime, f: { force?: boolean; reason?: string }): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const r = await retire(ctx, { force: f.force, reason: f.reason });
    const how = ctx.config.policy.retiredKeys === 'destroy' ? 'destroyed' : 'moved to the long-term archive';
    return done(rt, r, `${r.oldVersion} retired: its key was ${how}; rotation #${r.id} is closed`);
  });
}
