/** `keyctl dual-key`: parse flags → core step → render. */
import { dualKey } from '../../core/rotation/steps.js';
import { done } from './phase-output.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';

export async function run(rt: CliRuntime): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const r = await dualKey(ctx);
    return done(rt, r, `${r.newVersion} is now primary; ${r.oldVersion} stays published for decryption`);
  });
}
