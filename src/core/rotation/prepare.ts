/**
 * What every rotation command does first: check the keystore against the registry, finish any
 * keystore update an earlier command could not complete, check the targets, and load the open
 * rotation. `snapshot` turns that into what the machine's guards look at.
 */
import type { Snapshot } from '../../rotation/machine.js';
import { checkRegistry, listVersions, openRotation, type RegisteredVersion, type Rotation } from '../../rotation/store.js';
import { refuse } from './guard.js';
import type { CoreContext } from '../context.js';
import { KeystoreError } from '../../base/errors.js';
import { reconcileRegistry } from '../registry.js';
import { checkTargets } from '../targets.js';
import { countAllTargets } from './counts.js';
import { snapshotOf } from './snapshot.js';
import { syncKeystore } from './sync.js';

export interface Prepared {
  rotation: Rotation | null;
  versions: RegisteredVersion[];
  primary: string;
}

export async function prepare(ctx: CoreContext, opts: { sync?: boolean; targetsChecked?: boolean } = {}): Promise<Prepared> {
  await reconcileRegistry(ctx);
  await requireRegistryIntact(ctx);
  // The sync's own listing is the answer unless the sync changed the registry (a command over a
  // thousand tenants prepares a thousand keyrings).
  const synced = opts.sync !== false ? await syncKeystore(ctx) : null;
  // Tenants share the targets: a pass over many checks them once.
  if (!opts.targetsChecked) await checkTargets(ctx.db, ctx.config);
  const versions = synced && !synced.registryChanged ? synced.versions : await listVersions(ctx.db, ctx.config.keyring);
  const primary = versions.find((v) => v.state === 'primary');
  if (!primary)
    throw new KeystoreError(`the registry has no primary version for keyring ${ctx.config.keyring}`, 'restore the database or the keyring from a backup');
  return { rotation: await openRotation(ctx.db, ctx.config.keyring), versions, primary: primary.version };
}

/**
 * keyctl acts only on a registry its audited history vouches for: a direct UPDATE of
 * keyctl_key_versions (say, marking a key retired and destroyed) is refused, never obeyed.
 */
export async function requireRegistryIntact(ctx: CoreContext): Promise<void> {
  const check = await checkRegistry(ctx.db, ctx.config.keyring);
  if (check.ok || !check.recorded) return;
  await refuse(ctx, {
    action: 'integrity',
    rotation: null,
    reason: `keyctl_key_versions of keyring ${ctx.config.keyring} was changed outside keyctl: it no longer matches the registry recorded by audit row seq ${check.recorded.seq} (${check.recorded.action}); keyctl will not act on it`,
    hint:
      'undo the change (restore keyctl_key_versions from a database backup taken before it, or set the rows back as `keyctl audit --all` shows them);\n' +
      '`keyctl audit --verify` reports the same. No key was changed in the keystore.',
    details: { guard: 'registryIntact', recordedSeq: check.recorded.seq },
  });
}

/** The machine's view of now; `counts` runs one GROUP BY scan per target table. */
export async function snapshot(ctx: CoreContext, state: Prepared, opts: { counts?: boolean } = {}): Promise<Snapshot> {
  const counts = opts.counts ? await countAllTargets(ctx) : undefined;
  return snapshotOf(
    ctx,
    state.rotation,
    state.versions,
    counts ? { byVersion: counts.byVersion, unparseable: counts.unparseable, plaintext: counts.plaintext } : undefined,
  );
}
