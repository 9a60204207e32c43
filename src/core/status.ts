/**
 * `keyctl status`: the keyring's versions, the open rotation, and per target column how many
 * values sit under each key version — counted by the database (one GROUP BY scan per table),
 * never by loading rows into memory.
 */
import type { Knex } from 'knex';
import { formatCount, formatTime } from '../base/format.js';
import { BINARY_MAGIC, BINARY_MIN_BYTES } from '../crypto/binary.js';
import { BLIND_INDEX_SHAPE } from '../crypto/blind-index.js';
import { binaryColumns } from '../db/columns.js';
import { CiphertextError } from '../crypto/codec.js';
import { FieldCodec, fieldSpecOf } from '../crypto/field.js';
import { scanTable, scopeFilter } from '../reencrypt/scan.js';
import type { RowScope } from '../config/tenancy.js';
import { compareVersions, isVersionName } from '../crypto/keys.js';
import type { TargetConfig } from '../config/schema.js';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import type { CoreContext } from './context.js';
import { reconcileRegistry } from './registry.js';
import { retention } from './retention.js';
import { snapshotOf, sumCounts } from './rotation/snapshot.js';
import type { VersionState } from '../rotation/store.js';
import { lastAuditOfRotation, listCheckpoints, openRotation, type RegisteredVersion, type Rotation } from '../rotation/store.js';
import { jobsDir, listJobs, type JobRecord, type JobState } from '../reencrypt/jobs.js';
import { formatKey } from '../reencrypt/scan.js';
import { nextStep, PHASE_INFO, preview, type Phase } from '../rotation/machine.js';
import { checkTargets } from './targets.js';
import { checkHealth, type Problem } from './health.js';
import { kekOverview, type KekReport } from './kek.js';
import { loadAllKeys } from './rotation/material.js';

export interface ColumnCounts {
  table: string;
  column: string;
  /** version → number of values that claim it */
  counts: Record<string, number>;
  null: number;
  unparseable: number;
  /** Plaintext values (targets with `plaintext: encrypt`; 0 elsewhere, where they count as unparseable). */
  plaintext: number;
  total: number;
  /** Versions found in the data that the keyring does not hold. */
  unknownVersions: string[];
  /**
   * Targets that hold Fernet tokens: how many the column has, and the keys tried to find their
   * versions (one HMAC each, newest key first) — what counting them cost. Tokens no key
   * authenticates count as unparseable.
   */
  fernet?: { tokens: number; keysTried: number };
}

/** Every key keyctl holds (published and archived), read from the keystore once and only when asked. */
export function keyringLoader(ctx: Pick<CoreContext, 'keystore' | 'config'>): () => Promise<ReadonlyMap<string, Buffer>> {
  let loaded: Promise<ReadonlyMap<string, Buffer>> | undefined;
  return () => (loaded ??= loadAllKeys(ctx.keystore, ctx.config.keyring));
}

/** The keys Fernet tokens are matched against: a keyring, or a loader called only when there are tokens. */
export type CountKeys = ReadonlyMap<string, Buffer> | (() => Promise<ReadonlyMap<string, Buffer>>);

export interface StatusReport {
  keyring: string;
  primary: string;
  keystore: {
    provider: string;
    location: string;
    /** Envelope keystores (aws-kms, vault-transit): each key-encryption key, the versions it wraps, its state and latency. */
    keks?: KekReport[];
  };
  versions: Array<{
    version: string;
    state: VersionState;
    fingerprint: string;
    compromised: boolean;
    createdAt: string;
    inKeystore: boolean;
    /** Envelope keystores: the key-encryption key that wraps it (null when the keystore holds no blob of it). */
    kek?: string | null;
    material: 'present' | 'destroyed';
    /** Retired keys still kept: when `keyctl purge` may destroy the material (null: kept for good). */
    destroyAfter?: string | null;
  }>;
  rotation: null | {
    id: number;
    phase: Phase;
    oldVersion: string | null;
    newVersion: string | null;
    emergency: boolean;
    compromisedVersion: string | null;
    openedAt: string;
    /** The latest verify since the last write pass. */
    verify: { scope: string; outcome: string; at: string | null } | null;
    /** When the rollback window ends (set by promote), or null. */
    rollbackDeadline: string | null;
    /**
     * The re-encryption passes' saved cursors, per table and shard (`version`: the key the pass
     * writes under): rows this pass has done, where it stopped, and when its last batch committed.
     */
    reencrypt: Array<{
      table: string;
      shard: string;
      version: string;
      rowsScanned: number;
      rowsRewritten: number;
      rowsFailed: number;
      completed: boolean;
      stoppedAfter: string | null;
      lastBatchAt: string | null;
      /**
       * done; running (a live job on this host, or a job on another host that reported in the
       * last two minutes, works on it); or interrupted (not done and nobody on it: resume it).
       */
      state: 'done' | 'running' | 'interrupted';
    }>;
    /**
     * The reencrypt runs of this rotation that keyctl's job files know of (see docs/reencrypt.md):
     * running here, on another host, or stopped without finishing (killed).
     */
    jobs: Array<Omit<JobRecord, 'keyring'> & { state: JobState }>;
    /** The last runbook step recorded in this rotation, and whether the runbook stopped there. */
    runbook: null | { name: string; step: string; outcome: string; stopped: boolean; note: string | null; actor: string; at: string };
    /** The next step (from the rotation machine) and, if its guards would refuse it now, why. */
    next: string;
    refusedNow: string | null;
  };
  targets: ColumnCounts[];
  /** Blind index columns, counted per version (empty when no target has one). */
  blindIndexes: BlindIndexCounts[];
  rotationIntervalDays: number;
  nextRotationDue: string;
  overdue: boolean;
  warnings: string[];
  /** The unsafe states `status --check` fails on (empty when healthy); codes in core/health.ts. */
  problems: Problem[];
}

const DAY_MS = 86_400_000;

/**
 * One scan of a table grouped by every bucket expression at once (aliased b0, b1, …, with the
 * row count n). The number of groups is bounded by the combinations of versions actually present,
 * not by the row count.
 */
async function countBuckets(db: Db, table: string, buckets: Knex.Raw[], what: string, scope?: RowScope): Promise<Array<Record<string, unknown>>> {
  const select: Record<string, Knex.Raw> = {};
  buckets.forEach((b, i) => {
    select[`b${i}`] = b;
  });
  try {
    return await scopeFilter(db.knex(table), scope)
      .select(select as unknown as Record<string, string>)
      .count({ n: '*' })
      .groupByRaw(buckets.map((_, i) => String(i + 1)).join(', '));
  } catch (err) {
    throw translateDbError(err, db.endpoint, what);
  }
}

/**
 * One target's values per tenant and version, all tenants in one grouped scan (config/tenancy):
 * tenant → bucket (`v2`, `#null`, `#plaintext`, `#fernet`, `#unparseable`) → count, over all its columns.
 */
export async function countVersionsByTenant(db: Db, target: TargetConfig, tenantColumn: string): Promise<Map<string, Record<string, number>>> {
  const field = new FieldCodec(fieldSpecOf(target));
  const binary = await binaryColumns(db, target.table);
  const out = new Map<string, Record<string, number>>();
  // One scan: grouped by tenant and every column's bucket together.
  const select: Record<string, unknown> = { t: tenantColumn };
  target.columns.forEach((c, i) => {
    select[`b${i}`] = binary.has(c)
      ? db.adapter.binaryVersionBucket(db.knex, c, BINARY_MAGIC, BINARY_MIN_BYTES, field.spec.plaintext)
      : db.adapter.versionBucket(db.knex, c, field.sqlPatterns);
  });
  let rows: Array<Record<string, unknown>>;
  try {
    rows = await db
      .knex(target.table)
      .select(select as unknown as Record<string, string>)
      .count({ n: '*' })
      .groupByRaw(target.columns.map((_, i) => String(i + 2)).reduce((acc, g) => `${acc}, ${g}`, '1'));
  } catch (err) {
    throw translateDbError(err, db.endpoint, `count values per tenant in ${target.table} of`);
  }
  for (const r of rows) {
    const tenant = r.t === null || r.t === undefined ? '#null' : String(r.t);
    const counts = out.get(tenant) ?? {};
    target.columns.forEach((c, i) => {
      let b = String(r[`b${i}`]);
      if (binary.has(c) && /^[0-9a-f]{4}$/.test(b)) b = Number.parseInt(b, 16) > 0 ? `v${Number.parseInt(b, 16)}` : '#unparseable';
      else if (b !== '#null' && b !== '#plaintext' && b !== '#fernet' && !isVersionName(b)) b = '#unparseable';
      counts[b] = (counts[b] ?? 0) + Number(r.n);
    });
    out.set(tenant, counts);
  }
  return out;
}

/** A blind index column's values per version (docs/format.md, "Blind indexes"). */
export interface BlindIndexCounts {
  table: string;
  column: string;
  source: string;
  counts: Record<string, number>;
  null: number;
  /** Values that are not a well-formed index value. */
  unparseable: number;
}

/** Every blind index of a target, counted per version by the database in one scan. */
export async function countBlindIndexes(db: Db, target: TargetConfig): Promise<BlindIndexCounts[]> {
  if (target.blindIndexes.length === 0) return [];
  const rows = await countBuckets(
    db,
    target.table,
    target.blindIndexes.map((b) => db.adapter.versionBucket(db.knex, b.column, { shape: BLIND_INDEX_SHAPE })),
    `count the blind indexes of ${target.table} in`,
    target.scope,
  );
  return target.blindIndexes.map((b, i) => {
    const out: BlindIndexCounts = { table: target.table, column: b.column, source: b.source, counts: {}, null: 0, unparseable: 0 };
    for (const r of rows) {
      const bucket = String(r[`b${i}`]);
      const n = Number(r.n);
      if (bucket === '#null') out.null += n;
      else if (!isVersionName(bucket)) out.unparseable += n;
      else out.counts[bucket] = (out.counts[bucket] ?? 0) + n;
    }
    out.counts = Object.fromEntries(Object.entries(out.counts).sort(([a], [b]) => compareVersions(a, b)));
    return out;
  });
}

export async function countVersions(db: Db, target: TargetConfig, keys?: CountKeys): Promise<ColumnCounts[]> {
  const field = new FieldCodec(fieldSpecOf(target));
  const binary = await binaryColumns(db, target.table);
  const rows = await countBuckets(
    db,
    target.table,
    target.columns.map((c) =>
      binary.has(c)
        ? db.adapter.binaryVersionBucket(db.knex, c, BINARY_MAGIC, BINARY_MIN_BYTES, field.spec.plaintext)
        : db.adapter.versionBucket(db.knex, c, field.sqlPatterns),
    ),
    `count values in ${target.table} of`,
    target.scope,
  );
  const aliases = target.columns.map((_, i) => `b${i}`);
  const out = target.columns.map((column, i) => {
    const out: ColumnCounts = { table: target.table, column, counts: {}, null: 0, unparseable: 0, plaintext: 0, total: 0, unknownVersions: [] };
    if (field.fernet) out.fernet = { tokens: 0, keysTried: 0 };
    for (const r of rows) {
      let bucket = String(r[aliases[i]!]);
      // A binary column's bucket is the hex of its two version bytes.
      if (binary.has(column) && /^[0-9a-f]{4}$/.test(bucket)) bucket = Number.parseInt(bucket, 16) > 0 ? `v${Number.parseInt(bucket, 16)}` : '#unparseable';
      const n = Number(r.n);
      out.total += n;
      if (bucket === '#null') out.null += n;
      else if (bucket === '#plaintext') out.plaintext += n;
      else if (bucket === '#fernet') out.fernet!.tokens += n;
      else if (bucket === '#unparseable' || !isVersionName(bucket)) out.unparseable += n;
      else out.counts[bucket] = (out.counts[bucket] ?? 0) + n;
    }
    return out;
  });
  if (out.some((c) => (c.fernet?.tokens ?? 0) > 0)) await countFernetTokens(db, target, field, out, keys);
  for (const c of out) c.counts = Object.fromEntries(Object.entries(c.counts).sort(([a], [b]) => compareVersions(a, b)));
  return out;
}

/**
 * Fernet tokens do not name their key: read them in key order and try the keys newest first (one
 * HMAC each, no decryption), counting each under the version that authenticates it.
 */
async function countFernetTokens(db: Db, target: TargetConfig, field: FieldCodec, out: ColumnCounts[], keys: CountKeys | undefined): Promise<void> {
  if (!keys) throw new Error(`counting the Fernet tokens of ${target.table} needs the keyring`);
  const ring = typeof keys === 'function' ? await keys() : keys;
  const columns = out.filter((c) => (c.fernet?.tokens ?? 0) > 0);
  try {
    for await (const rows of scanTable(
      db,
      target.table,
      target.primaryKey,
      columns.map((c) => c.column),
      2000,
      null,
      undefined,
      target.scope,
    )) {
      for (const row of rows) {
        for (const c of columns) {
          const value = row[c.column];
          if (typeof value !== 'string' || field.kind(value) !== 'fernet') continue;
          try {
            const { version, tried } = field.versionOf(value, ring);
            c.fernet!.keysTried += tried;
            c.counts[version] = (c.counts[version] ?? 0) + 1;
          } catch (err) {
            if (!(err instanceof CiphertextError)) throw err;
            c.fernet!.keysTried += field.fernetKeyCount(ring);
            c.unparseable++;
          }
        }
      }
    }
  } catch (err) {
    if (err instanceof CiphertextError) throw err;
    throw translateDbError(err, db.endpoint, `read the Fernet tokens of ${target.table} in`);
  }
}

/**
 * `counts: false` (`metrics --no-counts`): no scan of the target tables — no values per version,
 * and none of the problems found in them (unparseable, plaintext, unknown-version values).
 */
export async function getStatus(ctx: CoreContext, opts: { counts?: boolean } = {}): Promise<StatusReport> {
  const { config, db } = ctx;
  const { snapshot, versions, warnings } = await reconcileRegistry(ctx);
  await checkTargets(db, config);
  const rotation = await openRotation(db, config.keyring);
  const targets: ColumnCounts[] = [];
  const blindIndexes: BlindIndexCounts[] = [];
  if (opts.counts !== false) {
    const keys = keyringLoader(ctx);
    for (const t of config.targets) targets.push(...(await countVersions(db, t, keys)));
    for (const t of config.targets) blindIndexes.push(...(await countBlindIndexes(db, t)));
  }
  const known = new Set(snapshot.doc.keys.keys());
  for (const t of targets) {
    t.unknownVersions = Object.keys(t.counts).filter((v) => !known.has(v));
  }
  const jobs = rotation ? listJobs(jobsDir(config.baseDir)).filter((j) => j.keyring === config.keyring && j.rotationId === rotation.id) : [];
  const primaryReg = versions.find((v) => v.version === snapshot.doc.primary);
  const since = primaryReg?.createdAt ?? ctx.now();
  const due = new Date(since.getTime() + config.policy.rotationIntervalDays * DAY_MS);
  const overdue = ctx.now().getTime() > due.getTime();
  const keks = await kekOverview(ctx.keystore);
  const problems = [...countProblems(targets, overdue, due), ...(await checkHealth(ctx, { doc: snapshot.doc, versions, rotation, keks }))];
  return {
    keyring: config.keyring,
    primary: snapshot.doc.primary,
    keystore: { provider: ctx.keystore.provider, location: ctx.keystore.describe(), ...(keks ? { keks: keks.keks } : {}) },
    versions: versions.map((v) => ({
      version: v.version,
      state: v.state,
      fingerprint: v.fingerprint,
      compromised: v.compromised,
      createdAt: v.createdAt.toISOString(),
      inKeystore: snapshot.doc.keys.has(v.version),
      ...(keks ? { kek: keks.byVersion.get(v.version) ?? null } : {}),
      material: v.material,
      ...(v.state === 'retired' && v.material === 'present' ? { destroyAfter: retention(ctx, [v])[0]?.destroyAfter?.toISOString() ?? null } : {}),
    })),
    rotation: rotation
      ? {
          id: rotation.id,
          phase: rotation.phase,
          oldVersion: rotation.oldVersion,
          newVersion: rotation.newVersion,
          emergency: rotation.emergency,
          compromisedVersion: rotation.compromisedVersion,
          openedAt: rotation.openedAt.toISOString(),
          verify:
            rotation.verifyOutcome && rotation.verifyScope
              ? { scope: rotation.verifyScope, outcome: rotation.verifyOutcome, at: rotation.verifiedAt?.toISOString() ?? null }
              : null,
          rollbackDeadline: rotation.rollbackDeadline?.toISOString() ?? null,
          reencrypt: (await listCheckpoints(db, rotation.id)).map((c) => {
            const [shard = c.shard, version = ''] = c.shard.split('>');
            const onIt = jobs.some(
              (j) =>
                j.state !== 'stopped' &&
                !j.dryRun &&
                j.target === version &&
                (j.shard ?? '0/1') === shard &&
                (j.table === null || j.table === c.table) &&
                (j.state === 'running' || ctx.now().getTime() - Date.parse(j.updatedAt) < 120_000),
            );
            return {
              table: c.table,
              shard,
              version,
              rowsScanned: c.rowsScanned,
              rowsRewritten: c.rowsRewritten,
              rowsFailed: c.rowsFailed,
              completed: c.completed,
              stoppedAfter: c.completed || c.cursor === null ? null : formatKey(c.cursor),
              lastBatchAt: c.updatedAt?.toISOString() ?? null,
              state: c.completed ? ('done' as const) : onIt ? ('running' as const) : ('interrupted' as const),
            };
          }),
          jobs: jobs.map(({ file: _file, keyring: _keyring, ...j }) => j),
          runbook: await lastRunbookStep(ctx, rotation.id),
          next: nextStep(rotation.phase).replace(/`/g, ''),
          refusedNow: refusedNow(ctx, rotation, versions, targets),
        }
      : null,
    targets,
    blindIndexes,
    rotationIntervalDays: config.policy.rotationIntervalDays,
    nextRotationDue: due.toISOString(),
    overdue,
    warnings,
    problems,
  };
}

/** The newest runbook-step row of the rotation: which runbook, which step, and whether it stopped there. */
async function lastRunbookStep(ctx: CoreContext, rotationId: number): Promise<NonNullable<StatusReport['rotation']>['runbook']> {
  const r = await lastAuditOfRotation(ctx.db, ctx.config.keyring, 'runbook-step', rotationId);
  if (!r) return null;
  const d = r.details ?? {};
  const text = (v: unknown) => (typeof v === 'string' ? v : null);
  const failed = r.outcome !== 'ok' && r.outcome !== 'skipped';
  const note = text(d.skipped) ?? text(d.error) ?? (failed ? (text(d.result) ?? (typeof d.exitCode === 'number' ? `exit ${d.exitCode}` : null)) : null);
  return {
    name: text(d.runbook) ?? '?',
    step: text(d.step) ?? '?',
    outcome: r.outcome,
    stopped: r.outcome === 'failed' || r.outcome === 'interrupted' || r.outcome === 'refused',
    note,
    actor: r.actor,
    at: r.createdAt.toISOString(),
  };
}

/** Whether the machine would refuse the rotation's next step now (status shows why, with the date). */
function refusedNow(ctx: CoreContext, rotation: Rotation, versions: RegisteredVersion[], targets: ColumnCounts[]): string | null {
  const command = PHASE_INFO[rotation.phase].forward;
  const { refusal } = preview(command, snapshotOf(ctx, rotation, versions, sumCounts(targets)));
  return refusal ? `${command}: ${refusal.reason}` : null;
}

/** The problems found in the counts and the rotation interval (the ones `status --check` always had). */
function countProblems(targets: ColumnCounts[], overdue: boolean, due: Date): Problem[] {
  const problems: Problem[] = [];
  if (overdue) {
    problems.push({
      code: 'rotation-overdue',
      message: `rotation overdue: the next rotation was due ${formatTime(due)}`,
      hint: 'start a rotation: `keyctl generate` (or `keyctl runbook run routine-rotation`)',
    });
  }
  for (const t of targets) {
    if (t.unparseable > 0) {
      problems.push({
        code: 'unparseable-values',
        message: `${t.table}.${t.column}: ${t.unparseable} unparseable value(s)`,
        hint: '`keyctl verify` lists them (table, primary key, reason); keyctl never rewrites them — repair them by hand',
      });
    }
    if (t.plaintext > 0) {
      problems.push({
        code: 'plaintext-values',
        message: `${t.table}.${t.column}: ${formatCount(t.plaintext)} plaintext value(s) not encrypted yet`,
        hint: 'run a rotation (`keyctl runbook run routine-rotation`, or generate, dual-key, reencrypt): reencrypt encrypts them under the primary',
      });
    }
    for (const v of t.unknownVersions) {
      problems.push({
        code: 'unknown-version-values',
        message: `${t.table}.${t.column}: ${t.counts[v]} value(s) under ${v}, which the keyring does not hold`,
        hint: `restore ${v} from a backup (\`keyctl restore\`), or find which application writes under a key keyctl does not manage`,
      });
    }
  }
  return problems;
}

/** The messages of the problems `status --check` fails on (empty when healthy). */
export function statusProblems(report: StatusReport): string[] {
  return report.problems.map((p) => p.message);
}
