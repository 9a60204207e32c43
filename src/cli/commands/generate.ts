/** `keyctl generate`: parse flags → core step → render. */
import { generate } from '../../core/rotation/generate.js';
import { done } from './phase-output.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { GenerateOptions } from '../specs.js';

export async function run(rt: CliRuntime, f: GenerateOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const g = await generate(ctx, { emergency: Boolean(f.emergency), reason: f.reason, compromised: f.compromised, breakGlass: f.breakGlass });
    if (g.escalated) {
      return done(
        rt,
        g.rotation,
        `rotation #${g.rotation.id} is now an emergency rotation: ${g.rotation.oldVersion} is marked compromised; waits and the rollback window are skipped and rollback to it is refused`,
        { newVersion: g.newVersion, escalated: true, compromised: g.rotation.compromisedVersion },
      );
    }
    return done(
      rt,
      g.rotation,
      `${g.resumed ? 'adopted' : 'created'} key ${g.newVersion} (fingerprint ${g.fingerprint}) and published it decrypt-only${g.rotation.emergency ? `; ${g.rotation.oldVersion} is marked compromised` : ''}`,
      { newVersion: g.newVersion, fingerprint: g.fingerprint, resumed: g.resumed, escalated: false, compromised: g.rotation.compromisedVersion },
    );
  });
}
