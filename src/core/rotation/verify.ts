/**
 * `keyctl verify [--sample N]`: decrypts every value (or N random rows per target) with the
 * published keyring and counts values per version in the database. It passes only when every
 * value is under the primary and every checked value decrypts. A pass moves `reencrypted` to
 * `verified`, or closes a rollback (`rolling_back` → `rolled_back`).
 */
import { AesGcmV1Codec, CiphertextError } from '../../crypto/codec.js';
import { sampleRows, scanTable, type Row } from '../../reencrypt/scan.js';
import type { ValueFailure } from '../../reencrypt/engine.js';
import { appendAudit } from '../audit.js';
import type { CoreContext } from '../context.js';
import { UsageError } from '../errors.js';
import type { Rotation } from '../rotations.js';
import { countAllTargets, type VersionTotals } from './counts.js';
import { refuse } from './guard.js';
import { prepare } from './prepare.js';
import { finishRollback, requirePhase } from './steps.js';
import { transition } from './transition.js';

export interface VerifyOptions {
  sample?: number | undefined;
  batchSize?: number;
}

export interface VerifyReport {
  passed: boolean;
  primary: string;
  rotation: Rotation | null;
  /** Database counts over all rows. */
  totals: VersionTotals;
  /** Values decrypted by the check, per version. */
  checked: Record<string, number>;
  failures: ValueFailure[];
  sampled: boolean;
  problems: string[];
}

export async function verify(ctx: CoreContext, opts: VerifyOptions): Promise<VerifyReport> {
  if (opts.sample !== undefined && (!Number.isInteger(opts.sample) || opts.sample < 1)) throw new UsageError(`--sample must be a whole number ≥ 1, found ${opts.sample}`);
  const state = await prepare(ctx);
  let rotation = state.rotation;
  if (rotation) rotation = await requirePhase(ctx, state, 'verify', ['reencrypted', 'verified', 'promoted', 'rolling_back'], ' (after reencrypt)');
  const codec = new AesGcmV1Codec();
  const published = (await ctx.keystore.read())!;
  const keyFor = (v: string) => published.doc.keys.get(v);
  const checked: Record<string, number> = {};
  const failures: ValueFailure[] = [];
  let failureCount = 0;
  const check = (table: string, pk: string, columns: string[], rows: Row[]) => {
    for (const row of rows) {
      for (const column of columns) {
        const value = row[column];
        if (value === null || value === undefined) continue;
        try {
          if (typeof value !== 'string') throw new CiphertextError('malformed', 'not a text value');
          codec.decrypt(value, keyFor);
          const v = codec.versionOf(value);
          checked[v] = (checked[v] ?? 0) + 1;
        } catch (err) {
          if (!(err instanceof CiphertextError)) throw err;
          failureCount++;
          if (failures.length < 1000) failures.push({ table, pk: String(row[pk]), column, reason: err.reason });
        }
      }
    }
  };
  for (const t of ctx.config.targets) {
    if (opts.sample !== undefined) check(t.table, t.primaryKey, t.columns, await sampleRows(ctx.db, t.table, t.primaryKey, t.columns, opts.sample));
    else for await (const rows of scanTable(ctx.db, t.table, t.primaryKey, t.columns, opts.batchSize ?? 2000)) check(t.table, t.primaryKey, t.columns, rows);
  }
  const totals = await countAllTargets(ctx, codec);
  const problems: string[] = [];
  for (const [v, n] of Object.entries(totals.byVersion)) if (v !== state.primary) problems.push(`${n} value(s) under ${v}, not the primary ${state.primary}`);
  if (totals.unparseable > 0) problems.push(`${totals.unparseable} unparseable value(s)`);
  if (failureCount > 0) problems.push(`${failureCount} value(s) do not decrypt with the published keyring`);
  const passed = problems.length === 0;
  const details = { primary: state.primary, byVersion: totals.byVersion, unparseable: totals.unparseable, checked, sample: opts.sample ?? null, failures: failureCount, failureSample: failures.slice(0, 20) };
  const rowsChecked = Object.values(checked).reduce((a, b) => a + b, 0);

  if (passed && rotation?.phase === 'reencrypted') {
    rotation = await transition(ctx, { action: 'verify', rotation, to: 'verified', rowsAffected: rowsChecked, details });
  } else if (passed && rotation?.phase === 'rolling_back') {
    const since = rotation.phaseChangedAt.getTime();
    const left = since + ctx.config.policy.minPropagationSeconds * 1000 - ctx.now().getTime();
    if (left > 0 && !rotation.emergency) {
      return refuse(ctx, {
        action: 'verify',
        rotation,
        reason: `the rollback is only ${Math.floor((ctx.now().getTime() - since) / 1000)} s old; writers may still use ${rotation.newVersion} until they reload the keyring (policy.minPropagationSeconds = ${ctx.config.policy.minPropagationSeconds})`,
        hint: `wait ${Math.ceil(left / 1000)} s, run \`keyctl reencrypt\` once more, then \`keyctl verify\``,
      });
    }
    rotation = await finishRollback(ctx, rotation, details);
  } else {
    await appendAudit(
      ctx.db,
      {
        rotationId: rotation?.id ?? null,
        keyring: ctx.config.keyring,
        action: 'verify',
        fromPhase: rotation?.phase ?? null,
        toPhase: rotation?.phase ?? null,
        actor: ctx.actor,
        oldVersion: rotation?.oldVersion ?? null,
        newVersion: rotation?.newVersion ?? null,
        rowsAffected: rowsChecked,
        outcome: passed ? 'ok' : 'failed',
        details: { ...details, problems },
      },
      ctx.now(),
    );
  }
  return { passed, primary: state.primary, rotation, totals, checked, failures, sampled: opts.sample !== undefined, problems };
}

