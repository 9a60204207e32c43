/** `keyctl verify`: parse flags → core step → render. */
import { verify } from '../../core/rotation/verify.js';
import { ExitCode } from '../../base/exit-codes.js';
import { nextStep } from '../../rotation/machine.js';
import { formatCount } from '../../ui/format.js';
import { rotationJson } from './phase-output.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { VerifyOptions } from '../specs.js';

export async function run(rt: CliRuntime, f: VerifyOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const v = await verify(ctx, { sample: f.sample });
    const c = rt.output.out;
    rt.output.result(
      {
        // A failed check is not ok: "ok" agrees with the exit status.
        ok: v.passed,
        passed: v.passed,
        primary: v.primary,
        rotation: v.rotation ? rotationJson(v.rotation) : null,
        byVersion: v.totals.byVersion,
        unparseable: v.totals.unparseable,
        plaintext: v.totals.plaintext,
        checked: v.checked,
        sampled: v.sampled,
        problems: v.problems,
        failures: v.failures,
        movedFrom: v.movedFrom,
      },
      () => {
        const lines = [
          `values per version (database count): ${
            Object.entries(v.totals.byVersion)
              .map(([k, n]) => `${k}=${formatCount(n)}`)
              .join(' ') || 'none'
          }${v.totals.unparseable ? `, unparseable=${formatCount(v.totals.unparseable)}` : ''}${v.totals.plaintext ? `, plaintext=${formatCount(v.totals.plaintext)}` : ''}`,
          `decrypted${v.sampled ? ' (sample)' : ''}: ${
            Object.entries(v.checked)
              .map(([k, n]) => `${k}=${formatCount(n)}`)
              .join(' ') || 'none'
          }`,
        ];
        if (v.passed)
          lines.push(
            `${c.green('✓')} verification passed${v.sampled ? ' (sample: does not unlock promote)' : ''}${v.rotation ? `; rotation #${v.rotation.id} is in phase ${c.bold(v.rotation.phase)}; next: ${nextStep(v.rotation.phase)}` : ''}`,
          );
        else {
          lines.push(c.red('✗ verification failed:'), ...v.problems.map((p) => `  - ${p}`));
          for (const f of v.failures.slice(0, 50)) lines.push(`    ${f.table} ${f.column} pk=${f.pk}: ${f.reason}`);
          if (v.failures.length > 50) lines.push(`    … ${formatCount(v.failures.length - 50)} more (use --json for the full list)`);
          if (v.rotation && v.movedFrom)
            lines.push(
              `rotation #${v.rotation.id} moved back from ${v.movedFrom} to ${c.bold(v.rotation.phase)}: promote stays locked until a full verify passes`,
            );
          lines.push('run `keyctl reencrypt` to move values under the primary; values that do not decrypt need repair by hand (or `keyctl rollback`)');
        }
        return lines.join('\n');
      },
    );
    return v.passed ? ExitCode.OK : ExitCode.PROBLEMS_FOUND;
  });
}
