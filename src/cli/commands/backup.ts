/** `keyctl backup`: an OpenPGP-encrypted backup of the keyring, pruned by retention. Cron-safe: one line, no prompts. */
import path from 'node:path';
import { runBackup } from '../../core/backup.js';
import { ExitCode } from '../../base/exit-codes.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { BackupOptions } from '../specs.js';

export async function run(rt: CliRuntime, f: BackupOptions): Promise<number> {
  const tenant = f.pruneTenant;
  if (tenant !== undefined) {
    // Not a backup of one keyring: the shredded tenant is named by the option itself.
    const { tenancy: _, ...flags } = rt.flags;
    const { pruneTenantBackups } = await import('../../core/tenants.js');
    const r = await withCoreContext({ ...rt, flags }, (ctx) => pruneTenantBackups(ctx, tenant, f.out ? path.resolve(rt.cwd, f.out) : undefined));
    rt.output.result(r, () =>
      r.deleted.length
        ? `deleted ${r.deleted.length} key backup(s) of shredded tenant ${r.tenant}: ${r.deleted.join(', ')}`
        : `no key backup of tenant ${r.tenant} left here`,
    );
    return ExitCode.OK;
  }
  return withCoreContext(rt, async (ctx) => {
    if (f.ifConfigured && !f.recipient.length && ctx.config.backup.recipients.length === 0) {
      rt.output.result(
        { file: null, skipped: 'backup.recipients is empty' },
        () => 'no backup configured (backup.recipients is empty in keyctl.yaml): nothing to do',
      );
      return ExitCode.OK;
    }
    const r = await runBackup(ctx, {
      ...(f.out ? { outDir: path.resolve(rt.cwd, f.out) } : {}),
      ...(f.recipient.length ? { recipients: f.recipient.map((p) => path.resolve(rt.cwd, p)) } : {}),
    });
    rt.output.result(
      { file: r.file, sha256: r.sha256, bytes: r.bytes, versions: r.versions, recipients: r.recipients, pruned: r.pruned },
      () =>
        `backup ${r.file} (${r.versions.join(', ')}; ${r.recipients.length} recipient(s); sha256 ${r.sha256.slice(0, 16)}…)${r.pruned.length ? `; pruned ${r.pruned.length} old backup(s)` : ''}`,
    );
    return ExitCode.OK;
  });
}
