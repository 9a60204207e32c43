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
    ...(counts ? { counts } : {}),
  };
}

/** Values per version and unparseable ones, summed over column counts. */
export function sumCounts(columns: ReadonlyArray<{ counts: Record<string, number>; unparseable: number }>): CountsSnapshot {
  const byVersion: Record<string, number> = {};
  let unparseable = 0;
  for (const c of columns) {
    unparseable += c.unparseable;
    for (const [v, n] of Object.entries(c.counts)) byVersion[v] = (byVersion[v] ?? 0) + n;
  }
  return { byVersion, unparseable };
}
