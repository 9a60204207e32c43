/**
 * `keyctl reencrypt --all-tenants`: one keyset pass over each target table for every tenant at
 * once (docs/tenants.md). Each row is rewritten under its own tenant's primary, by the same
 * engine, compare-and-set, throttle and checkpoints as a single keyring's pass; a row of a tenant
 * that takes no part (no rotation in a re-encryption phase, no keyring, shredded) is left alone.
 *
 * Every tenant whose open rotation is in dual_key, reencrypting or rolling_back takes part. The
 * pass's cursor is saved under the lowest of their rotation ids, keyed by the set of tenants,
 * rotations and target versions, so a run killed and started again with the same set resumes
 * where it stopped; a different set starts a new pass (safe: a value already under its target is
 * never touched again). Afterwards each tenant's phase moves on its own, with its own audit row.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { UsageError } from '../../base/errors.js';
import { rememberReads } from '../../keystore/remembered.js';
import type { TargetConfig } from '../../config/schema.js';
import { countNotUnderByRing, reencryptTable, type TableResult, type ValueFailure } from '../../reencrypt/engine.js';
import type { Ring } from '../../reencrypt/plan.js';
import { ThreadPlanner } from '../../reencrypt/planner.js';
import { isPhase, movesBack, rule, targetPhase } from '../../rotation/machine.js';
import { checkpointStore, openPhases, openRotations, type Rotation } from '../../rotation/store.js';
import type { CoreContext } from '../context.js';
import { checkKeysUnique, checkTargets } from '../targets.js';
import { liveTenants, requireTenancy, tenantContext } from '../tenants.js';
import { checkGuards } from './guard.js';
import { loadAllKeys } from './material.js';
import { prepare, snapshot } from './prepare.js';
import { checkPace, recordPasses, targetsOf, throttleFor, type ReencryptOptions } from './reencrypt.js';
import { transitionMany, wasMovedByAnother } from './transition.js';

/** Tenants prepared at once (keystore reads and database queries in flight together). */
const PREPARE_CONCURRENCY = 8;

/** Phases a tenant's rotation takes part in a pass from. */
const PASS_PHASES: readonly string[] = (() => {
  const start = rule('reencrypt-start');
  // Not reencrypted or verified: a pass from there goes back along the procedure (run that tenant alone).
  const forward = start.from.filter((p) => isPhase(p) && !movesBack(p, targetPhase(start, p)));
  return [...forward, ...rule('reencrypt-done').from, ...rule('reencrypt-back').from];
})();

export interface TenantPassResult {
  tenant: string;
  rotationId: number;
  target: string;
  /** The rotation's phase after the pass. */
  phase: string;
  /** Values of this tenant still not under its target. */
  remaining: number;
}

export interface TenantsReencryptReport {
  dryRun: boolean;
  tenants: TenantPassResult[];
  /** Live tenants that took no part, and why. */
  skipped: Array<{ tenant: string; reason: string }>;
  tables: TableResult[];
  failures: ValueFailure[];
  remaining: number;
  interrupted: boolean;
  abortedBecause?: string;
  stoppedBecause?: string;
}

interface Part {
  id: string;
  t: CoreContext;
  rotation: Rotation;
  target: string;
  keys: Map<string, Buffer>;
  state: Awaited<ReturnType<typeof prepare>>;
}

export async function reencryptAllTenants(ctx: CoreContext, opts: ReencryptOptions): Promise<TenantsReencryptReport> {
  const tenancy = requireTenancy(ctx.config);
  const probe = checkPace(ctx, opts);
  const targets = targetsOf(ctx, opts);
  if (opts.shard)
    throw new UsageError('--shard does not go with --all-tenants', 'run --all-tenants in one process, or shard one tenant: --tenant ID --shard i/N');
  const unsupported = targets.filter((t) => t.codec !== 'aes-gcm' || t.from !== undefined || t.blindIndexes.length > 0);
  if (unsupported.length > 0)
    throw new UsageError(
      `reencrypt --all-tenants rewrites aes-gcm targets without from: or blind indexes; ${unsupported.map((t) => t.table).join(', ')} ${unsupported.length === 1 ? 'has' : 'have'} them`,
      'run those tenant by tenant: keyctl reencrypt --tenant ID (or --table for the other targets)',
    );
  await checkTargets(ctx.db, ctx.config);
  await checkKeysUnique(ctx.db, ctx.config, targets);

  const parts: Part[] = [];
  const skipped: TenantsReencryptReport['skipped'] = [];
  const open = await openRotations(ctx.db);
  const taking: Array<{ id: string; t: CoreContext; rotation: Rotation }> = [];
  for (const id of await liveTenants(ctx)) {
    const t = tenantContext(ctx, id);
    const rotation = open.get(t.config.keyring);
    if (!rotation || !PASS_PHASES.includes(rotation.phase))
      skipped.push({ tenant: id, reason: rotation ? `rotation #${rotation.id} is in phase ${rotation.phase}` : 'no rotation open' });
    else taking.push({ id, t, rotation });
  }
  // Each tenant's keyring checked and its keys loaded, a few at a time (keystore reads overlap).
  let next = 0;
  const prepared = new Array<Part>(taking.length);
  const worker = async () => {
    for (let i = next++; i < taking.length; i = next++) {
      const { id, t, rotation } = taking[i]!;
      // Each of the tenant's documents read once for all of prepare's checks and its keys.
      const once = { ...t, keystore: rememberReads(t.keystore) };
      const state = await prepare(once, { targetsChecked: true });
      const keys = await loadAllKeys(once.keystore, t.config.keyring);
      prepared[i] = { id, t, rotation: state.rotation ?? rotation, target: state.primary, keys, state };
    }
  };
  await Promise.all(Array.from({ length: Math.min(PREPARE_CONCURRENCY, taking.length) }, worker));
  parts.push(...prepared);
  const report: TenantsReencryptReport = { dryRun: opts.dryRun, tenants: [], skipped, tables: [], failures: [], remaining: 0, interrupted: false };
  if (parts.length === 0) return report;

  if (!opts.dryRun) {
    // Every starting tenant's move in one transaction (one commit, not one per tenant).
    const starting = parts.filter((p) => rule('reencrypt-start').from.includes(p.rotation.phase));
    const moved = await transitionMany(
      starting.map((p) => [
        p.t,
        {
          rule: 'reencrypt-start',
          rotation: p.rotation,
          alreadyThereIsFine: true,
          changes: { verify: null },
          details: {
            target: p.target,
            pending: null,
            allTenants: true,
            batchSize: opts.batchSize ?? null,
            chunkTimeMs: opts.chunkTimeMs ?? 500,
            table: opts.table ?? null,
          },
        },
      ]),
    );
    starting.forEach((p, i) => {
      p.rotation = moved[i]!;
    });
  }
  const set = parts
    .map((p) => `${p.id}:${p.rotation.id}:${p.target}`)
    .sort()
    .join(',');
  const passTarget = `*${createHash('sha256').update(set).digest('hex').slice(0, 8)}`;
  const anchorRotation = Math.min(...parts.map((p) => p.rotation.id));
  const rings = new Map<string, Ring>(parts.map((p) => [p.id, { keys: p.keys, target: p.target }]));
  // Per tenant, its values not under its own target: one scan per distinct target (usually one).
  const byTarget = new Map<string, Part[]>();
  for (const p of parts) {
    const of = byTarget.get(p.target);
    if (of) of.push(p);
    else byTarget.set(p.target, [p]);
  }
  const remainingOf = async (table: TargetConfig): Promise<Map<string, number>> => {
    const out = new Map<string, number>();
    for (const [target, of] of byTarget) {
      const counts = await countNotUnderByRing(ctx.db, table, tenancy.column, target);
      for (const p of of) out.set(p.id, counts.get(p.id) ?? 0);
    }
    return out;
  };
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  // Stop (after saving the cursor) when any taking part was moved on meanwhile (a rollback, say).
  const phaseChanged = async (): Promise<string | null> => {
    const now = await openPhases(ctx.db);
    for (const p of parts) {
      const r = now.get(p.t.config.keyring);
      if (r?.id === p.rotation.id && r.phase === p.rotation.phase) continue;
      return `rotation #${p.rotation.id} of tenant ${p.id} left phase ${p.rotation.phase} while reencrypt was running (now ${r?.id === p.rotation.id ? r.phase : 'closed'})`;
    }
    return null;
  };
  const throttle = throttleFor(opts, probe);
  /** Per table, what the engine counted after its last pass (reused when the table was finished). */
  const countedAfterPass = new Map<string, Map<string, number>>();
  const started = ctx.now();
  const planner = ThreadPlanner.create(opts.cryptoWorkers ?? Math.max(1, Math.min(4, availableParallelism())), new Map(), '', rings);
  try {
    for (const table of targets) {
      const res = await reencryptTable(table, {
        db: ctx.db,
        planner,
        target: passTarget,
        rotationId: anchorRotation,
        checkpoints: checkpointStore,
        dryRun: opts.dryRun,
        throttle,
        ringColumn: tenancy.column,
        countRemaining: async (t) => {
          const m = await remainingOf(t);
          countedAfterPass.set(t.table, m);
          return sum(m);
        },
        now: ctx.now,
        ...(opts.onRetry ? { onRetry: opts.onRetry } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
        ...(opts.afterRead ? { afterRead: opts.afterRead } : {}),
        ...(opts.dryRun ? {} : { shouldStop: phaseChanged }),
      });
      report.tables.push(res);
      if (res.interrupted) break;
    }
  } finally {
    await planner.close();
  }
  report.failures = report.tables.flatMap((t) => t.failures);
  report.interrupted = report.tables.some((t) => t.interrupted);
  const abortedBecause = report.tables.find((t) => t.abortedBecause)?.abortedBecause;
  const stoppedBecause = report.tables.find((t) => t.stoppedBecause)?.stoppedBecause;
  if (abortedBecause) report.abortedBecause = abortedBecause;
  if (stoppedBecause) report.stoppedBecause = stoppedBecause;

  // What is left, per tenant, over every target (not only --table's).
  const left = new Map<string, number>(parts.map((p) => [p.id, 0]));
  const finished = new Set(report.tables.filter((t) => !t.interrupted).map((t) => t.table));
  for (const table of ctx.config.targets) {
    const counted = finished.has(table.table) ? countedAfterPass.get(table.table) : undefined;
    for (const [id, n] of counted ?? (await remainingOf(table))) left.set(id, (left.get(id) ?? 0) + n);
  }
  report.remaining = sum(left);
  const seconds = (ctx.now().getTime() - started.getTime()) / 1000;
  const tables = report.tables.map((t) => ({ table: t.table, rowsScanned: t.rowsScanned, rowsUpdated: t.rowsUpdated, passes: t.passes }));
  const rotationNow = opts.dryRun ? new Map<string, Rotation>() : await openRotations(ctx.db);
  const finishing: Array<{ p: Part; rotation: Rotation; details: Record<string, unknown> }> = [];
  const records: Array<{ rotation: Rotation; outcome: 'ok' | 'interrupted'; details: Record<string, unknown> }> = [];
  for (const p of parts) {
    if (opts.dryRun) continue;
    const remaining = left.get(p.id) ?? 0;
    const details = { target: p.target, allTenants: true, tenants: parts.length, seconds, tables, remaining, ...(stoppedBecause ? { stoppedBecause } : {}) };
    const now = rotationNow.get(p.t.config.keyring);
    if (!report.interrupted && remaining === 0 && now?.id === p.rotation.id && rule('reencrypt-done').from.includes(now.phase)) {
      await checkGuards(p.t, 'reencrypt-done', await snapshot(p.t, { ...p.state, rotation: now }), { remaining });
      finishing.push({ p, rotation: now, details });
    } else records.push({ rotation: p.rotation, outcome: report.interrupted ? 'interrupted' : 'ok', details });
  }
  // The finished tenants' moves in one transaction, as the start's.
  const done = await transitionMany(
    finishing.map(({ p, rotation, details }) => [p.t, { rule: 'reencrypt-done', rotation, details, alreadyThereIsFine: true }]),
  );
  finishing.forEach(({ p, details }, i) => {
    p.rotation = done[i]!;
    // Moved already by another run (transition then writes no row): this pass is still on record.
    if (wasMovedByAnother(p.rotation)) records.push({ rotation: p.rotation, outcome: 'ok', details: { ...details, alreadyDone: true } });
  });
  await recordPasses(ctx, records);
  for (const p of parts)
    report.tenants.push({ tenant: p.id, rotationId: p.rotation.id, target: p.target, phase: p.rotation.phase, remaining: left.get(p.id) ?? 0 });
  return report;
}
