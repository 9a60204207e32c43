/**
 * The key-version registry in the database: version, state and fingerprint of every key of a
 * keyring — never the material. `reconcileRegistry` checks the keystore against it, and on first
 * contact (an empty registry) adopts the keystore's versions, recording that in the audit.
 */
import type { Knex } from 'knex';
import { fromDbTime } from '../db/adapter.js';
import type { Db } from '../db/connect.js';
import { TABLES } from '../db/migrations.js';
import { compareVersions, fingerprint, versionNumber } from '../crypto/keys.js';
import type { KeystoreSnapshot } from '../keystore/types.js';
import { appendAudit } from './audit.js';
import type { CoreContext } from './context.js';
import { KeystoreError } from './errors.js';

export type VersionState = 'primary' | 'decrypt-only' | 'archived' | 'retired';

export interface RegisteredVersion {
  keyring: string;
  version: string;
  state: VersionState;
  fingerprint: string;
  compromised: boolean;
  createdAt: Date;
  stateChangedAt: Date;
  /** When readers could first see the key (null: not yet published). */
  publishedAt: Date | null;
  /** Whether the key's material still exists in the keystore. */
  material: 'present' | 'destroyed';
}

export async function listVersions(db: Db | Knex.Transaction, keyring: string): Promise<RegisteredVersion[]> {
  const knex = 'knex' in db ? db.knex : db;
  const rows: Record<string, unknown>[] = await knex(TABLES.keyVersions).where({ keyring }).orderBy('version_number');
  return rows.map((r) => ({
    keyring: String(r.keyring),
    version: String(r.version),
    state: r.state as VersionState,
    fingerprint: String(r.fingerprint),
    compromised: Boolean(Number(r.compromised)),
    createdAt: fromDbTime(r.created_at) ?? new Date(0),
    stateChangedAt: fromDbTime(r.state_changed_at) ?? new Date(0),
    publishedAt: fromDbTime(r.published_at),
    material: r.material === 'destroyed' ? 'destroyed' : 'present',
  }));
}

type Executor = Knex | Knex.Transaction;

export async function setVersionState(t: Executor, db: Db, keyring: string, version: string, state: VersionState, at: Date): Promise<void> {
  await t(TABLES.keyVersions).where({ keyring, version }).update({ state, state_changed_at: db.adapter.toDbTime(at) });
}

export async function markCompromised(t: Executor, keyring: string, version: string): Promise<void> {
  await t(TABLES.keyVersions).where({ keyring, version }).update({ compromised: true });
}

export async function markMaterialDestroyed(t: Executor, keyring: string, version: string): Promise<void> {
  await t(TABLES.keyVersions).where({ keyring, version }).update({ material: 'destroyed' });
}

export async function markPublished(t: Executor, db: Db, keyring: string, version: string, at: Date): Promise<void> {
  await t(TABLES.keyVersions).where({ keyring, version }).whereNull('published_at').update({ published_at: db.adapter.toDbTime(at) });
}

export async function insertVersion(
  db: Db,
  v: Omit<RegisteredVersion, 'stateChangedAt' | 'publishedAt' | 'material'> & { published?: boolean },
  trx?: Knex.Transaction,
): Promise<void> {
  const at = db.adapter.toDbTime(v.createdAt);
  await (trx ?? db.knex)(TABLES.keyVersions).insert({
    published_at: v.published === false ? null : at,
    keyring: v.keyring,
    version: v.version,
    version_number: versionNumber(v.version),
    state: v.state,
    fingerprint: v.fingerprint,
    compromised: v.compromised,
    created_at: at,
    state_changed_at: at,
  });
}

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
