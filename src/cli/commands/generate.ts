/** `keyctl generate`: parse flags → core step → render. */
import { generate } from '../../core/rotation/generate.js';
import { done } from './phase-output.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';

export async function run(rt: CliRuntime, f: { emergency?: boolean; reason?: string }): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const g = await generate(ctx, { emergency: Boolean(f.emergency), reason: f.reason });
    return done(
      rt,
      g.rotation,
      `${g.resumed ? 'adopted' : 'created'} key ${g.newVersion} (fingerprint ${g.fingerprint}) and published it decrypt-only${g.rotation.emergency ? `; ${g.rotation.oldVersion} is marked compromised` : ''}`,
      { newVersion: g.newVersion, fingerprint: g.fingerprint, resumed: g.resumed },
    );
  });
}
