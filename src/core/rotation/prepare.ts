/**
 * What every rotation command does first: check the keystore against the registry, finish any
 * keystore update an earlier command could not complete, check the targets, and load the open
 * rotation. `snapshot` turns that into what the machine's guards look at.
 */
import type { Snapshot } from '../../rotation/machine.js';
import { listVersions, openRotation, type RegisteredVersion, type Rotation } from '../../rotation/store.js';
import type { CoreContext } from '../context.js';
import { KeystoreError } from '../errors.js';
import { reconcileRegistry } from '../registry.js';
import { checkTargets } from '../targets.js';
import { countAllTargets } from './counts.js';
import { syncKeystore } from './sync.js';

export interface Prepared {
  rotation: Rotation | null;
  versions: RegisteredVersion[];
  primary: string;
}

export async function prepare(ctx: CoreContext, opts: { sync?: boolean } = {}): Promise<Prepared> {
  await reconcileRegistry(ctx);
  if (opts.sync !== false) await syncKeystore(ctx);
  await checkTargets(ctx.db, ctx.config);
  const versions = await listVersions(ctx.db, ctx.config.keyring);
  const primary = versions.find((v) => v.state === 'primary');
  if (!primary) throw new KeystoreError(`the registry has no primary version for keyring ${ctx.config.keyring}`, 'restore the database or the keyring from a backup');
  return { rotation: await openRotation(ctx.db, ctx.config.keyring), versions, primary: primary.version };
}

/** The machine's view of now; `counts` runs one GROUP BY scan per target table. */
export async function snapshot(ctx: CoreContext, state: Prepared, opts: { counts?: boolean } = {}): Promise<Snapshot> {
  const counts = opts.counts ? await countAllTargets(ctx) : undefined;
  return {
    now: ctx.now(),
    keyring: ctx.config.keyring,
    rotation: state.rotation,
    versions: state.versions,
    policy: { minPropagationSeconds: ctx.config.policy.minPropagationSeconds, rollbackWindowDays: ctx.config.policy.rollbackWindowDays },
    keystoreWritable: ctx.keystore.writable,
    ...(counts ? { counts: { byVersion: counts.byVersion, unparseable: counts.unparseable } } : {}),
  };
}
