/**
 * The keystore follows the registry. After every committed phase change (and before every
 * rotation command) keyctl makes the keystore match what the registry says:
 *   published keyring = versions in state primary or decrypt-only, primary = the registry's primary;
 *   archive           = versions in state archived, plus retired versions whose material is kept.
 * Writes go archive-additions first, then the published document, then archive removals, so a
 * crash between two writes never leaves a key in neither place. A change interrupted by a crash
 * or a keystore outage is completed by the next command. Keys the registry does not know are
 * left alone (see generate's recovery).
 */
import { compareVersions, fingerprint } from '../../crypto/keys.js';
import type { ArchiveDocument, KeyringDocument } from '../../keystore/types.js';
import type { CoreContext } from '../context.js';
import { KeystoreConflictError, KeystoreError } from '../../base/errors.js';
import { formatCount } from '../../base/format.js';
import { destructionRecorded, listVersions, markPublished, type RegisteredVersion } from '../../rotation/store.js';
import { countAllTargets } from './counts.js';
import { refuse } from './guard.js';

function sameKeys(a: Map<string, Buffer>, b: Map<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [v, k] of a) if (!b.get(v)?.equals(k)) return false;
  return true;
}

export interface Synced {
  /** What was written to the keystore, in words. */
  changes: string[];
  /** The registry as this sync listed it (fresh: the keystore follows the newest registry). */
  versions: RegisteredVersion[];
  /** Whether the sync changed the registry itself (a version's first publication recorded). */
  registryChanged: boolean;
}

/** Tries of a sync whose keystore write lost a check-and-set to another keyctl. */
const SYNC_TRIES = 5;

/**
 * Make the keystore match the registry. Another keyctl syncing the same keyring at the same moment
 * (two commands racing, each syncing after its move) makes one write lose its check-and-set: that
 * one starts again from a fresh registry and keystore, every check included.
 */
export async function syncKeystore(ctx: CoreContext): Promise<Synced> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await syncOnce(ctx);
    } catch (err) {
      if (!(err instanceof KeystoreConflictError) || attempt >= SYNC_TRIES) throw err;
      await new Promise((r) => setTimeout(r, 10 * attempt + Math.floor(Math.random() * 20)));
    }
  }
}

async function syncOnce(ctx: CoreContext): Promise<Synced> {
  const { keystore, db, config } = ctx;
  const keyring = config.keyring;
  const versions = await listVersions(db, keyring);
  const published = await keystore.read();
  if (!published) throw new KeystoreError(`${keystore.describe()} holds no keys`, 'restore the keyring from a backup');
  const archive = await keystore.readArchive(keyring);
  const material = (v: RegisteredVersion): Buffer => {
    const key = published.doc.keys.get(v.version) ?? archive.doc.keys.get(v.version)?.key;
    if (!key) {
      throw new KeystoreError(
        `the registry lists ${v.version} as ${v.state} but ${keystore.describe()} no longer holds its key`,
        'restore the key from a backup before continuing',
      );
    }
    if (fingerprint(key) !== v.fingerprint) {
      throw new KeystoreError(
        `key ${v.version} in ${keystore.describe()} does not match the registry's fingerprint ${v.fingerprint}`,
        'restore the right key from a backup',
      );
    }
    return key;
  };
  const registered = new Set(versions.map((v) => v.version));
  const primary = versions.find((v) => v.state === 'primary');
  if (!primary) throw new KeystoreError(`the registry has no primary version for keyring ${keyring}`, 'restore the database or the keyring from a backup');

  // Desired published document: registry's published versions + keys the registry does not know.
  const pubKeys = new Map<string, Buffer>();
  for (const [v, k] of published.doc.keys) if (!registered.has(v)) pubKeys.set(v, k);
  for (const v of versions) if (v.state === 'primary' || v.state === 'decrypt-only') pubKeys.set(v.version, material(v));
  const desiredPublished: KeyringDocument = { keyring, primary: primary.version, keys: new Map([...pubKeys].sort(([a], [b]) => compareVersions(a, b))) };

  // Desired archive.
  const now = ctx.now().toISOString();
  const keep = new Map(archive.doc.keys);
  const removals: string[] = [];
  for (const v of versions) {
    const want = v.state === 'archived' ? 'archived' : v.state === 'retired' && v.material === 'present' ? 'retired' : null;
    const have = archive.doc.keys.get(v.version);
    if (want && (!have || have.status !== want)) keep.set(v.version, { key: material(v), status: want, since: now });
    if (!want && have && (v.state === 'primary' || v.state === 'decrypt-only' || v.material === 'destroyed')) removals.push(v.version);
  }

  // The keystore never loses key material because the database says so: a key held now and held
  // nowhere after this sync must have an audited destruction (retire, or a closed rollback) behind it.
  const heldAfter = new Set([...desiredPublished.keys.keys(), ...[...keep.keys()].filter((v) => !removals.includes(v))]);
  for (const v of [...new Set([...published.doc.keys.keys(), ...archive.doc.keys.keys()])]) {
    if (heldAfter.has(v) || !registered.has(v)) continue;
    if (await destructionRecorded(db, keyring, v)) continue;
    await refuse(ctx, {
      action: 'integrity',
      rotation: null,
      reason: `the registry says ${v} is ${versions.find((x) => x.version === v)?.state ?? '?'} with its material destroyed, but no audited retire, rollback or purge destroyed it; keyctl will not remove its key from ${keystore.describe()}`,
      hint: 'undo the change to keyctl_key_versions (`keyctl audit --verify` shows what the history recorded); keys are destroyed only by `keyctl retire` and `keyctl purge`',
      details: { guard: 'destructionAudited', version: v },
    });
  }

  // Nor does it stop publishing a key that values still need: the published keyring is what the
  // applications decrypt with, so a version leaving it while the database still holds values under
  // it would make them unreadable (a registry edited outside keyctl, say, with a forged audit row
  // past the anchored head to hide it). Counted only when a version is about to leave.
  const leaving = [...published.doc.keys.keys()].filter((v) => registered.has(v) && !desiredPublished.keys.has(v));
  if (leaving.length > 0) {
    const { byVersion } = await countAllTargets(ctx);
    for (const v of leaving) {
      const inUse = byVersion[v] ?? 0;
      if (inUse === 0) continue;
      await refuse(ctx, {
        action: 'integrity',
        rotation: null,
        reason: `the registry says ${v} is ${versions.find((x) => x.version === v)?.state ?? '?'}, but ${formatCount(inUse)} value(s) in the targets are still under ${v}; keyctl will not stop publishing a key the data needs`,
        hint: 'if keyctl_key_versions was changed outside keyctl, undo it (`keyctl audit --verify`, `keyctl status --check`); otherwise re-encrypt those values first (`keyctl reencrypt`)',
        details: { guard: 'unpublishedKeyUnused', version: v, values: inUse },
      });
    }
  }

  const changes: string[] = [];
  const additionsChanged = keep.size !== archive.doc.keys.size || [...keep].some(([v, a]) => archive.doc.keys.get(v)?.status !== a.status);
  let archiveRevision = archive.revision;
  if (additionsChanged) {
    const doc: ArchiveDocument = { keyring, keys: keep };
    await keystore.writeArchive(doc, archiveRevision, 'archive keys');
    archiveRevision = (await keystore.readArchive(keyring)).revision;
    changes.push(
      `archive: ${[...keep]
        .filter(([v, a]) => archive.doc.keys.get(v)?.status !== a.status)
        .map(([v, a]) => `${v} ${a.status}`)
        .join(', ')}`,
    );
  }
  if (desiredPublished.primary !== published.doc.primary || !sameKeys(desiredPublished.keys, published.doc.keys)) {
    await keystore.write(desiredPublished, published.revision, 'update the published keyring');
    changes.push(`published: primary ${desiredPublished.primary}, keys ${[...desiredPublished.keys.keys()].join(', ')}`);
  }
  if (removals.length > 0) {
    const after = new Map(keep);
    for (const v of removals) after.delete(v);
    await keystore.writeArchive({ keyring, keys: after }, archiveRevision, 'remove keys from the archive');
    changes.push(`archive: removed ${removals.join(', ')}`);
  }
  const at = ctx.now();
  let registryChanged = false;
  for (const v of versions) {
    if ((v.state === 'primary' || v.state === 'decrypt-only') && !v.publishedAt) {
      await markPublished(db.knex, db, keyring, v.version, at);
      registryChanged = true;
    }
  }
  if (changes.length > 0) ctx.log.info(`keystore updated to match the registry: ${changes.join('; ')}`);
  return { changes, versions, registryChanged };
}
