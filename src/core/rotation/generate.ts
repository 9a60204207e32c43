/**
 * `keyctl generate`: opens a rotation. The new key is written to the keystore *before* the
 * database learns about it (its material must exist somewhere before it is registered), as a
 * decrypt-only version, so every reader can decrypt it before any writer uses it.
 *
 * Crash safety: the rotation row is claimed first (phase `generating`, with the new version's
 * number; the unique open_keyring index lets only one operator claim it). If keyctl dies after
 * publishing the key but before registering it, running generate again finds that version in
 * the keystore and registers it instead of creating another.
 */
import { fingerprint, generateKey, versionName, versionNumber } from '../../crypto/keys.js';
import { translateDbError } from '../../db/errors.js';
import { TABLES } from '../../db/migrations.js';
import type { CoreContext } from '../context.js';
import { UsageError } from '../errors.js';
import { insertVersion, markCompromised } from '../registry.js';
import { NEXT_STEP, openRotation, type Rotation } from '../rotations.js';
import { refuse } from './guard.js';
import { prepare } from './prepare.js';
import { transition } from './transition.js';

export interface GenerateOptions {
  emergency: boolean;
  reason?: string | undefined;
}

export interface GenerateResult {
  rotation: Rotation;
  newVersion: string;
  fingerprint: string;
  /** True when a key left by an interrupted generate was adopted instead of creating one. */
  resumed: boolean;
}

export async function generate(ctx: CoreContext, opts: GenerateOptions): Promise<GenerateResult> {
  if (opts.emergency && !opts.reason?.trim()) {
    throw new UsageError('--emergency needs --reason TEXT (recorded in the audit)', 'e.g. keyctl generate --emergency --reason "INC-1234: key exposed in a log"');
  }
  const { db, keystore, config } = ctx;
  const keyring = config.keyring;
  const state = await prepare(ctx);
  let rotation = state.rotation;
  if (rotation && rotation.phase !== 'generating') {
    return refuse(ctx, {
      action: 'generate',
      rotation,
      reason: `rotation #${rotation.id} is already open (phase ${rotation.phase}); a keyring has one rotation at a time`,
      hint: `next: ${NEXT_STEP[rotation.phase]}; or abandon it with \`keyctl rollback\``,
    });
  }
  if (!keystore.writable) {
    return refuse(ctx, {
      action: 'generate',
      rotation,
      reason: `${keystore.describe()} is read-only: keyctl cannot add, publish or retire keys in it, so it cannot run a rotation`,
      hint: 'run rotations with a keystore keyctl can write (keystore.provider: file, or a managed keystore); the env keystore is for reading',
    });
  }

  const published = (await keystore.read())!;
  const archive = await keystore.readArchive(keyring);
  const highest = Math.max(
    ...state.versions.map((v) => versionNumber(v.version)),
    ...[...published.doc.keys.keys(), ...archive.doc.keys.keys()].map(versionNumber),
  );
  if (!rotation) {
    const at = ctx.now();
    const newVersion = versionName(highest + 1);
    try {
      await db.knex(TABLES.rotations).insert({
        keyring,
        phase: 'generating',
        old_version: state.primary,
        new_version: newVersion,
        emergency: opts.emergency,
        reason: opts.reason ?? null,
        open_keyring: keyring,
        opened_by: ctx.actor,
        opened_at: db.adapter.toDbTime(at),
        phase_changed_at: db.adapter.toDbTime(at),
      });
    } catch (err) {
      if (!isUniqueViolation(err)) throw translateDbError(err, db.endpoint, 'open a rotation in');
      const other = await openRotation(db, keyring);
      return refuse(ctx, {
        action: 'generate',
        rotation: other,
        reason: `another rotation${other ? ` (#${other.id}, by ${other.openedBy})` : ''} was opened at the same moment`,
        hint: 'run `keyctl status` to see it',
      });
    }
    rotation = (await openRotation(db, keyring))!;
  }

  const newVersion = rotation.newVersion;
  let key = published.doc.keys.get(newVersion);
  const resumed = key !== undefined;
  if (!key) {
    key = generateKey();
    const keys = new Map(published.doc.keys);
    keys.set(newVersion, key);
    await keystore.write({ ...published.doc, keys }, published.revision, `add key ${newVersion}`);
  } else {
    ctx.log.info(`found ${newVersion} in the keystore from an interrupted generate; using it`);
  }
  const fp = fingerprint(key);
  // Resuming with --emergency turns the rotation into an emergency one; it never turns one back.
  const emergency = rotation.emergency || opts.emergency;
  const reason = opts.reason ?? rotation.reason;
  const done = await transition(ctx, {
    action: 'generate',
    rotation,
    to: 'generated',
    rotationColumns: { emergency, reason, ...(emergency ? { compromised_version: rotation.oldVersion } : {}) },
    details: { fingerprint: fp, emergency, reason, resumed },
    apply: async (trx, at) => {
      await insertVersion(db, { keyring, version: newVersion, state: 'decrypt-only', fingerprint: fp, compromised: false, createdAt: at }, trx);
      if (emergency) await markCompromised(trx, keyring, rotation!.oldVersion);
    },
  });
  return { rotation: { ...done, emergency, reason }, newVersion, fingerprint: fp, resumed };
}

function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  return code === '23505' || code === 'ER_DUP_ENTRY' || code.startsWith('SQLITE_CONSTRAINT');
}
