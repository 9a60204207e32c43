/**
 * The key-version registry in the database: version, state and fingerprint of every key of a
 * keyring — never the material. `reconcileRegistry` checks the keystore against it, and on first
 * contact (an empty registry) adopts the keystore's versions, recording that in the audit.
 */
import { compareVersions, fingerprint } from '../crypto/keys.js';
import type { KeystoreSnapshot } from '../keystore/types.js';
import { appendAudit, checkRegistry, insertVersion, latestRotation, listVersions, type RegisteredVersion } from '../rotation/store.js';
import { refuse } from './rotation/guard.js';
import type { CoreContext } from './context.js';
import { KeystoreError } from '../base/errors.js';

export interface Reconciled {
  snapshot: KeystoreSnapshot;
  versions: RegisteredVersion[];
  /** Drift between keystore and registry worth showing, never fatal. */
  warnings: string[];
}

/** Read the keystore and check it against the registry; adopt its versions into an empty registry. */
export async function reconcileRegistry(ctx: CoreContext): Promise<Reconciled> {
  const { keystore, config, db } = ctx;
  const snapshot = await keystore.read();
  if (!snapshot) {
    throw new KeystoreError(
      `${keystore.describe()} holds no keys`,
      keystore.provider === 'env'
        ? 'set KEYCTL_KEY_V1 (base64 of 32 bytes) and KEYCTL_PRIMARY=v1 in the environment'
        : 'run `keyctl init` to create the keyring, or restore the keyring file from a backup',
    );
  }
  if (snapshot.doc.keyring !== config.keyring) {
    throw new KeystoreError(
      `${keystore.describe()} holds keyring "${snapshot.doc.keyring}" but keyctl.yaml names keyring "${config.keyring}"`,
      'set keyring: in keyctl.yaml to match, or point the keystore at the right keyring',
    );
  }
  let versions = await listVersions(db, config.keyring);
  const warnings: string[] = [];
  if (versions.length === 0) {
    // First contact only: a registry that keyctl's audited history says existed was emptied outside
    // keyctl (which would drop compromised flags and retired states); that is refused, not adopted.
    const recorded = (await checkRegistry(db, config.keyring)).recorded;
    if (recorded || (await latestRotation(db, config.keyring))) {
      await refuse(ctx, {
        action: 'integrity',
        rotation: null,
        reason: `keyctl_key_versions holds no versions of keyring ${config.keyring}, but keyctl's audit history${recorded ? ` (row seq ${recorded.seq}, ${recorded.action})` : ''} shows it had some: the registry was emptied outside keyctl`,
        hint: 'restore keyctl_key_versions from a database backup; keyctl will not rebuild it from the keystore (compromised flags and retired keys would be lost)',
        details: { guard: 'registryIntact' },
      });
    }
    const at = ctx.now();
    const adopted: string[] = [];
    await db.knex.transaction(async (trx) => {
      for (const [version, key] of [...snapshot.doc.keys.entries()].sort(([a], [b]) => compareVersions(a, b))) {
        await insertVersion(
          db,
          {
            keyring: config.keyring,
            version,
            state: version === snapshot.doc.primary ? 'primary' : 'decrypt-only',
            fingerprint: fingerprint(key),
            compromised: false,
            createdAt: at,
          },
          trx,
        );
        adopted.push(version);
      }
      await appendAudit(
        db,
        {
          registryChanged: true,
          keyring: config.keyring,
          action: 'register',
          actor: ctx.actor,
          newVersion: snapshot.doc.primary,
          outcome: 'ok',
          details: { versions: adopted, keystore: keystore.provider },
        },
        at,
        trx,
      );
    });
    ctx.log.info(`registered ${adopted.join(', ')} from the ${keystore.provider} keystore in the database registry`);
    versions = await listVersions(db, config.keyring);
  }

  for (const [version, key] of snapshot.doc.keys) {
    const reg = versions.find((v) => v.version === version);
    const fp = fingerprint(key);
    if (!reg) {
      warnings.push(`the keystore holds ${version} (fingerprint ${fp}) which the registry does not know`);
    } else if (reg.fingerprint !== fp) {
      throw new KeystoreError(
        `key ${version} in the ${keystore.describe()} does not match the database registry (fingerprint ${fp}, registry has ${reg.fingerprint})`,
        'the keystore and the database belong to different deployments, or the key was replaced by hand;\n' +
          'point keyctl at the right keystore, or restore the original key from a backup',
      );
    } else if (reg.state === 'retired' || reg.state === 'archived') {
      warnings.push(`the keystore still publishes ${version}, which the registry lists as ${reg.state}`);
    }
  }
  const regPrimary = versions.find((v) => v.state === 'primary');
  if (regPrimary && regPrimary.version !== snapshot.doc.primary) {
    warnings.push(`the keystore's primary is ${snapshot.doc.primary} but the registry's is ${regPrimary.version}`);
  }
  for (const v of versions) {
    if ((v.state === 'primary' || v.state === 'decrypt-only') && !snapshot.doc.keys.has(v.version)) {
      warnings.push(`the registry lists ${v.version} as ${v.state} but the keystore does not publish it`);
    }
  }
  return { snapshot, versions, warnings };
}
