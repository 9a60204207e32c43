/** `keyctl status [--check]`: render the status report as tables, or JSON. */
import { ExitCode } from '../../base/exit-codes.js';
import { KeystoreError } from '../../base/errors.js';
import { type Problem, unusableKekProblems } from '../../core/health.js';
import { getStatus, type StatusReport } from '../../core/status.js';
import { nextStep } from '../../rotation/machine.js';
import { formatCount, formatIsoText } from '../../ui/format.js';
import { describeJob } from '../../ui/jobs.js';
import type { ChalkInstance } from 'chalk';
import { openCoreContext, withCoreContext, type CliRuntime } from '../runtime.js';
import { getTenantRow } from '../../rotation/store.js';
import { shredProven } from '../../core/tenants.js';
import type { StatusOptions } from '../specs.js';

export async function run(rt: CliRuntime, flags: StatusOptions): Promise<number> {
  if (rt.flags.tenancy?.all) return tenantsStatus(rt, flags, null);
  const ctx = await openCoreContext(rt);
  let report: StatusReport | null = null;
  let unreadable: { error: unknown; problems: Problem[] } | null = null;
  try {
    // A shredded tenant has no keys to reconcile: its summary says what is left.
    if (ctx.config.tenant === undefined || !(await getTenantRow(ctx.db, ctx.config.tenant))?.shreddedAt || !(await shredProven(ctx.db, ctx.config.keyring)))
      report = await getStatus(ctx);
    // status may append audit rows (a registry reconciled, a refusal): anchor them like any command.
    await (await import('../../core/audit.js')).anchorAfterCommand(ctx);
  } catch (err) {
    // An envelope keyring whose KEK is disabled or deleted cannot be read; --check still names the problem.
    const problems = flags.check && err instanceof KeystoreError ? await unusableKekProblems(ctx.keystore) : [];
    if (problems.length === 0) throw err;
    unreadable = { error: err, problems };
  } finally {
    await ctx.close();
  }
  if (unreadable) {
    const { problems } = unreadable;
    const error = (unreadable.error as Error).message;
    rt.output.result({ ok: false, keystoreError: error, problems }, () => `the keyring cannot be read: ${error}`);
    if (!rt.output.json) for (const p of problems) rt.output.info(`keyctl: check failed [${p.code}]: ${p.message}\nkeyctl: hint: ${p.hint}`);
    return ExitCode.PROBLEMS_FOUND;
  }
  if (!report) return tenantsStatus(rt, flags, ctx.config.tenant!);
  for (const w of report.warnings) rt.output.warn(w);
  const problems = report.problems;
  const failed = Boolean(flags.check) && problems.length > 0;
  const { default: Table } = await import('cli-table3');
  // Under --check, "ok" is the check's verdict (as for verify): false exactly when it exits non-zero.
  rt.output.result({ ...report, ok: !failed }, () => renderStatus(report, problems, rt.output.out, Table, rt.now()));
  if (failed) {
    if (!rt.output.json) {
      for (const p of problems) rt.output.info(`keyctl: check failed [${p.code}]: ${p.message}\nkeyctl: hint: ${p.hint}`);
    }
    return ExitCode.PROBLEMS_FOUND;
  }
  return ExitCode.OK;
}

/** `status --all-tenants` (or a shredded tenant's status): the tenant summaries, and their problems under --check. */
async function tenantsStatus(rt: CliRuntime, flags: StatusOptions, only: string | null): Promise<number> {
  const { tenantSummaries, tenantProblems } = await import('../../core/tenants.js');
  const { renderTenants } = await import('./tenant.js');
  const { tenancy: _, ...keyringFlags } = rt.flags;
  const base = { ...rt, flags: keyringFlags };
  const { report, problems } = await withCoreContext(base, async (ctx) => {
    const report = await tenantSummaries(ctx, { counts: true, ...(only !== null ? { only: [only] } : {}) });
    return { report, problems: await tenantProblems(ctx, report) };
  });
  const failed = Boolean(flags.check) && problems.length > 0;
  rt.output.result({ ...report, problems, ok: !failed }, () =>
    [renderTenants(report), ...(problems.length > 0 ? ['', 'Problems:', ...problems.map((p) => `  - [${p.code}] ${p.message}`)] : [])].join('\n'),
  );
  if (failed) {
    if (!rt.output.json) for (const p of problems) rt.output.info(`keyctl: check failed [${p.code}]: ${p.message}\nkeyctl: hint: ${p.hint}`);
    return ExitCode.PROBLEMS_FOUND;
  }
  return ExitCode.OK;
}

type TableCtor = typeof import('cli-table3');

/** `2026-12-03 14:48:04Z` from an ISO time. */
const utc = formatIsoText;
const n = formatCount;

type RotationReport = NonNullable<StatusReport['rotation']>;

/** Where each re-encryption pass is (per table and shard): done, running, or interrupted and where. */
function reencryptLines(r: RotationReport, c: ChalkInstance, now: Date): string {
  const passes = r.reencrypt
    .map((p) => {
      const where = `reencrypt ${p.table} (shard ${p.shard} → ${p.version}): `;
      const last = p.lastBatchAt ? `, last batch ${utc(p.lastBatchAt)}` : '';
      if (p.state === 'done') return `\n  ${where}done${last}`;
      const sofar = `${n(p.rowsScanned)} rows this pass${p.stoppedAfter !== null ? `, ${p.state === 'running' ? 'at' : 'stopped after'} pk ${p.stoppedAfter}` : ''}${last}`;
      return p.state === 'running'
        ? `\n  ${where}${c.cyan('running')}, ${sofar}`
        : `\n  ${where}${c.yellow('interrupted')}, ${sofar}; \`keyctl reencrypt\` resumes it`;
    })
    .join('');
  const jobs = r.jobs.map((j) => `\n  ${describeJob(j, now).join('\n  ')}`).join('');
  return passes + jobs;
}

/** Where the runbook of this rotation is: its last step, and whether it stopped there. */
function runbookLine(r: RotationReport, c: ChalkInstance): string {
  const b = r.runbook;
  if (!b) return '';
  const what = `step ${b.step} ${b.outcome === 'interrupted' ? 'interrupted' : b.outcome}${b.note ? ` (${b.note})` : ''} by ${b.actor} at ${utc(b.at)}`;
  return b.stopped
    ? `\n  runbook ${b.name}: ${c.yellow(`stopped at ${what}`)}; \`keyctl runbook run ${b.name}\` goes on from there`
    : `\n  runbook ${b.name}: last ${what}; \`keyctl runbook run ${b.name}\` goes on`;
}

function renderStatus(r: StatusReport, problems: Problem[], c: ChalkInstance, Table: TableCtor, now: Date): string {
  const plain = c.level === 0;
  const style = { head: plain ? [] : ['cyan'], border: plain ? [] : ['grey'] };
  const out: string[] = [];
  out.push(`${c.bold('Keyring')} ${r.keyring}  primary ${c.bold(r.primary)}  (${r.keystore.location})`);
  const versions = new Table({ head: ['version', 'state', 'fingerprint', 'created', 'notes'], style });
  for (const v of r.versions) {
    const kept =
      v.state === 'retired'
        ? v.material === 'destroyed'
          ? 'material destroyed'
          : v.destroyAfter
            ? `archived until ${v.destroyAfter.slice(0, 10)}, then \`keyctl purge\``
            : 'archived for good'
        : '';
    const notes = [v.compromised ? c.red('compromised') : '', v.inKeystore || v.state === 'retired' || v.state === 'archived' ? '' : 'not in keystore', kept]
      .filter(Boolean)
      .join(', ');
    versions.push([v.version, v.state === 'primary' ? c.green(v.state) : v.state, v.fingerprint, utc(v.createdAt), notes]);
  }
  out.push(versions.toString());
  for (const k of r.keystore.keks ?? []) {
    const state = k.state === 'enabled' ? c.green('enabled') : k.reachable ? c.red(k.state) : c.yellow('unreachable');
    out.push(
      `${c.bold('KEK')} ${k.kek} wraps ${k.versions.join(', ')}: ${state}${k.latencyMs !== null ? `, answered in ${k.latencyMs} ms` : ''}${k.problem && k.state !== 'enabled' ? ` (${k.problem})` : ''}`,
    );
  }

  if (r.rotation) {
    out.push(
      `${c.bold('Rotation')} #${r.rotation.id}: phase ${c.bold(r.rotation.phase)}, ${r.rotation.oldVersion ?? '?'} → ${r.rotation.newVersion ?? '?'}${r.rotation.emergency ? c.red(' (emergency)') : ''}, opened ${utc(r.rotation.openedAt)}` +
        (r.rotation.verify
          ? `\n  last verify: ${r.rotation.verify.scope}, ${r.rotation.verify.outcome === 'passed' ? c.green('passed') : c.red('failed')} ${r.rotation.verify.at ? utc(r.rotation.verify.at) : ''}`
          : '') +
        reencryptLines(r.rotation, c, now) +
        runbookLine(r.rotation, c) +
        (r.rotation.rollbackDeadline ? `\n  rollback window ends ${utc(r.rotation.rollbackDeadline)}` : '') +
        (r.rotation.reencrypt.some((p) => p.state === 'running') && !r.rotation.jobs.every((j) => j.dryRun)
          ? `\n  next: wait for the running reencrypt to finish (\`keyctl reencrypt --status\` shows how far it is); then ${nextStep('reencrypted')}`
          : `\n  next: ${nextStep(r.rotation.phase)}`) +
        (r.rotation.refusedNow ? `\n  ${c.yellow(`not yet — ${r.rotation.refusedNow}`)}` : ''),
    );
  } else {
    out.push(`${c.bold('Rotation')}: none open`);
  }
  const days = Math.round((new Date(r.nextRotationDue).getTime() - now.getTime()) / 86_400_000);
  out.push(
    `${c.bold('Next rotation due')} ${r.nextRotationDue.slice(0, 10)} ` +
      (r.overdue
        ? c.red(`(overdue by ${-days} day${days === -1 ? '' : 's'})`)
        : `(in ${days} day${days === 1 ? '' : 's'}; every ${r.rotationIntervalDays} days)`),
  );

  if (r.targets.length === 0) {
    out.push('', 'No targets configured: add encrypted columns under targets: in keyctl.yaml.');
  } else {
    const allVersions = [...new Set(r.targets.flatMap((t) => Object.keys(t.counts)))].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
    // A plaintext column only while a target being onboarded (plaintext: encrypt) still holds some.
    const withPlaintext = r.targets.some((t) => t.plaintext > 0);
    const counts = new Table({ head: ['column', ...allVersions, ...(withPlaintext ? ['plaintext'] : []), 'null', 'unparseable', 'total'], style });
    for (const t of r.targets) {
      counts.push([
        `${t.table}.${t.column}`,
        ...allVersions.map((v) => {
          const count = t.counts[v] ?? 0;
          const s = n(count);
          return t.unknownVersions.includes(v) && count > 0 ? c.red(`${s}?`) : v === r.primary || count === 0 ? s : c.yellow(s);
        }),
        ...(withPlaintext ? [t.plaintext > 0 ? c.yellow(n(t.plaintext)) : '0'] : []),
        n(t.null),
        t.unparseable > 0 ? c.red(n(t.unparseable)) : '0',
        n(t.total),
      ]);
    }
    out.push('', counts.toString());
    // Blind indexes beside the encrypted columns: per version, as the application queries them.
    for (const b of r.blindIndexes) {
      const parts = [
        ...Object.entries(b.counts).map(([v, count]) => (v === r.primary || count === 0 ? `${v} ${n(count)}` : c.yellow(`${v} ${n(count)}`))),
        `null ${n(b.null)}`,
        ...(b.unparseable > 0 ? [c.red(`unparseable ${n(b.unparseable)}`)] : []),
      ];
      out.push(`Blind index ${b.table}.${b.column} (of ${b.source}): ${parts.join(', ')}`);
    }
    // Fernet tokens do not name their key: say what placing them under a version cost.
    const fernet = r.targets.filter((t) => (t.fernet?.tokens ?? 0) > 0);
    if (fernet.length > 0) {
      const tokens = fernet.reduce((a, t) => a + t.fernet!.tokens, 0);
      const tried = fernet.reduce((a, t) => a + t.fernet!.keysTried, 0);
      out.push(
        `${n(tokens)} Fernet token(s) in ${fernet.map((t) => `${t.table}.${t.column}`).join(', ')}: placed by trying keys newest first, ${n(tried)} HMAC(s) (${(tried / tokens).toFixed(1)} per token)`,
      );
    }
  }
  if (problems.length > 0) {
    out.push('', c.red('Problems:'), ...problems.map((p) => `  - [${p.code}] ${p.message}`));
  }
  return out.join('\n');
}
