/**
 * dual-key, promote, retire and rollback: each checks its guards (recording refusals), then
 * changes phase and registry in one compare-and-set transaction, then brings the keystore in line.
 */
import type { Knex } from 'knex';
import type { CoreContext } from '../context.js';
import { UsageError } from '../errors.js';
import { markMaterialDestroyed, setVersionState } from '../registry.js';
import { NEXT_STEP, type Phase, type Rotation } from '../rotations.js';
import { countAllTargets, notUnder } from './counts.js';
import { refuse } from './guard.js';
import { prepare, type Prepared } from './prepare.js';
import { syncKeystore } from './sync.js';
import { transition } from './transition.js';

const DAY_MS = 86_400_000;

/** What `policy.retiredKeys` does to a retired key's material: destroyed, or kept in the archive. */
function retiredMaterial(ctx: CoreContext): 'destroyed' | 'archived' {
  return ctx.config.policy.retiredKeys === 'destroy' ? 'destroyed' : 'archived';
}

/** Registry side of retiring a version (the keystore follows in syncKeystore). */
async function retireVersion(ctx: CoreContext, trx: Knex.Transaction, keyring: string, version: string, at: Date): Promise<void> {
  await setVersionState(trx, ctx.db, keyring, version, 'retired', at);
  if (retiredMaterial(ctx) === 'destroyed') await markMaterialDestroyed(trx, keyring, version);
}

/** The open rotation, in one of `phases`, or a recorded refusal naming the next step. */
export async function requirePhase(ctx: CoreContext, state: Prepared, action: string, phases: readonly Phase[], why = ''): Promise<Rotation> {
  const r = state.rotation;
  if (!r) {
    return refuse(ctx, { action, rotation: null, reason: `no rotation is open for keyring ${ctx.config.keyring}`, hint: 'start one with `keyctl generate`' });
  }
  if (!phases.includes(r.phase)) {
    return refuse(ctx, {
      action,
      rotation: r,
      reason: `${action} needs phase ${phases.join(' or ')}${why}, but rotation #${r.id} is in phase ${r.phase}`,
      hint: `next: ${NEXT_STEP[r.phase]}`,
    });
  }
  return r;
}

function secondsLeft(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.ceil(s / 60)} min`;
  if (s < 2 * 86400) return `${Math.ceil(s / 3600)} h`;
  return `${Math.ceil(s / 86400)} days`;
}

export async function dualKey(ctx: CoreContext): Promise<Rotation> {
  const state = await prepare(ctx);
  const r = await requirePhase(ctx, state, 'dual-key', ['generated']);
  const newV = state.versions.find((v) => v.version === r.newVersion)!;
  const waitMs = ctx.config.policy.minPropagationSeconds * 1000;
  const since = Math.max(r.phaseChangedAt.getTime(), newV.publishedAt?.getTime() ?? ctx.now().getTime());
  const left = since + waitMs - ctx.now().getTime();
  if (!r.emergency && left > 0) {
    return refuse(ctx, {
      action: 'dual-key',
      rotation: r,
      reason: `${r.newVersion} was published ${secondsLeft(ctx.now().getTime() - since)} ago; policy.minPropagationSeconds asks for ${ctx.config.policy.minPropagationSeconds} s so every reader has it before anyone writes with it`,
      hint: `wait ${secondsLeft(left)} more (make sure every application instance has reloaded the keyring), then run \`keyctl dual-key\` again`,
      details: { secondsLeft: Math.ceil(left / 1000) },
    });
  }
  const done = await transition(ctx, {
    action: 'dual-key',
    rotation: r,
    to: 'dual_key',
    details: { emergency: r.emergency, propagationSkipped: r.emergency && left > 0 },
    apply: async (trx, at) => {
      await setVersionState(trx, ctx.db, r.keyring, r.newVersion, 'primary', at);
      await setVersionState(trx, ctx.db, r.keyring, r.oldVersion, 'decrypt-only', at);
    },
  });
  await syncKeystore(ctx);
  return done;
}

export async function promote(ctx: CoreContext): Promise<Rotation> {
  const state = await prepare(ctx);
  const r = await requirePhase(ctx, state, 'promote', ['verified'], ' (verify has to pass since the last reencrypt)');
  const totals = await countAllTargets(ctx);
  const left = notUnder(totals, r.newVersion);
  if (left > 0 || totals.unparseable > 0) {
    return refuse(ctx, {
      action: 'promote',
      rotation: r,
      reason: `a fresh count finds ${left} value(s) not under ${r.newVersion} and ${totals.unparseable} unparseable (written since verify?)`,
      hint: 'run `keyctl reencrypt`, then `keyctl verify`, then promote again',
      details: { byVersion: totals.byVersion, unparseable: totals.unparseable },
    });
  }
  const deadline = new Date(ctx.now().getTime() + (r.emergency ? 0 : ctx.config.policy.rollbackWindowDays * DAY_MS));
  const done = await transition(ctx, {
    action: 'promote',
    rotation: r,
    to: 'promoted',
    rowsAffected: 0,
    rotationColumns: { rollback_deadline: ctx.db.adapter.toDbTime(deadline) },
    details: { byVersion: totals.byVersion, rollbackDeadline: deadline.toISOString() },
    apply: async (trx, at) => setVersionState(trx, ctx.db, r.keyring, r.oldVersion, 'archived', at),
  });
  await syncKeystore(ctx);
  return { ...done, rollbackDeadline: deadline };
}

export interface ForceOptions {
  force?: boolean | undefined;
  reason?: string | undefined;
}

export async function retire(ctx: CoreContext, opts: ForceOptions): Promise<Rotation> {
  if (opts.force && !opts.reason?.trim()) throw new UsageError('--force needs --reason TEXT (recorded in the audit)');
  const state = await prepare(ctx);
  const r = await requirePhase(ctx, state, 'retire', ['promoted']);
  const deadline = r.rollbackDeadline?.getTime() ?? 0;
  const early = ctx.now().getTime() < deadline;
  if (early && !r.emergency && !opts.force) {
    return refuse(ctx, {
      action: 'retire',
      rotation: r,
      reason: `the rollback window of rotation #${r.id} ends ${new Date(deadline).toISOString()} (${secondsLeft(deadline - ctx.now().getTime())} from now)`,
      hint: 'retire then, or now with `keyctl retire --force --reason "…"` if rollback will not be needed',
    });
  }
  const totals = await countAllTargets(ctx);
  const old = totals.byVersion[r.oldVersion] ?? 0;
  if (old > 0) {
    return refuse(ctx, {
      action: 'retire',
      rotation: r,
      reason: `${old} value(s) are still under ${r.oldVersion}; destroying it now would make them unreadable`,
      hint: 'roll back with `keyctl rollback` (restores the old key), or find the writer still using it',
      details: { byVersion: totals.byVersion },
    });
  }
  const done = await transition(ctx, {
    action: 'retire',
    rotation: r,
    to: 'retired',
    rowsAffected: 0,
    details: { material: retiredMaterial(ctx), forced: Boolean(early && opts.force), reason: opts.reason ?? null, emergency: r.emergency },
    apply: (trx, at) => retireVersion(ctx, trx, r.keyring, r.oldVersion, at),
  });
  await syncKeystore(ctx);
  return done;
}

const ROLLBACK_FROM: readonly Phase[] = ['generated', 'dual_key', 'reencrypting', 'reencrypted', 'verified', 'promoted'];

export async function rollback(ctx: CoreContext, opts: ForceOptions): Promise<Rotation> {
  if (opts.force && !opts.reason?.trim()) throw new UsageError('--force needs --reason TEXT (recorded in the audit)');
  const state = await prepare(ctx);
  const r = await requirePhase(ctx, state, 'rollback', ROLLBACK_FROM);
  const old = state.versions.find((v) => v.version === r.oldVersion)!;
  // From `generated` the old key never stopped being primary: abandoning the new key restores nothing.
  if (old.compromised && !opts.force && r.phase !== 'generated') {
    return refuse(ctx, {
      action: 'rollback',
      rotation: r,
      reason: `${r.oldVersion} is marked compromised${r.reason ? ` (${r.reason})` : ''}; rolling back would make it primary again`,
      hint: 'finish the rotation instead; only if you must, `keyctl rollback --force --reason "…"`',
    });
  }
  // Before dual-key nobody wrote with the new key: the rotation closes at once. Later, values
  // (and writers that have not reloaded yet) may use it, so it stays readable until reencrypt and
  // verify have moved everything back.
  const closeNow = r.phase === 'generated';
  const done = await transition(ctx, {
    action: 'rollback',
    rotation: r,
    to: closeNow ? 'rolled_back' : 'rolling_back',
    details: { reason: opts.reason ?? null, forcedCompromised: old.compromised, from: r.phase },
    apply: async (trx, at) => {
      await setVersionState(trx, ctx.db, r.keyring, r.oldVersion, 'primary', at);
      if (closeNow) await retireVersion(ctx, trx, r.keyring, r.newVersion, at);
      else {
        await setVersionState(trx, ctx.db, r.keyring, r.newVersion, 'decrypt-only', at);
      }
    },
  });
  await syncKeystore(ctx);
  return done;
}

/** Closing a rollback (called by verify once nothing is left under the new version). */
export async function finishRollback(ctx: CoreContext, r: Rotation, details: Record<string, unknown>): Promise<Rotation> {
  const done = await transition(ctx, {
    action: 'verify',
    rotation: r,
    to: 'rolled_back',
    rowsAffected: 0,
    details: { ...details, material: retiredMaterial(ctx) },
    apply: (trx, at) => retireVersion(ctx, trx, r.keyring, r.newVersion, at),
  });
  await syncKeystore(ctx);
  return done;
}
