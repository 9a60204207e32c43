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
import { fingerprint, generateKey, isVersionName } from '../../crypto/keys.js';
import { nextStep, phasesFor, rule } from '../../rotation/machine.js';
import { insertRotation, insertVersion, markCompromised, openRotation, RotationAlreadyOpen, type Rotation } from '../../rotation/store.js';
import type { CoreContext } from '../context.js';
import { UsageError } from '../../base/errors.js';
import { checkGuards, refuse } from './guard.js';
import { prepare, snapshot } from './prepare.js';
import { syncKeystore } from './sync.js';
import { transition } from './transition.js';
import { nextVersionName } from './material.js';
import { approvalDetails, approvalFor, bindingFor, bindingOfRotation, consumeApproval, openingApproved } from '../approvals.js';

export interface GenerateOptions {
  emergency: boolean;
  reason?: string | undefined;
  /** The key that is compromised (default: the current primary). */
  compromised?: string | undefined;
  /** With --emergency: act now, collect the approvals afterwards (`approvals.breakGlass`). */
  breakGlass?: boolean | undefined;
}

export interface GenerateResult {
  rotation: Rotation;
  newVersion: string;
  fingerprint: string;
  /** True when a key left by an interrupted generate was adopted instead of creating one. */
  resumed: boolean;
  /** True when an open routine rotation was turned into an emergency one instead of opening another. */
  escalated: boolean;
}

export async function generate(ctx: CoreContext, opts: GenerateOptions): Promise<GenerateResult> {
  if (opts.emergency && !opts.reason?.trim()) {
    throw new UsageError(
      '--emergency needs --reason TEXT (recorded in the audit)',
      'e.g. keyctl generate --emergency --reason "INC-1234: key exposed in a log"',
    );
  }
  if (opts.compromised !== undefined && !opts.emergency)
    throw new UsageError('--compromised goes with --emergency', 'e.g. keyctl generate --emergency --compromised v3 --reason "INC-1234: …"');
  if (opts.compromised !== undefined && !isVersionName(opts.compromised))
    throw new UsageError(`--compromised expects a key version such as v3, found "${opts.compromised}"`);
  const { db, keystore, config } = ctx;
  const keyring = config.keyring;
  const state = await prepare(ctx);
  const s = await snapshot(ctx, state);
  let rotation = state.rotation;
  const input = opts.compromised ? { compromised: opts.compromised } : {};
  if (rotation && !phasesFor('generate').includes(rotation.phase)) {
    if (!opts.emergency) {
      return refuse(ctx, {
        action: 'generate',
        rotation,
        reason: `rotation #${rotation.id} is already open (phase ${rotation.phase}); a keyring has one rotation at a time`,
        hint: `next: ${nextStep(rotation.phase)}; or abandon it with \`keyctl rollback\``,
        details: { guard: 'phase' },
      });
    }
    // An emergency while a routine rotation is open: when the compromised key is the one that
    // rotation replaces, the rotation itself becomes the emergency (audited as `escalate`).
    if (!rule('escalate').from.includes(rotation.phase)) {
      return refuse(ctx, {
        action: 'escalate',
        rotation,
        reason: `rotation #${rotation.id} is in phase ${rotation.phase}: an emergency rotation cannot start until it is closed`,
        hint: `next: ${nextStep(rotation.phase)}; then \`keyctl generate --emergency --reason "…"\``,
        details: { guard: 'phase' },
      });
    }
    const r = rotation;
    const approval = await approvalFor(ctx, bindingOfRotation(r, 'generate', true), { breakGlass: opts.breakGlass, reason: opts.reason, emergency: true });
    await checkGuards(ctx, 'escalate', s, { ...input, approval });
    const done = await transition(ctx, {
      rule: 'escalate',
      rotation: r,
      changes: { emergency: true, reason: opts.reason ?? null, compromisedVersion: r.oldVersion },
      details: { emergency: true, reason: opts.reason ?? null, compromised: r.oldVersion, ...approvalDetails(approval) },
      apply: (trx) => markCompromised(trx, keyring, r.oldVersion),
      after: (trx, at) => consumeApproval(ctx, trx, approval, r.id, at),
    });
    await syncKeystore(ctx);
    const newV = state.versions.find((v) => v.version === r.newVersion);
    return { rotation: done, newVersion: r.newVersion, fingerprint: newV?.fingerprint ?? '', resumed: false, escalated: true };
  }
  if (opts.breakGlass && !opts.emergency)
    throw new UsageError('--break-glass goes with --emergency', 'e.g. keyctl generate --emergency --break-glass --reason "INC-1234: …"');
  // The two-person rule guards opening a rotation. Resuming an interrupted generate needs nothing
  // more when its opening consumed an approval; a rotation row nobody approved (written into the
  // database by hand, or opened before the policy) needs one for itself.
  const emergency0 = opts.emergency || Boolean(rotation?.emergency);
  const approval = rotation
    ? (await openingApproved(ctx, rotation))
      ? null
      : await approvalFor(ctx, bindingOfRotation(rotation, 'generate', emergency0), { breakGlass: opts.breakGlass, reason: opts.reason, emergency: emergency0 })
    : await approvalFor(ctx, await bindingFor(ctx, 'generate', { emergency: opts.emergency }), {
        breakGlass: opts.breakGlass,
        reason: opts.reason,
        emergency: opts.emergency,
      });
  if (!rotation) await checkGuards(ctx, 'open', s, { ...input, approval });
  else await checkGuards(ctx, 'generate', s, { ...input, approval });
  const resumeApproval = rotation ? approval : null;

  const published = (await keystore.read())!;
  if (!rotation) {
    const newVersion = await nextVersionName(keystore, keyring, state.versions);
    try {
      rotation = await insertRotation(db, {
        keyring,
        oldVersion: state.primary,
        newVersion,
        emergency: opts.emergency,
        reason: opts.reason ?? null,
        compromisedVersion: opts.emergency ? state.primary : null,
        openedBy: ctx.actor,
        at: ctx.now(),
      });
      if (approval) {
        // Its own transaction: should keyctl die before it, the request still cannot be used again
        // (it names the rotation before this one).
        const opened = rotation;
        await ctx.db.knex.transaction((trx) => consumeApproval(ctx, trx, approval, opened.id, ctx.now()));
      }
    } catch (err) {
      if (!(err instanceof RotationAlreadyOpen)) throw err;
      const other = await openRotation(db, keyring);
      return refuse(ctx, {
        action: 'generate',
        rotation: other,
        reason: `another rotation${other ? ` (#${other.id}, by ${other.openedBy})` : ''} was opened at the same moment`,
        hint: 'run `keyctl status` to see it',
      });
    }
  }

  const newVersion = rotation.newVersion;
  let key = published.doc.keys.get(newVersion);
  const resumed = key !== undefined;
  if (!key) {
    key = keystore.newKey ? await keystore.newKey(keyring, newVersion) : generateKey();
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
    rule: 'generate',
    rotation,
    changes: { emergency, reason, ...(emergency ? { compromisedVersion: rotation.oldVersion } : {}) },
    details: { fingerprint: fp, emergency, reason, resumed, ...approvalDetails(resumeApproval) },
    apply: async (trx, at) => {
      await insertVersion(db, { keyring, version: newVersion, state: 'decrypt-only', fingerprint: fp, compromised: false, createdAt: at }, trx);
      if (emergency) await markCompromised(trx, keyring, rotation!.oldVersion);
    },
    after: (trx, at) => consumeApproval(ctx, trx, resumeApproval, rotation!.id, at),
  });
  return { rotation: done, newVersion, fingerprint: fp, resumed, escalated: false };
}
