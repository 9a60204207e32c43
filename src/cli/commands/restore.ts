/** `keyctl restore`: bring key versions back into the keystore from a backup (disaster recovery). */
import path from 'node:path';
import { restoreBackup, type RestorePlan } from '../../core/backup.js';
import { UsageError } from '../../base/errors.js';
import { ExitCode } from '../../base/exit-codes.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { RestoreOptions } from '../specs.js';

/** The identity's passphrase from the variable named by --passphrase-env (never from argv). */
export function passphraseFrom(rt: CliRuntime, name: string | undefined): string | undefined {
  if (name === undefined) return undefined;
  const value = rt.env[name];
  if (value === undefined)
    throw new UsageError(`--passphrase-env ${name}: the variable ${name} is not set`, `export ${name}=… in the environment keyctl runs in`);
  return value;
}

function describePlan(p: RestorePlan): string {
  return [
    `restore from ${path.basename(p.file)} (written ${p.createdAt}):`,
    p.createsKeyring ? '  the keystore holds no keyring: a new one will be created' : '',
    p.toPublished.length ? `  add to the published keyring: ${p.toPublished.join(', ')}` : '',
    p.toArchive.length ? `  add to the archive: ${p.toArchive.join(', ')}` : '',
    p.unchanged.length ? `  already present, unchanged: ${p.unchanged.join(', ')}` : '',
  ]
    .filter(Boolean)
    .join('\n');
}

export async function run(rt: CliRuntime, f: RestoreOptions): Promise<number> {
  const { backup, identity, reason } = f;
  if (f.allowUnknown && !reason?.trim()) throw new UsageError('--allow-unknown needs --reason TEXT (recorded in the audit)');
  if (!backup) throw new UsageError('restore needs --backup FILE');
  if (!identity) throw new UsageError('restore needs --identity FILE: the armored secret key of a backup recipient');
  if (!f.yes && !rt.stdinIsTTY)
    throw new UsageError('restore asks for confirmation, and there is no terminal to ask on', 'check the plan with a terminal, or pass --yes');
  const passphrase = passphraseFrom(rt, f.passphraseEnv);
  return withCoreContext(rt, async (ctx) => {
    const r = await restoreBackup(ctx, {
      backupFile: path.resolve(rt.cwd, backup),
      identityFile: path.resolve(rt.cwd, identity),
      ...(f.allowUnknown && reason ? { allowUnknown: { reason } } : {}),
      ...(passphrase !== undefined ? { passphrase } : {}),
      confirm: async (plan) => {
        rt.output.info(describePlan(plan));
        if (f.yes) return true;
        return /^y(es)?$/i.test((await rt.ask('write these keys to the keystore? [y/N] ')).trim());
      },
    });
    rt.output.result(r, () =>
      r.applied
        ? `restored ${[...r.toPublished, ...r.toArchive].join(', ')} into the keystore${r.unchanged.length ? ` (${r.unchanged.join(', ')} already there)` : ''}; next: \`keyctl status\``
        : r.toPublished.length + r.toArchive.length === 0
          ? `nothing to restore: the keystore already holds ${r.unchanged.join(', ')} with the same material`
          : 'not restored: nothing was written',
    );
    return ExitCode.OK;
  });
}
