/** `keyctl recover-test`: prove the newest (or a given) backup restores access to the data. */
import path from 'node:path';
import { recoverTest } from '../../core/backup.js';
import { UsageError } from '../../base/errors.js';
import { ExitCode } from '../../base/exit-codes.js';
import { formatCount } from '../../ui/format.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { RecoverTestOptions } from '../specs.js';
import { passphraseFrom } from './restore.js';

export async function run(rt: CliRuntime, f: RecoverTestOptions): Promise<number> {
  const identity = f.identity;
  if (!identity) throw new UsageError('recover-test needs --identity FILE: the armored secret key of a backup recipient');
  const passphrase = passphraseFrom(rt, f.passphraseEnv);
  return withCoreContext(rt, async (ctx) => {
    const r = await recoverTest(ctx, {
      ...(f.backup ? { backupFile: path.resolve(rt.cwd, f.backup) } : {}),
      identityFile: path.resolve(rt.cwd, identity),
      ...(passphrase !== undefined ? { passphrase } : {}),
      sample: f.sample,
    });
    const c = rt.output.out;
    rt.output.result(r, () => {
      const head = r.passed
        ? `${c.green('✓')} recover-test passed: ${path.basename(r.file)} (${r.ageHours.toFixed(1)} h old) restores ${r.versions.join(', ')}; ${formatCount(Object.values(r.decrypted).reduce((a, b) => a + b, 0))} sampled value(s) decrypted with the recovered keys${r.plaintext ? ` (${formatCount(r.plaintext)} plaintext value(s) not encrypted yet passed over)` : ''}`
        : `${c.red('✗')} recover-test FAILED for ${path.basename(r.file)} (${r.ageHours.toFixed(1)} h old):`;
      const failed = r.checks.filter((k) => !k.ok).map((k) => `  - ${k.name}: ${k.detail}`);
      return [head, ...failed].join('\n');
    });
    return r.passed ? ExitCode.OK : ExitCode.BACKUP;
  });
}
