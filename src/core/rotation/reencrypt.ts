/**
 * `keyctl reencrypt`: moves every value of every target (or of --table) under the primary
 * version, then — when nothing is left — the phase to `reencrypted`. In `rolling_back` the
 * primary is the old key again, so the same pass moves values back.
 */
import { countNotUnder, reencryptTable, type ProgressEvent, type TableResult, type ValueFailure } from '../../reencrypt/engine.js';
import type { Row } from '../../reencrypt/scan.js';
import { movesBack, nextStep, rule, targetPhase } from '../../rotation/machine.js';
import { appendAudit, checkpointStore, openRotation, type AuditEntry, type Rotation } from '../../rotation/store.js';
import { withRetry } from '../../base/retry.js';
import { translateDbError } from '../../db/errors.js';
import type { CoreContext } from '../context.js';
import { ConfigError, RefusedError, UsageError } from '../../base/errors.js';
import { availableParallelism } from 'node:os';
import { loadProbe } from '../../db/load.js';
import { formatKey, keyColumns, shardColumn, type Shard } from '../../reencrypt/scan.js';
import { ThreadPlanner } from '../../reencrypt/planner.js';
import { controlWatcher } from '../../reencrypt/control.js';
import { claimStopped, JobFile } from '../../reencrypt/jobs.js';
import { Throttle } from '../../reencrypt/throttle.js';
import { checkKeysUnique } from '../targets.js';
import { loadAllKeys } from './material.js';
import { checkGuards, requireRotation } from './guard.js';
import { prepare, snapshot } from './prepare.js';
import { transition, wasMovedByAnother } from './transition.js';

export interface ReencryptOptions {
  dryRun: boolean;
  /** A fixed batch size; without it the size adapts to chunkTimeMs. */
  batchSize?: number | undefined;
  /** Target time per batch for adaptive sizing (default 500 ms). */
  chunkTimeMs?: number | undefined;
  maxRate?: number | undefined;
  sleepMs?: number | undefined;
  pauseFile?: string | undefined;
  maxLoad?: number | undefined;
  /** Stop (resumable, interrupted) when the database load exceeds this; see --critical-load. */
  criticalLoad?: number | undefined;
  /** Live control: settings written to this file (`keyctl reencrypt --set`) after the run starts are applied. */
  control?: { file: string; onChange: (text: string) => void };
  /**
   * Keep a job file in this directory while the run goes (see reencrypt/jobs.ts), so
   * `keyctl reencrypt --status` and `keyctl status` in another terminal see it; `command` resumes it.
   */
  job?: { dir: string; command: string };
  /** Told about retried batches (deadlock, lock wait, dropped connection). */
  onRetry?: (message: string) => void;
  table?: string | undefined;
  /** Work on one shard (index of count) of every target; see docs/reencrypt.md. */
  shard?: Shard | undefined;
  signal?: AbortSignal;
  /** Worker threads for crypto (0: in the main thread). Default: one per CPU, at most 4. */
  cryptoWorkers?: number;
  onProgress?: (e: ProgressEvent) => void;
  afterRead?: (table: string, rows: Row[]) => Promise<void>;
}

export interface ReencryptReport {
  rotation: Rotation;
  target: string;
  dryRun: boolean;
  tables: TableResult[];
  failures: ValueFailure[];
  /** Values not under the target across all targets after the run (database count). */
  remaining: number;
  interrupted: boolean;
  /** Why the run stopped on its own, resumable (the database load above --critical-load), if it did. */
  abortedBecause?: string;
  /** Set when there was nothing to rewrite and the phase was left as it was: says so. */
  noop?: string;
}

/** Values (in the targets of this run) not under `target`, or unparseable. */
async function countPending(ctx: CoreContext, targets: CoreContext['config']['targets'], target: string, key: Buffer | undefined): Promise<number> {
  let n = 0;
  for (const t of targets) n += await countNotUnder(ctx.db, t, target, { key });
  return n;
}

/** The pace options checked (batch size, load limits), and the database's load probe when they need one. */
export function checkPace(ctx: CoreContext, opts: ReencryptOptions): ReturnType<typeof loadProbe> {
  if (opts.batchSize !== undefined && (!Number.isInteger(opts.batchSize) || opts.batchSize < 1))
    throw new UsageError(`--batch-size must be a whole number ≥ 1, found ${opts.batchSize}`);
  const watchLoad = opts.maxLoad !== undefined || opts.criticalLoad !== undefined;
  const probe = watchLoad ? loadProbe(ctx.db) : null;
  if (watchLoad && !probe)
    throw new UsageError(
      `${opts.maxLoad !== undefined ? '--max-load' : '--critical-load'} needs PostgreSQL or MySQL/MariaDB (SQLite has no server load to watch)`,
      'use --max-rate or --sleep to slow down on SQLite',
    );
  if (opts.maxLoad !== undefined && opts.criticalLoad !== undefined && opts.criticalLoad <= opts.maxLoad)
    throw new UsageError(
      `--critical-load ${opts.criticalLoad} must be above --max-load ${opts.maxLoad}`,
      'keyctl waits above --max-load and stops above --critical-load',
    );
  return probe;
}

/** The targets of the run: every one, or --table's. */
export function targetsOf(ctx: CoreContext, opts: ReencryptOptions): CoreContext['config']['targets'] {
  const targets = opts.table ? ctx.config.targets.filter((t) => t.table === opts.table) : ctx.config.targets;
  if (opts.table && targets.length === 0) {
    throw new UsageError(
      `--table ${opts.table} is not a target in ${ctx.config.file}`,
      `targets are: ${ctx.config.targets.map((t) => t.table).join(', ') || '(none)'}`,
    );
  }
  return targets;
}

/** The run's throttle: batch sizing, --max-rate, --sleep, the pause file and the load limits. */
export function throttleFor(opts: ReencryptOptions, probe: ReturnType<typeof loadProbe>, poll?: () => void): Throttle {
  return new Throttle({
    chunkTimeMs: opts.chunkTimeMs ?? 500,
    fixedBatchSize: opts.batchSize ?? null,
    maxBatchSize: 10_000,
    maxRate: opts.maxRate ?? null,
    sleepMs: opts.sleepMs ?? 0,
    pauseFile: opts.pauseFile ?? null,
    maxLoad: opts.maxLoad ?? null,
    criticalLoad: opts.criticalLoad ?? null,
    ...(poll ? { poll } : {}),
    ...(probe ? { probeLoad: probe } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
}

/** A pass that leaves the phase as it is, on record: its own `reencrypt` row (phase unchanged). */
export async function recordPass(
  ctx: CoreContext,
  rotation: Rotation,
  row: { rowsAffected?: number; outcome: 'ok' | 'failed' | 'interrupted'; details: Record<string, unknown> },
): Promise<void> {
  await appendAudit(ctx.db, passEntry(ctx, rotation, row), ctx.now());
}

/** recordPass for many rotations (an all-tenants pass): one transaction, one commit. */
export async function recordPasses(
  ctx: CoreContext,
  rows: ReadonlyArray<{ rotation: Rotation; rowsAffected?: number; outcome: 'ok' | 'failed' | 'interrupted'; details: Record<string, unknown> }>,
): Promise<void> {
  if (rows.length === 0) return;
  const at = ctx.now();
  try {
    // A lock conflict rolls the whole transaction back: safe to run again.
    await withRetry(
      'recording reencrypt passes',
      () =>
        ctx.db.knex.transaction(async (trx) => {
          for (const r of rows) await appendAudit(ctx.db, passEntry(ctx, r.rotation, r), at, trx);
        }),
      { tries: 5, baseDelayMs: 100, retryable: (e) => ctx.db.adapter.isRetryable(e), onRetry: () => undefined },
    );
  } catch (err) {
    throw translateDbError(err, ctx.db.endpoint, 'record reencrypt passes in');
  }
}

function passEntry(
  ctx: CoreContext,
  rotation: Rotation,
  row: { rowsAffected?: number; outcome: 'ok' | 'failed' | 'interrupted'; details: Record<string, unknown> },
): AuditEntry {
  return {
    rotationId: rotation.id,
    keyring: rotation.keyring,
    action: 'reencrypt',
    fromPhase: rotation.phase,
    toPhase: rotation.phase,
    actor: ctx.actor,
    oldVersion: rotation.oldVersion,
    newVersion: rotation.newVersion,
    ...(row.rowsAffected !== undefined ? { rowsAffected: row.rowsAffected } : {}),
    outcome: row.outcome,
    details: row.details,
  };
}

/**
 * One tenant's pass reads `WHERE <tenancy column> = ID` in key order: an index led by the tenancy
 * column lets the database read only that tenant's rows; without one it walks the whole table by its
 * key and filters. Said either way, so a slow pass is explained before it starts.
 */
async function sayTenantIndexes(ctx: CoreContext, targets: CoreContext['config']['targets']): Promise<void> {
  for (const t of targets) {
    if (!t.scope) continue;
    const column = t.scope.column;
    const led = (await ctx.db.adapter.indexKeys(ctx.db.knex, t.table)).filter((k) => k[0] === column);
    if (led.length > 0) ctx.log.info(`${t.table}: reading tenant ${t.scope.value}'s rows by the index on (${led[0]!.join(', ')})`);
    else
      ctx.log.warn(
        `${t.table} has no index led by ${column}: each batch walks the table by its key and keeps tenant ${t.scope.value}'s rows (with many tenants, most of what it reads is theirs); ` +
          `an index makes it read only this tenant's rows: CREATE INDEX ${t.table.replace(/\W/g, '_')}_${column} ON ${t.table} (${column}, ${keyColumns(t.primaryKey).join(', ')})`,
      );
  }
}

export async function reencrypt(ctx: CoreContext, opts: ReencryptOptions): Promise<ReencryptReport> {
  const probe = checkPace(ctx, opts);
  const targets = targetsOf(ctx, opts);
  const state = await prepare(ctx);
  await checkKeysUnique(ctx.db, ctx.config, targets);
  await sayTenantIndexes(ctx, targets);
  if (opts.shard) {
    for (const t of targets) {
      // A composite key is split on its last column (the row id of `[tenant_id, id]`).
      const column = shardColumn(t.primaryKey);
      const info = await ctx.db.knex(t.table).columnInfo(column as never);
      if (!/int|serial|number|decimal|numeric/i.test(String((info as { type?: string }).type ?? ''))) {
        throw new UsageError(
          typeof t.primaryKey === 'string'
            ? `--shard needs an integer primary key; ${t.table}.${column} is ${String((info as { type?: string }).type)}`
            : `--shard splits a composite key on its last column, which must be an integer; ${t.table}.${column} (last of ${t.primaryKey.join(', ')}) is ${String((info as { type?: string }).type)}`,
          typeof t.primaryKey === 'string'
            ? 'run without --shard for this target (use --table to pick the others)'
            : 'run without --shard for this target (use --table to pick the others), or list the key with an integer column last in keyctl.yaml if the table has an index in that order',
        );
      }
    }
  }
  let rotation = await requireRotation(ctx, 'reencrypt', await snapshot(ctx, state), opts.dryRun ? 'reencrypt --dry-run' : 'reencrypt');
  const target = state.primary;
  // from: lists the versions written the old way (Fernet, or without row context); the rotation's
  // new key is written the new way, so it cannot be one of them (a rollback to one of them can).
  if (target === rotation.newVersion) {
    const stale = targets.filter((t) => t.from?.versions.includes(target));
    if (stale.length > 0) {
      throw new ConfigError(
        `${ctx.config.file}: from.versions lists ${target}, the new key this rotation writes`,
        stale.map(
          (t) =>
            `${ctx.config.file}: targets[${ctx.config.targets.indexOf(t)}].from.versions: ${target} would be written as ${t.from!.codec === 'fernet' ? 'Fernet tokens' : 'values without aad/derive'}`,
        ),
        `remove ${target} from from.versions: it lists only the versions written before the change`,
      );
    }
  }
  const keys = await loadAllKeys(ctx.keystore, ctx.config.keyring);
  // From reencrypted or verified too: values written under an old key after verify (a writer that
  // had not reloaded) are moved again, and verify has to pass again before promote. A pass that
  // finds nothing to rewrite leaves the phase (and the verify evidence) as it is, and says so.
  let noop: string | null = null;
  if (!opts.dryRun && rule('reencrypt-start').from.includes(rotation.phase)) {
    const start = rule('reencrypt-start');
    // The first pass after dual-key always runs; a pass after reencrypted/verified goes back along
    // the procedure, so it first counts whether there is anything to rewrite.
    const goesBack = movesBack(rotation.phase, targetPhase(start, rotation.phase));
    const pending = goesBack ? await countPending(ctx, targets, target, keys.get(target)) : null;
    if (pending === 0) {
      noop = `nothing to re-encrypt: every value is already under ${target}; rotation #${rotation.id} stays in phase ${rotation.phase}`;
    } else {
      if (goesBack) {
        ctx.log.warn(
          `${pending} value(s) are not under ${target}: rotation #${rotation.id} moves back from ${rotation.phase} to reencrypting, and verify has to pass again before promote`,
        );
      }
      // Shards started together all try this; the others find it done.
      rotation = await transition(ctx, {
        rule: 'reencrypt-start',
        rotation,
        alreadyThereIsFine: true,
        changes: { verify: null },
        details: {
          target,
          pending,
          batchSize: opts.batchSize ?? null,
          chunkTimeMs: opts.chunkTimeMs ?? 500,
          table: opts.table ?? null,
          shard: opts.shard ? `${opts.shard.index}/${opts.shard.count}` : null,
        },
      });
    }
  }
  if (noop) {
    ctx.log.info(noop);
    await recordPass(ctx, rotation, { rowsAffected: 0, outcome: 'ok', details: { target, noop: true } });
    return { rotation, target, dryRun: false, tables: [], failures: [], remaining: 0, interrupted: false, noop };
  }
  const started = ctx.now();
  const runningIn = rotation.phase;
  const rotationId = rotation.id;
  // Stop (after saving the cursor) if someone else moved the rotation on, e.g. rolled it back.
  const phaseChanged = async (): Promise<string | null> => {
    const now = await openRotation(ctx.db, ctx.config.keyring);
    if (now?.id === rotationId && now.phase === runningIn) return null;
    // Another shard found nothing left and moved on: this one's writes were already counted.
    const done = rule('reencrypt-done');
    if (now?.id === rotationId && done.from.includes(runningIn) && now.phase === done.to) return null;
    return `rotation #${rotationId} left phase ${runningIn} while reencrypt was running (now ${now?.id === rotationId ? now.phase : 'closed'})`;
  };
  const tables: TableResult[] = [];
  const control = opts.control;
  const changes = control ? controlWatcher(control.file, ctx.now().getTime()) : null;
  const pollControl = changes
    ? () => {
        const c = changes();
        const text = c && throttle.apply(c.settings);
        if (text) {
          job?.update({ settings: throttle.settings() }, true);
          control!.onChange(`${text} (set by ${c.by})`);
        }
      }
    : null;
  const throttle = throttleFor(opts, probe, pollControl ?? undefined);
  // A run killed earlier (kill -9, a crash) wrote no audit row: its job file says what it did,
  // so it goes on record now, once (rows rewritten as of its last report, a second at most before
  // it died; the checkpoints hold the exact cursor).
  if (opts.job && !opts.dryRun) {
    for (const dead of claimStopped(opts.job.dir, rotationId)) {
      if (dead.dryRun) continue;
      await appendAudit(
        ctx.db,
        {
          rotationId,
          keyring: rotation.keyring,
          action: 'reencrypt',
          fromPhase: runningIn,
          toPhase: null,
          actor: dead.by,
          rowsAffected: dead.progress?.valuesRewritten ?? 0,
          outcome: 'interrupted',
          details: {
            target: dead.target,
            killed: { pid: dead.pid, host: dead.host, startedAt: dead.startedAt, lastReportAt: dead.updatedAt, table: dead.progress?.table ?? null },
            note: 'the process ended without finishing (killed or crashed); found by the next run',
            recordedBy: ctx.actor,
          },
        },
        ctx.now(),
      );
    }
  }
  const job = opts.job
    ? new JobFile(opts.job.dir, {
        startedAt: started.toISOString(),
        by: ctx.actor,
        rotationId,
        keyring: rotation.keyring,
        dryRun: opts.dryRun,
        target,
        table: opts.table ?? null,
        shard: opts.shard ? `${opts.shard.index}/${opts.shard.count}` : null,
        command: opts.job.command,
        settings: throttle.settings(),
      })
    : null;
  const onProgress =
    job || opts.onProgress
      ? (e: ProgressEvent) => {
          job?.update({ progress: e });
          opts.onProgress?.(e);
        }
      : undefined;
  const planner = ThreadPlanner.create(opts.cryptoWorkers ?? Math.max(1, Math.min(4, availableParallelism())), keys, target);
  try {
    for (const t of targets) {
      const res = await reencryptTable(t, {
        db: ctx.db,
        planner,
        target,
        targetKey: keys.get(target),
        rotationId: rotation.id,
        checkpoints: checkpointStore,
        dryRun: opts.dryRun,
        throttle,
        ...(opts.shard ? { shard: opts.shard } : {}),
        ...(opts.onRetry ? { onRetry: opts.onRetry } : {}),
        now: ctx.now,
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(onProgress ? { onProgress } : {}),
        ...(opts.afterRead ? { afterRead: opts.afterRead } : {}),
        ...(opts.dryRun ? {} : { shouldStop: phaseChanged }),
      });
      tables.push(res);
      if (res.interrupted) break;
    }
  } finally {
    job?.end();
    await planner.close();
  }
  const failures = tables.flatMap((t) => t.failures);
  const interrupted = tables.some((t) => t.interrupted);
  const stoppedBecause = tables.find((t) => t.stoppedBecause)?.stoppedBecause;
  if (stoppedBecause) {
    const rowsSoFar = tables.reduce((n, t) => n + t.rowsUpdated, 0);
    await appendAudit(
      ctx.db,
      {
        rotationId,
        keyring: rotation.keyring,
        action: 'reencrypt',
        fromPhase: runningIn,
        toPhase: null,
        actor: ctx.actor,
        rowsAffected: rowsSoFar,
        outcome: 'interrupted',
        details: { reason: stoppedBecause },
      },
      ctx.now(),
    );
    const now = await openRotation(ctx.db, ctx.config.keyring);
    throw new RefusedError(`${stoppedBecause}; stopped after saving the cursor`, now ? `next: ${nextStep(now.phase)}` : 'run `keyctl status`');
  }
  // Tables the engine finished whole already counted what is left after their last pass; only
  // the others (not in --table, interrupted, or this process's shard only) are counted here.
  const counted = new Map(tables.filter((t) => !t.interrupted && !opts.shard).map((t) => [t.table, t.remaining]));
  let remaining = 0;
  for (const t of ctx.config.targets) remaining += counted.get(t.table) ?? (await countNotUnder(ctx.db, t, target, { key: keys.get(target) }));
  const abortedBecause = tables.find((t) => t.abortedBecause)?.abortedBecause;
  const report: ReencryptReport = {
    rotation,
    target,
    dryRun: opts.dryRun,
    tables,
    failures,
    remaining,
    interrupted,
    ...(abortedBecause ? { abortedBecause } : {}),
  };
  if (opts.dryRun) return report;

  const rowsUpdated = tables.reduce((n, t) => n + t.rowsUpdated, 0);
  const details = {
    target,
    seconds: (ctx.now().getTime() - started.getTime()) / 1000,
    tables: tables.map((t) => ({
      table: t.table,
      rowsScanned: t.rowsScanned,
      rowsUpdated: t.rowsUpdated,
      rowsSkippedConcurrent: t.rowsSkippedConcurrent,
      passes: t.passes,
      resumedFrom: t.resumedFrom === null ? null : formatKey(t.resumedFrom),
    })),
    failures: failures.length,
    failureSample: failures.slice(0, 20),
    remaining,
    ...(abortedBecause ? { abortedBecause } : {}),
  };
  if (!interrupted && remaining === 0 && rule('reencrypt-done').from.includes(rotation.phase)) {
    // With shards, the last one to finish moves the phase; one finishing at the same moment finds it done.
    await checkGuards(ctx, 'reencrypt-done', await snapshot(ctx, { ...state, rotation }), { remaining });
    const moved = await transition(ctx, { rule: 'reencrypt-done', rotation, rowsAffected: rowsUpdated, details, alreadyThereIsFine: true });
    report.rotation = moved;
    // Another run (a shard, or a second process without --shard) made the move first: transition
    // then writes no audit row. This run's work still goes on record — its own row, the phase
    // unchanged (see docs/reencrypt.md).
    if (wasMovedByAnother(moved)) {
      await recordPass(ctx, { ...rotation, phase: moved.phase }, { rowsAffected: rowsUpdated, outcome: 'ok', details: { ...details, alreadyDone: true } });
    }
  } else {
    await recordPass(ctx, rotation, { rowsAffected: rowsUpdated, outcome: interrupted ? 'interrupted' : failures.length > 0 ? 'failed' : 'ok', details });
  }
  return report;
}
