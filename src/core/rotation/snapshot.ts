/**
 * What the rotation machine's guards look at, built the same way by every command, `status` and
 * the runbook plan: the rotation, the registry, policy, the clock and (when a guard needs them)
 * the database counts.
 */
import type { CountsSnapshot, Snapshot } from '../../rotation/machine.js';
import type { RegisteredVersion, Rotation } from '../../rotation/store.js';
import type { CoreContext } from '../context.js';

export function snapshotOf(ctx: CoreContext, rotation: Rotation | null, versions: readonly RegisteredVersion[], counts?: CountsSnapshot): Snapshot {
  return {
    now: ctx.now(),
    keyring: ctx.config.keyring,
    rotation,
    versions,
    policy: { minPropagationSeconds: ctx.config.policy.minPropagationSeconds, rollbackWindowDays: ctx.config.policy.rollbackWindowDays },
    keystoreWritable: ctx.keystore.writable,
    ...(!ctx.keystore.writable && ctx.keystore.howToRotate ? { keystoreReadOnlyHint: readOnlyHint(ctx, versions) } : {}),
    ...(counts ? { counts } : {}),
  };
}

/** The read-only keystore's steps to add the version after the newest registered one by hand. */
function readOnlyHint(ctx: CoreContext, versions: readonly RegisteredVersion[]): string {
  const present = versions.filter((v) => v.material !== 'destroyed' && v.state !== 'retired').map((v) => v.version);
  const newest = Math.max(0, ...versions.map((v) => Number(v.version.slice(1))).filter(Number.isSafeInteger));
  const primary = versions.find((v) => v.state === 'primary')?.version;
  return ctx.keystore.howToRotate?.(present, primary, `v${newest + 1}`) ?? '';
}

/** Values per version, unparseable and plaintext ones, summed over column counts. */
export function sumCounts(columns: ReadonlyArray<{ counts: Record<string, number>; unparseable: number; plaintext?: number }>): Required<CountsSnapshot> {
  const byVersion: Record<string, number> = {};
  let unparseable = 0;
  let plaintext = 0;
  for (const c of columns) {
    unparseable += c.unparseable;
    plaintext += c.plaintext ?? 0;
    for (const [v, n] of Object.entries(c.counts)) byVersion[v] = (byVersion[v] ?? 0) + n;
  }
  return { byVersion, unparseable, plaintext };
}
