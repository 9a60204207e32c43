/**
 * `keyctl purge`: destroys the material of retired keys whose retention has passed
 * (policy.retiredKeys: destroy, policy.retiredKeyRetentionDays after their retirement) — the only
 * destruction besides retire itself. Like retire, it first decrypts every value with the keys that
 * will remain; one that only a purged key can read refuses the purge. Audited (action `purge`).
 */
import { appendAudit, markMaterialDestroyed } from '../rotation/store.js';
import { retention, type RetentionInfo } from './retention.js';
import type { CoreContext } from './context.js';
import { scanWithoutKeys } from './rotation/decryption-scan.js';
import { refuse } from './rotation/guard.js';
import { prepare } from './rotation/prepare.js';
import { syncKeystore } from './rotation/sync.js';

export interface PurgeResult {
  destroyed: string[];
  /** Retired keys kept, with the date purge may destroy them (null: policy keeps them). */
  kept: RetentionInfo[];
  valuesChecked: number;
}

export async function purge(ctx: CoreContext, opts: { dryRun?: boolean } = {}): Promise<PurgeResult> {
  const state = await prepare(ctx);
  const now = ctx.now();
  const all = retention(ctx, state.versions);
  const due = all.filter((r) => r.destroyAfter && r.destroyAfter.getTime() <= now.getTime());
  const kept = all.filter((r) => !due.includes(r));
  if (due.length === 0 || opts.dryRun) return { destroyed: opts.dryRun ? due.map((d) => d.version) : [], kept, valuesChecked: 0 };

  const scan = await scanWithoutKeys(
    ctx,
    due.map((d) => d.version),
  );
  const checked = scan.valuesChecked;
  if (scan.failureCount > 0) {
    return refuse(ctx, {
      action: 'purge',
      rotation: state.rotation,
      reason: `${scan.failureCount} value(s) do not decrypt without ${due.map((d) => d.version).join(', ')}; keyctl will not destroy a key data still needs`,
      hint: 'run `keyctl verify` to list them; re-encrypt or repair them first',
      details: { guard: 'remainingKeysReadEverything', versions: due.map((d) => d.version), failureSample: scan.failures.slice(0, 20) },
    });
  }
  await ctx.db.knex.transaction(async (trx) => {
    for (const d of due) await markMaterialDestroyed(trx, ctx.config.keyring, d.version);
    await appendAudit(
      ctx.db,
      {
        registryChanged: true,
        keyring: ctx.config.keyring,
        action: 'purge',
        actor: ctx.actor,
        rowsAffected: checked,
        outcome: 'ok',
        details: {
          versions: due.map((d) => d.version),
          material: 'destroyed',
          retentionDays: ctx.config.policy.retiredKeyRetentionDays,
          destructionScan: { failures: 0, checked },
        },
      },
      now,
      trx,
    );
  });
  await syncKeystore(ctx);
  return { destroyed: due.map((d) => d.version), kept, valuesChecked: checked };
}
