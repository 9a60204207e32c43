/**
 * What every rotation command does first: check the keystore against the registry, finish any
 * keystore update an earlier command could not complete, check the targets, and load the open
 * rotation.
 */
import type { CoreContext } from '../context.js';
import { KeystoreError } from '../errors.js';
import { listVersions, reconcileRegistry, type RegisteredVersion } from '../registry.js';
import { openRotation, type Rotation } from '../rotations.js';
import { checkTargets } from '../targets.js';
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
