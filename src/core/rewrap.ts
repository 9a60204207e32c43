/**
 * `keyctl rewrap`: rotate the key-encryption key of an envelope keystore (aws-kms, vault-transit).
 * Every wrapped data key — published and archived — that is not under the target KEK (`--to`, else
 * the configured KMS key as its alias now resolves, else the Transit key's newest version) is
 * re-wrapped by the service (KMS ReEncrypt, Transit rewrap: keyctl sends no key), and no data row
 * is touched.
 *
 * Each blob is replaced by a compare-and-set (only if it is still the blob read), and only after
 * the new blob was unwrapped back to the same key: a KEK that cannot decrypt what it wrapped never
 * replaces one that can. Interrupted (kill -9 anywhere), a second run skips the blobs already under
 * the target and does the rest. The old KEKs are reported unused only when no stored blob names
 * them any more. Audited (action `rewrap`): a row for each blob replaced, written right after it,
 * and one when a run fails.
 */
import { KeystoreError, RefusedError } from '../base/errors.js';
import { noOtherKek } from '../keystore/transit.js';
import { fingerprint } from '../crypto/keys.js';
import { EnvelopeKeystore, type WrappedPlace } from '../keystore/envelope.js';
import { appendAudit } from '../rotation/store.js';
import type { CoreContext } from './context.js';

export interface RewrapEntry {
  place: WrappedPlace;
  version: string;
  /** The KEK that wrapped it before (or still, when `current`). */
  from: string;
  /** The KEK that wraps it now (rewrapped), or would (dry run). */
  to: string | null;
  state: 'rewrapped' | 'current' | 'would-rewrap' | 'changed-meanwhile';
}

export interface RewrapResult {
  dryRun: boolean;
  keyring: string;
  /** The target KEK as asked for (`--to`, or the configured one). */
  target: string;
  entries: RewrapEntry[];
  /** KEKs that wrapped a key of this keyring before this run and wrap none now (read back); with tenants, other keyrings may still use them. */
  unusedKeks: string[];
  /** KEKs that still wrap a stored blob. */
  keksInUse: string[];
}

const PLACES: readonly WrappedPlace[] = ['published', 'archive'];

export async function rewrap(ctx: CoreContext, opts: { to?: string | undefined; dryRun?: boolean } = {}): Promise<RewrapResult> {
  const ks = ctx.keystore;
  if (!(ks instanceof EnvelopeKeystore)) {
    throw new RefusedError(
      `keyctl rewrap re-wraps data keys under a new key-encryption key; keystore provider ${ks.provider} stores the keys themselves, not wrapped`,
      'use keystore provider aws-kms or vault-transit (docs/keystores.md, "Envelope encryption"); to change the keys themselves, rotate: keyctl generate',
    );
  }
  if (opts.to !== undefined && ks.wrapper.provider === 'vault-transit') throw noOtherKek(opts.to);
  const keyring = ctx.config.keyring;
  const dryRun = opts.dryRun === true;
  const entries: RewrapEntry[] = [];
  const before = new Set<string>();
  let failure: unknown = null;
  try {
    for (const place of PLACES) {
      const got = await ks.readWrapped(place);
      if (!got) continue;
      if (got.doc.keyring !== keyring)
        throw new KeystoreError(`${ks.describe()} holds keyring "${got.doc.keyring}", not "${keyring}"`, 'check keystore.path and keyring in keyctl.yaml');
      for (const [version, entry] of got.doc.keys) {
        before.add(entry.kek);
        if (await ks.wrapper.isCurrent(entry, opts.to)) {
          entries.push({ place, version, from: entry.kek, to: entry.kek, state: 'current' });
          continue;
        }
        if (dryRun) {
          entries.push({ place, version, from: entry.kek, to: null, state: 'would-rewrap' });
          continue;
        }
        const context = ks.context(keyring, version);
        const key = await ks.unwrapEntry(keyring, version, entry);
        const next = await ks.wrapper.rewrap(entry, context, opts.to);
        // Read back: the new KEK must give back the same key before the blob is replaced.
        const back = await ks.wrapper.unwrap(next, context);
        if (!back.equals(key))
          throw new KeystoreError(
            `${version}: the blob rewrapped under ${next.kek} unwraps to another key (fingerprint ${fingerprint(back)}, expected ${fingerprint(key)}); nothing was replaced`,
            'the key service is misbehaving: stop and check it before running rewrap again',
          );
        const replaced = await ks.replaceWrapped(place, version, entry, next);
        entries.push({ place, version, from: entry.kek, to: next.kek, state: replaced ? 'rewrapped' : 'changed-meanwhile' });
        if (replaced) {
          // One row per blob, right after it is replaced: a run killed later still leaves its record.
          await audit(ctx, 'ok', { place, version, from: entry.kek, to: next.kek, readBack: 'same key' });
          ctx.log.info(`${version} (${place}): rewrapped from ${entry.kek} to ${next.kek}`);
        } else ctx.log.warn(`${version} (${place}): changed by someone else while rewrapping; left as it is now (run rewrap again)`);
      }
    }
  } catch (err) {
    failure = err;
  }
  const inUse = new Set<string>();
  if (!dryRun) for (const place of PLACES) for (const e of (await ks.readWrapped(place).catch(() => null))?.doc.keys.values() ?? []) inUse.add(e.kek);
  const result: RewrapResult = {
    dryRun,
    keyring,
    target: opts.to ?? ks.wrapper.describe(),
    entries,
    unusedKeks: dryRun || failure ? [] : [...before].filter((k) => !inUse.has(k)).sort(),
    keksInUse: [...(dryRun ? before : inUse)].sort(),
  };
  if (failure) {
    const done = entries.filter((e) => e.state === 'rewrapped').map((e) => e.version);
    // The failure is what the operator must see; a database that cannot take its record too is a warning.
    await audit(ctx, 'failed', {
      target: result.target,
      rewrappedBeforeFailure: done,
      error: failure instanceof Error ? failure.message : String(failure),
    }).catch((err: unknown) => ctx.log.warn(`could not record the failed rewrap in the audit: ${err instanceof Error ? err.message : String(err)}`));
    throw failure;
  }
  return result;
}

/** A `rewrap` audit row; KEKs are key ARNs or Transit key names, never key material. */
async function audit(ctx: CoreContext, outcome: 'ok' | 'failed', details: Record<string, unknown>): Promise<void> {
  await appendAudit(ctx.db, { keyring: ctx.config.keyring, action: 'rewrap', actor: ctx.actor, outcome, details }, ctx.now());
}
