/**
 * `keyctl verify [--sample N]`: decrypts every value (or N random rows per target) with the
 * published keyring and counts values per version in the database. It passes only when every
 * value is under the primary and every checked value decrypts.
 *
 * Verification is a gate, not a label: the scope (full or sample) and the result are recorded on
 * the rotation. A pass moves `reencrypted` to `verified`; a failure moves `verified` back to
 * `reencrypted`; `promote` needs the latest verify since the last write pass to be full and passed;
 * only a full pass closes a rollback (`rolling_back` → `rolled_back`).
 */
import type { ValueFailure } from '../../reencrypt/engine.js';
import { verifyRuleFor, type VerifyScope } from '../../rotation/machine.js';
import { appendAudit, type Rotation } from '../../rotation/store.js';
import type { CoreContext } from '../context.js';
import { UsageError } from '../../base/errors.js';
import { countAllTargets, type VersionTotals } from './counts.js';
import { decryptionScan } from './decryption-scan.js';
import { checkGuards, requireRotation } from './guard.js';
import { prepare, snapshot } from './prepare.js';
import { finishRollback } from './steps.js';
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
  /** The phase before verify, when verify moved it (e.g. a failure moved `verified` back). */
  movedFrom: string | null;
}

export async function verify(ctx: CoreContext, opts: VerifyOptions): Promise<VerifyReport> {
  if (opts.sample !== undefined && (!Number.isInteger(opts.sample) || opts.sample < 1))
    throw new UsageError(`--sample must be a whole number ≥ 1, found ${opts.sample}`);
  const state = await prepare(ctx);
  let rotation = state.rotation;
  if (rotation) rotation = await requireRotation(ctx, 'verify', await snapshot(ctx, state), 'verify');
  const scope: VerifyScope = opts.sample === undefined ? 'full' : 'sample';
  const published = (await ctx.keystore.read())!;
  const { checked, failures, failureCount, blindIndexFailures } = await decryptionScan(ctx, published.doc.keys, { ...opts, blindIndexesUnder: state.primary });
  const totals = await countAllTargets(ctx);
  const problems: string[] = [];
  for (const [v, n] of Object.entries(totals.byVersion)) if (v !== state.primary) problems.push(`${n} value(s) under ${v}, not the primary ${state.primary}`);
  if (totals.unparseable > 0) problems.push(`${totals.unparseable} unparseable value(s)`);
  if (totals.plaintext > 0) problems.push(`${totals.plaintext} plaintext value(s) not encrypted yet (run \`keyctl reencrypt\`)`);
  if (failureCount > blindIndexFailures) problems.push(`${failureCount - blindIndexFailures} value(s) do not decrypt with the published keyring`);
  if (blindIndexFailures > 0)
    problems.push(
      `${blindIndexFailures} blind index value(s) missing, under another version or not matching their source (\`keyctl reencrypt\` recomputes a missing or stale one; set a wrong one to NULL first)`,
    );
  const passed = problems.length === 0;
  const details = {
    scope,
    primary: state.primary,
    byVersion: totals.byVersion,
    unparseable: totals.unparseable,
    plaintext: totals.plaintext,
    checked,
    sample: opts.sample ?? null,
    failures: failureCount,
    failureSample: failures.slice(0, 20),
    problems,
  };
  const rowsChecked = Object.values(checked).reduce((a, b) => a + b, 0);
  const evidence = { scope, outcome: passed ? ('passed' as const) : ('failed' as const), at: ctx.now() };
  const before = rotation?.phase ?? null;

  if (!rotation) {
    await appendAudit(
      ctx.db,
      { keyring: ctx.config.keyring, action: 'verify', actor: ctx.actor, rowsAffected: rowsChecked, outcome: passed ? 'ok' : 'failed', details },
      ctx.now(),
    );
  } else {
    const move = verifyRuleFor(rotation.phase, passed);
    await checkGuards(ctx, move.id, await snapshot(ctx, { ...state, rotation }), { verify: { passed, scope } });
    rotation =
      move.id === 'finish-rollback'
        ? await finishRollback(ctx, rotation, details, scope)
        : await transition(ctx, {
            rule: move.id,
            rotation,
            rowsAffected: rowsChecked,
            outcome: passed ? 'ok' : 'failed',
            details,
            changes: { verify: evidence },
            unchangedSinceRead: true,
          });
  }
  return {
    passed,
    primary: state.primary,
    rotation,
    totals,
    checked,
    failures,
    sampled: scope === 'sample',
    problems,
    movedFrom: rotation && before !== rotation.phase ? before : null,
  };
}
