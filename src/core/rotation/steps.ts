/**
 * dual-key, promote, retire and rollback: each asks the machine (src/rotation/machine.ts) whether
 * the move is allowed now — recording refusals — then changes phase and registry in one
 * compare-and-set transaction, then brings the keystore in line.
 */
import path from 'node:path';
import type { Knex } from 'knex';
import { backupHolding } from '../backup-coverage.js';
import { DAY_MS, GUARDS, rule } from '../../rotation/machine.js';
import { markMaterialDestroyed, setVersionState, type Rotation } from '../../rotation/store.js';
import type { CoreContext } from '../context.js';
import { UsageError } from '../../base/errors.js';
import { checkGuards, requireRotation } from './guard.js';
import { scanWithoutKeys } from './decryption-scan.js';
import { prepare, snapshot } from './prepare.js';
import { syncKeystore } from './sync.js';
import { transition } from './transition.js';
import { approvalDetails, approvalFor, bindingOfRotation, consumeApproval, type ApprovalAction, type ApprovalEvidence } from '../approvals.js';

/**
 * What happens to a retired key's material at retire: destroyed only under `retiredKeys: destroy`
 * with `retiredKeyRetentionDays: 0`; otherwise kept in the archive (until `keyctl purge`, after the
 * retention, under `destroy`).
 */
export function retiredMaterial(ctx: CoreContext): 'destroyed' | 'archived' {
  return ctx.config.policy.retiredKeys === 'destroy' && ctx.config.policy.retiredKeyRetentionDays === 0 ? 'destroyed' : 'archived';
}

/** Registry side of retiring a version (the keystore follows in syncKeystore). */
async function retireVersion(ctx: CoreContext, trx: Knex.Transaction, keyring: string, version: string, at: Date): Promise<void> {
  await setVersionState(trx, ctx.db, keyring, version, 'retired', at);
  if (retiredMaterial(ctx) === 'destroyed') await markMaterialDestroyed(trx, keyring, version);
}

export interface ForceOptions {
  force?: boolean | undefined;
  reason?: string | undefined;
  /** Emergency rotations: act before the approvals, which are collected afterwards (needs `approvals.breakGlass`). */
  breakGlass?: boolean | undefined;
}

/** The two-person rule's evidence for `action` on rotation `r` (null: the policy needs none). */
function approvalOf(ctx: CoreContext, r: Rotation, action: ApprovalAction, opts: ForceOptions): Promise<ApprovalEvidence> {
  return approvalFor(ctx, bindingOfRotation(r, action), { breakGlass: opts.breakGlass, reason: opts.reason, emergency: r.emergency });
}

function checkForce(opts: ForceOptions): void {
  if (opts.force && !opts.reason?.trim()) throw new UsageError('--force needs --reason TEXT (recorded in the audit)');
}

/**
 * How long until dual-key's propagation delay (policy.minPropagationSeconds) has passed, in ms
 * (0: now), for `dual-key --wait`. A rotation not in a phase dual-key starts from is refused here,
 * as dual-key itself would refuse it, rather than waited for.
 */
export async function dualKeyWaitMs(ctx: CoreContext): Promise<{ ms: number; version: string }> {
  const s = await snapshot(ctx, await prepare(ctx));
  const r = await requireRotation(ctx, 'dual-key', s);
  const refusal = GUARDS.propagationElapsed.check(s);
  const left = refusal?.details?.secondsLeft;
  return { ms: typeof left === 'number' ? left * 1000 : 0, version: r.newVersion };
}

export async function dualKey(ctx: CoreContext): Promise<Rotation> {
  const state = await prepare(ctx);
  const s = await snapshot(ctx, state);
  const r = await requireRotation(ctx, 'dual-key', s);
  const backup = await backupHolding(ctx, r.newVersion, r.openedAt);
  await checkGuards(ctx, 'dual-key', s, { backup });
  const newV = state.versions.find((v) => v.version === r.newVersion);
  const since = Math.max(r.phaseChangedAt.getTime(), newV?.publishedAt?.getTime() ?? s.now.getTime());
  const done = await transition(ctx, {
    rule: 'dual-key',
    rotation: r,
    details: {
      backup: backup.file ? path.basename(backup.file) : null,
      emergency: r.emergency,
      propagationSkipped: r.emergency && since + ctx.config.policy.minPropagationSeconds * 1000 > s.now.getTime(),
    },
    apply: async (trx, at) => {
      await setVersionState(trx, ctx.db, r.keyring, r.newVersion, 'primary', at);
      await setVersionState(trx, ctx.db, r.keyring, r.oldVersion, 'decrypt-only', at);
    },
  });
  await syncKeystore(ctx);
  return done;
}

export async function promote(ctx: CoreContext, opts: ForceOptions = {}): Promise<Rotation> {
  checkForce(opts);
  const state = await prepare(ctx);
  const s = await snapshot(ctx, state, { counts: true });
  const r = await requireRotation(ctx, 'promote', s);
  const approval = await approvalOf(ctx, r, 'promote', opts);
  const forced = await checkGuards(ctx, 'promote', s, { force: Boolean(opts.force), ...(opts.reason ? { reason: opts.reason } : {}), approval });
  const deadline = new Date(s.now.getTime() + (r.emergency ? 0 : ctx.config.policy.rollbackWindowDays * DAY_MS));
  const done = await transition(ctx, {
    rule: 'promote',
    rotation: r,
    rowsAffected: 0,
    changes: { rollbackDeadline: deadline },
    details: {
      byVersion: s.counts?.byVersion,
      rollbackDeadline: deadline.toISOString(),
      verify: { scope: r.verifyScope, outcome: r.verifyOutcome },
      forced,
      reason: opts.reason ?? null,
      ...approvalDetails(approval),
    },
    apply: async (trx, at) => setVersionState(trx, ctx.db, r.keyring, r.oldVersion, 'archived', at),
    after: (trx, at) => consumeApproval(ctx, trx, approval, r.id, at),
  });
  await syncKeystore(ctx);
  return done;
}

/**
 * Before key material is destroyed: decrypt every value with the keys that will remain (null when
 * policy keeps the material, so nothing is destroyed).
 */
async function scanWithout(ctx: CoreContext, doomed: string): Promise<{ failures: number; checked: number } | null> {
  if (retiredMaterial(ctx) !== 'destroyed') return null;
  const scan = await scanWithoutKeys(ctx, [doomed]);
  return { failures: scan.failureCount, checked: scan.valuesChecked };
}

export async function retire(ctx: CoreContext, opts: ForceOptions): Promise<Rotation> {
  checkForce(opts);
  const state = await prepare(ctx);
  const s = await snapshot(ctx, state, { counts: true });
  const r = await requireRotation(ctx, 'retire', s);
  const approval = await approvalOf(ctx, r, 'retire', opts);
  const force = { force: Boolean(opts.force), ...(opts.reason ? { reason: opts.reason } : {}), approval };
  // The cheap guards first; the decryption scan only when they pass.
  await checkGuards(ctx, 'retire', s, force, ['remainingKeysReadEverything']);
  const destructionScan = await scanWithout(ctx, r.oldVersion);
  const forced = await checkGuards(ctx, 'retire', s, { ...force, destructionScan });
  const done = await transition(ctx, {
    rule: 'retire',
    rotation: r,
    rowsAffected: 0,
    details: {
      material: retiredMaterial(ctx),
      forced: forced.length > 0,
      forcedGuards: forced,
      reason: opts.reason ?? null,
      emergency: r.emergency,
      destructionScan,
      ...approvalDetails(approval),
    },
    apply: (trx, at) => retireVersion(ctx, trx, r.keyring, r.oldVersion, at),
    after: (trx, at) => consumeApproval(ctx, trx, approval, r.id, at),
  });
  await syncKeystore(ctx);
  return done;
}

export async function rollback(ctx: CoreContext, opts: ForceOptions): Promise<Rotation> {
  checkForce(opts);
  const state = await prepare(ctx);
  const s = await snapshot(ctx, state);
  const r = await requireRotation(ctx, 'rollback', s);
  // Before dual-key nobody wrote with the new key: the rotation closes at once (`abandon`). Later,
  // values (and writers that have not reloaded yet) may use it, so it stays readable until
  // reencrypt and verify have moved everything back.
  const id = rule('abandon').from.includes(r.phase) ? 'abandon' : 'rollback';
  const approval = await approvalOf(ctx, r, 'rollback', opts);
  const force = { force: Boolean(opts.force), ...(opts.reason ? { reason: opts.reason } : {}), approval };
  await checkGuards(ctx, id, s, force, ['remainingKeysReadEverything']);
  const destructionScan = id === 'abandon' ? await scanWithout(ctx, r.newVersion) : null;
  const forced = await checkGuards(ctx, id, s, { ...force, destructionScan });
  const old = state.versions.find((v) => v.version === r.oldVersion);
  const done = await transition(ctx, {
    rule: id,
    rotation: r,
    details: {
      destructionScan,
      ...(id === 'abandon' ? { material: retiredMaterial(ctx) } : {}),
      reason: opts.reason ?? null,
      forcedCompromised: forced.includes('oldKeyNotCompromised') || forced.includes('emergencyNotAbandoned'),
      compromised: Boolean(old?.compromised),
      from: r.phase,
      ...approvalDetails(approval),
    },
    after: (trx, at) => consumeApproval(ctx, trx, approval, r.id, at),
    // The verify evidence was about the forward direction.
    changes: { verify: null },
    apply: async (trx, at) => {
      await setVersionState(trx, ctx.db, r.keyring, r.oldVersion, 'primary', at);
      if (id === 'abandon') await retireVersion(ctx, trx, r.keyring, r.newVersion, at);
      else await setVersionState(trx, ctx.db, r.keyring, r.newVersion, 'decrypt-only', at);
    },
  });
  await syncKeystore(ctx);
  return done;
}

/** Closing a rollback (called by verify once nothing is left under the new version). */
export async function finishRollback(ctx: CoreContext, r: Rotation, details: Record<string, unknown>, verify: Rotation['verifyScope']): Promise<Rotation> {
  const done = await transition(ctx, {
    rule: 'finish-rollback',
    rotation: r,
    unchangedSinceRead: true,
    rowsAffected: 0,
    // The full verify that just passed decrypted every value, each under the old key (the primary
    // again): it stands in for the decryption scan before the new key is destroyed.
    details: { ...details, material: retiredMaterial(ctx), destructionScan: 'the full verify that closes the rollback' },
    changes: { verify: verify ? { scope: verify, outcome: 'passed', at: ctx.now() } : null },
    apply: (trx, at) => retireVersion(ctx, trx, r.keyring, r.newVersion, at),
  });
  await syncKeystore(ctx);
  return done;
}
