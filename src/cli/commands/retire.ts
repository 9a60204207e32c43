/** `keyctl retire`: parse flags → core step → render. */
import { retire, retiredMaterial } from '../../core/rotation/steps.js';
import { done } from './phase-output.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { RetireOptions } from '../specs.js';

export async function run(rt: CliRuntime, f: RetireOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const r = await retire(ctx, { force: f.force, reason: f.reason, breakGlass: f.breakGlass });
    const destroyed = retiredMaterial(ctx) === 'destroyed';
    const until =
      ctx.config.policy.retiredKeys === 'destroy'
        ? new Date(ctx.now().getTime() + ctx.config.policy.retiredKeyRetentionDays * 86_400_000).toISOString().slice(0, 10)
        : null;
    const how = destroyed
      ? (ctx.keystore.destructionNote?.() ?? 'was destroyed')
      : until
        ? `is kept in the archive until ${until} (policy.retiredKeyRetentionDays), then \`keyctl purge\` destroys it`
        : 'is kept in the archive for good (policy.retiredKeys: archive)';
    return done(rt, r, `${r.oldVersion} retired: its key ${how}; rotation #${r.id} is closed`);
  });
}
