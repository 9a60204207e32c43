/**
 * `keyctl reencrypt`: runs the engine with progress; Ctrl-C / SIGTERM finish the current batch,
 * save the cursor and return INTERRUPTED; a second signal stops at once (still safe: each batch is
 * one statement in one transaction). Signals come through the runtime's hook, not `process`.
 */
import path from 'node:path';
import { ExitCode } from '../../base/exit-codes.js';
import { reencrypt } from '../../core/rotation/reencrypt.js';
import { controlFilePath, describeSettings, parseSetting, writeControl, type ControlSettings } from '../../reencrypt/control.js';
import { jobsDir, listJobs, type JobView } from '../../reencrypt/jobs.js';
import { RefusedError } from '../../base/errors.js';
import type { TenantsReencryptReport } from '../../core/rotation/reencrypt-tenants.js';
import { formatCount } from '../../ui/format.js';
import { describeJob, duration } from '../../ui/jobs.js';
import { nextStep } from '../../rotation/machine.js';
import type { ProgressEvent, TableResult } from '../../reencrypt/engine.js';
import { startProgress, type ProgressLine } from '../../ui/progress.js';
import { withCoreContext, type CliRuntime, type Signal } from '../runtime.js';
import { DEFAULT_CHUNK_TIME, type ReencryptOptions } from '../specs.js';

/**
 * Rows per second over the last ~10 s, not the lifetime average (a paused hour would skew it).
 * Until a window spans a second (at the start, after a pause) the last rate stands: two events a
 * few milliseconds apart are no measure.
 */
class RecentRate {
  private samples: Array<[number, number]> = [];
  private last = 0;
  add(t: number, rows: number): number {
    this.samples.push([t, rows]);
    while (this.samples.length > 2 && t - this.samples[0]![0] > 10_000) this.samples.shift();
    const [t0, r0] = this.samples[0]!;
    if (t - t0 >= 1000) this.last = ((rows - r0) * 1000) / (t - t0);
    return this.last;
  }
  reset(): void {
    this.samples = [];
  }
}

/** The same command with the same limits, for the operator to paste. */
function resumeCommand(rt: CliRuntime, f: ReencryptOptions): string {
  const parts = ['keyctl'];
  if (rt.flags.config) parts.push('--config', rt.flags.config);
  parts.push('reencrypt');
  const flag = (name: string, v: string | number | undefined) => v !== undefined && parts.push(name, String(v));
  flag('--batch-size', f.batchSize);
  if (f.chunkTime !== DEFAULT_CHUNK_TIME) flag('--chunk-time', f.chunkTime);
  flag('--max-rate', f.maxRate);
  flag('--sleep', f.sleep);
  flag('--pause-file', f.pauseFile);
  flag('--max-load', f.maxLoad);
  flag('--critical-load', f.criticalLoad);
  flag('--table', f.table);
  flag('--shard', f.shard && shardText(f.shard));
  flag('--crypto-workers', f.cryptoWorkers);
  flag('--tenant', f.tenant);
  if (f.allTenants) parts.push('--all-tenants');
  return parts.join(' ');
}

function shardText(s: { index: number; count: number }): string {
  return `${s.index}/${s.count}`;
}

/** `keyctl reencrypt --set KEY=VALUE …`: change a running job's limits (it applies them before its next batch). */
async function setLive(rt: CliRuntime, settings: string[]): Promise<number> {
  const parsed: ControlSettings = Object.assign({}, ...settings.map(parseSetting));
  return withCoreContext(rt, async (ctx) => {
    const jobs = liveJobs(ctx.config.baseDir, ctx.config.keyring, ctx.now());
    if (jobs.length === 0)
      throw new RefusedError(
        `no reencrypt of keyring ${ctx.config.keyring} is running from ${ctx.config.baseDir}: there is nothing to change`,
        'give a new run its limits as flags, e.g. `keyctl reencrypt --max-rate 500`; `--set` changes a run that is already going (`keyctl reencrypt --status` lists them)',
      );
    const file = controlFilePath(ctx.config.baseDir);
    const since = Math.min(...jobs.map((j) => Date.parse(j.startedAt)));
    const written = writeControl(file, parsed, ctx.actor, ctx.now().getTime(), since);
    const them = jobs.length === 1 ? 'it applies it' : `each of the ${jobs.length} runs applies it`;
    rt.output.result(
      { control: { file, set: parsed, settings: written.settings, by: written.by, at: new Date(written.at).toISOString(), jobs: jobs.length } },
      () => `set ${describeSettings(parsed)} for the running reencrypt (${them} before its next batch)\n  now: ${describeSettings(written.settings)}`,
    );
    return ExitCode.OK;
  });
}

/** Jobs of this keyring that run now: alive on this host, or reported from another in the last two minutes. */
function liveJobs(baseDir: string, keyring: string, now: Date): JobView[] {
  return listJobs(jobsDir(baseDir)).filter(
    (j) => j.keyring === keyring && (j.state === 'running' || (j.state === 'remote' && now.getTime() - Date.parse(j.updatedAt) < 120_000)),
  );
}

/** `keyctl reencrypt --status`: the runs this project's directory knows of, alive or killed. */
async function showJobs(rt: CliRuntime): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    const dir = jobsDir(ctx.config.baseDir);
    const jobs = listJobs(dir).filter((j) => j.keyring === ctx.config.keyring);
    const now = ctx.now();
    rt.output.result({ jobs: jobs.map(({ file: _file, ...j }) => j) }, () =>
      jobs.length === 0
        ? `no reencrypt of keyring ${ctx.config.keyring} is running from ${ctx.config.baseDir}; \`keyctl status\` shows where the last pass stopped`
        : jobs.flatMap((j) => describeJob(j, now)).join('\n'),
    );
    return ExitCode.OK;
  });
}

export async function run(rt: CliRuntime, f: ReencryptOptions): Promise<number> {
  if (f.status) return showJobs(rt);
  if (f.set && f.set.length > 0) return setLive(rt, f.set);
  const pauseFile = f.pauseFile ? path.resolve(rt.cwd, f.pauseFile) : undefined;
  const shard = f.shard;

  const stop = new AbortController();
  let progress: ProgressLine | undefined;
  let signals = 0;
  const onSignal = (sig: Signal) => {
    signals++;
    if (signals === 1) {
      // Through the progress line, so a spinner is cleared first instead of left behind.
      const text = `keyctl: ${sig}: finishing the current batch and saving the cursor (press Ctrl-C again to stop at once)`;
      if (progress) progress.log(text);
      else rt.output.info(text);
      stop.abort();
    } else {
      rt.output.info(`keyctl: stopping now; the last committed batch is saved. Run the same command to resume.`);
      rt.exitNow(ExitCode.INTERRUPTED);
    }
  };
  const unsubscribe = [rt.onSignal('SIGINT', onSignal), rt.onSignal('SIGTERM', onSignal)];
  progress = await startProgress(rt.output, f.dryRun ? 'reencrypt --dry-run: scanning…' : 'reencrypt: starting…');
  const rate = new RecentRate();
  let currentTable = '';
  let lastEvent: ProgressEvent | null = null;
  // While paused the rate and ETA stay as they were (a pause is not a slowdown); the rate starts
  // over after it, so the paused minutes do not drag it down.
  let shownRate = 0;
  let wasPaused = false;
  const line = (e: ProgressEvent): string => {
    const paused = e.throttle?.startsWith('paused') ?? false;
    if (wasPaused && !paused) rate.reset();
    wasPaused = paused;
    if (!paused && e.settled) shownRate = rate.add(Date.now(), e.rowsScanned);
    const r = shownRate;
    const pct = e.rowsTotal > 0 ? Math.min(100, Math.floor((100 * e.rowsScanned) / e.rowsTotal)) : 100;
    const eta = paused ? 'paused' : r > 0 ? duration(Math.max(0, e.rowsTotal - e.rowsScanned) / r) : '?';
    const n = formatCount;
    // Why it is slow comes right after the rate it explains, so a narrow terminal cuts the
    // batch size rather than the throttle reason.
    return (
      `${e.table}: ${n(e.rowsScanned)}/${n(e.rowsTotal)} rows ${pct}%, ${n(Math.round(r))} rows/s, ETA ${eta}` +
      (e.throttle ? ` (${e.throttle})` : '') +
      `, ${n(e.valuesRewritten)} ${f.dryRun ? 'to rewrite' : 'rewritten'}, ${e.failures} failed, batch ${n(e.batchSize)}${e.pass > 1 ? `, pass ${e.pass}` : ''}`
    );
  };
  const all = rt.flags.tenancy?.all === true;
  // --all-tenants: one pass over the tables for every tenant (core/rotation/reencrypt-tenants.ts).
  const { tenancy: _, ...keyringFlags } = rt.flags;
  try {
    return await withCoreContext(all ? { ...rt, flags: keyringFlags } : rt, async (ctx) => {
      const started = Date.now();
      const options: Parameters<typeof reencrypt>[1] = {
        dryRun: Boolean(f.dryRun),
        batchSize: f.batchSize,
        chunkTimeMs: f.chunkTime * 1000,
        maxRate: f.maxRate,
        sleepMs: f.sleep,
        pauseFile,
        maxLoad: f.maxLoad,
        criticalLoad: f.criticalLoad,
        table: f.table,
        shard,
        signal: stop.signal,
        ...(f.cryptoWorkers !== undefined ? { cryptoWorkers: f.cryptoWorkers } : {}),
        job: { dir: jobsDir(ctx.config.baseDir), command: resumeCommand(rt, f) },
        control: {
          file: controlFilePath(ctx.config.baseDir),
          onChange: (text) => {
            // On the line at once (the next progress event shows the new limits) and in the log.
            progress!.log(`keyctl: control: ${text}`);
            if (lastEvent) progress!.update(line({ ...lastEvent, throttle: `control: ${text}` }));
          },
        },
        onRetry: (m) => progress!.log(`keyctl: ${m}`),
        onProgress: (e) => {
          if (e.table !== currentTable) {
            if (lastEvent) progress!.log(line(lastEvent));
            currentTable = e.table;
            rate.reset();
          } else if (lastEvent && e.pass !== lastEvent.pass) {
            // A new pass counts its rows from 0: the rate starts over with it.
            rate.reset();
          }
          // A throttle starting or ending is news: shown at once, also in logs.
          const text = line(e);
          if (lastEvent && e.throttle !== lastEvent.throttle) progress!.news(text);
          else progress!.update(text);
          lastEvent = e;
        },
      };
      if (all) {
        const { job: _job, control: _control, ...fleet } = options;
        const { reencryptAllTenants } = await import('../../core/rotation/reencrypt-tenants.js');
        const r = await reencryptAllTenants(ctx, fleet);
        progress!.stop();
        return renderAllTenants(rt, r, (Date.now() - started) / 1000, resumeCommand(rt, f));
      }
      const report = await reencrypt(ctx, options);
      progress!.stop();
      const secs = (Date.now() - started) / 1000;
      const c = rt.output.out;
      const resume = resumeCommand(rt, f);
      const summary = summaryOf(report, secs);
      rt.output.result(
        {
          dryRun: report.dryRun,
          target: report.target,
          rotation: { id: report.rotation.id, phase: report.rotation.phase },
          summary,
          tables: report.tables,
          failures: report.failures,
          remaining: report.remaining,
          interrupted: report.interrupted,
          abortedBecause: report.abortedBecause ?? null,
          noop: report.noop ?? null,
          ...(report.interrupted ? { resume } : {}),
        },
        () => {
          const n = formatCount;
          const lines = report.tables.map(
            (t) =>
              `${t.table}: scanned ${n(t.rowsScanned)} rows, ${report.dryRun ? `would rewrite ${n(t.valuesPlanned)} values${t.plaintextPlanned > 0 ? ` (${n(t.plaintextPlanned)} of them plaintext, to encrypt for the first time)` : ''}` : `rewrote ${n(t.rowsUpdated)} rows (${n(t.valuesPlanned)} values${t.plaintextPlanned > 0 ? `, ${n(t.plaintextPlanned)} of them plaintext encrypted for the first time` : ''}), ${n(t.rowsSkippedConcurrent)} skipped (changed by the application meanwhile)`}, ${t.failures.length} value(s) failed${t.keysTried > 0 ? `, ${n(t.keysTried)} key(s) tried to place Fernet tokens` : ''}${t.indexesPlanned > 0 ? `, ${n(t.indexesPlanned)} blind index value(s) ${report.dryRun ? 'to recompute' : 'recomputed'}` : ''}${t.resumedFrom !== null ? ` (resumed after pk ${String(t.resumedFrom)})` : ''}`,
          );
          lines.push(`${n(summary.rowsScanned)} rows in ${duration(secs)} (${n(summary.rowsPerSecond)} rows/s)`);
          for (const x of report.failures.slice(0, 50)) lines.push(`  ${c.red('cannot decrypt')} ${x.table}.${x.column} pk=${x.pk}: ${x.reason}`);
          if (report.failures.length > 50) lines.push(`  … ${report.failures.length - 50} more (use --json for the full list)`);
          if (report.noop) lines.push(`${c.green('✓')} ${report.noop}; next: ${nextStep(report.rotation.phase)}`);
          else if (report.abortedBecause)
            lines.push(`${c.yellow('stopped')}: ${report.abortedBecause}; progress is saved; when the database is calmer, resume with: ${resume}`);
          else if (report.interrupted) lines.push(`${c.yellow('interrupted')}: progress is saved; resume with: ${resume}`);
          else if (report.dryRun)
            lines.push(`dry run: nothing was written. ${report.failures.length > 0 ? 'Values that fail would be left as they are.' : ''}`.trim());
          else if (report.remaining === 0)
            lines.push(
              `${c.green('✓')} every value is under ${report.target}; rotation #${report.rotation.id} is in phase ${c.bold(report.rotation.phase)}; next: ${nextStep(report.rotation.phase)}`,
            );
          else if (report.failures.length > 0)
            lines.push(
              `${report.remaining} value(s) are still not under ${report.target}: those that cannot be decrypted need repair (or removal) by hand, then run reencrypt again`,
            );
          else if (shard && report.tables.every((t) => t.remaining === 0))
            lines.push(
              `shard ${shardText(shard)} is done; ${report.remaining} value(s) of other shards are still not under ${report.target} (the last shard to finish moves the rotation on)`,
            );
          else if (f.table) lines.push(`${report.remaining} value(s) in other targets are still not under ${report.target}; run reencrypt without --table`);
          else
            lines.push(
              `${report.remaining} value(s) are still not under ${report.target} after several passes: an application instance is probably still writing with an old key; make it reload the keyring, then run reencrypt again`,
            );
          return lines.join('\n');
        },
      );
      if (report.interrupted) return ExitCode.INTERRUPTED;
      if (report.failures.length > 0) return ExitCode.PROBLEMS_FOUND;
      // Not finished although nothing failed: a writer keeps using an old key (after --table, other tables remain).
      // With --shard, this process answers for its own shard only.
      const left = shard ? report.tables.reduce((n, t) => n + t.remaining, 0) : report.remaining;
      return left > 0 && !f.table && !report.dryRun ? ExitCode.PROBLEMS_FOUND : ExitCode.OK;
    });
  } finally {
    progress?.stop();
    for (const off of unsubscribe) off();
  }
}

/** The run's totals, as `--json` gives them under `summary`. */
function summaryOf(r: { tables: TableResult[]; failures: unknown[] }, secs: number) {
  const rowsScanned = r.tables.reduce((n, t) => n + t.rowsScanned, 0);
  return {
    rowsScanned,
    rowsRewritten: r.tables.reduce((n, t) => n + t.rowsUpdated, 0),
    rowsSkippedConcurrent: r.tables.reduce((n, t) => n + t.rowsSkippedConcurrent, 0),
    valuesFailed: r.failures.length,
    seconds: Math.round(secs * 10) / 10,
    rowsPerSecond: secs > 0 ? Math.round(rowsScanned / secs) : 0,
  };
}

/** `reencrypt --all-tenants`: the pass over the tables, then each tenant's rotation after it. */
function renderAllTenants(rt: CliRuntime, r: TenantsReencryptReport, secs: number, resume: string): number {
  const n = formatCount;
  const c = rt.output.out;
  const summary = summaryOf(r, secs);
  const rowsScanned = summary.rowsScanned;
  rt.output.result({ allTenants: true, ...r, summary, ...(r.interrupted ? { resume } : {}) }, () => {
    const lines = r.tables.map(
      (t) =>
        `${t.table}: scanned ${n(t.rowsScanned)} rows, ${r.dryRun ? `would rewrite ${n(t.valuesPlanned)} values` : `rewrote ${n(t.rowsUpdated)} rows (${n(t.valuesPlanned)} values), ${n(t.rowsSkippedConcurrent)} skipped (changed by the application meanwhile)`}, ${t.failures.length} value(s) failed${t.resumedFrom !== null ? ` (resumed after pk ${String(t.resumedFrom)})` : ''}`,
    );
    lines.push(`${n(rowsScanned)} rows in ${duration(secs)} (${n(summary.rowsPerSecond)} rows/s), one pass for ${n(r.tenants.length)} tenant(s)`);
    for (const x of r.failures.slice(0, 50)) lines.push(`  ${c.red('cannot decrypt')} ${x.table}.${x.column} pk=${x.pk}: ${x.reason}`);
    const done = r.tenants.filter((t) => t.remaining === 0);
    if (r.tenants.length === 0)
      lines.push('no tenant has a rotation in a phase reencrypt moves forward (after dual-key, or rolling back): nothing to re-encrypt');
    else if (r.stoppedBecause)
      lines.push(`${c.yellow('stopped')}: ${r.stoppedBecause}; progress is saved; keyctl status --all-tenants shows where each tenant stands`);
    else if (r.interrupted)
      lines.push(`${c.yellow(r.abortedBecause ? 'stopped' : 'interrupted')}: ${r.abortedBecause ?? 'progress is saved'}; resume with: ${resume}`);
    else if (!r.dryRun) {
      lines.push(
        `${c.green('✓')} ${n(done.length)} of ${n(r.tenants.length)} tenant(s) have every value under their primary (now ${[...new Set(done.map((t) => t.phase))].join(', ') || '-'}); next: keyctl verify --all-tenants`,
      );
      for (const t of r.tenants.filter((x) => x.remaining > 0)) lines.push(`  tenant ${t.tenant}: ${n(t.remaining)} value(s) still not under ${t.target}`);
    }
    if (r.skipped.length > 0)
      lines.push(
        `not in this pass: ${r.skipped.length} tenant(s) (${r.skipped
          .slice(0, 5)
          .map((s) => `${s.tenant}: ${s.reason}`)
          .join('; ')}${r.skipped.length > 5 ? '; …' : ''})`,
      );
    return lines.join('\n');
  });
  // Stopped because a tenant's rotation moved on (a rollback, say): a guard's answer, as for one keyring.
  if (r.stoppedBecause) return ExitCode.REFUSED;
  if (r.interrupted) return ExitCode.INTERRUPTED;
  if (r.failures.length > 0) return ExitCode.PROBLEMS_FOUND;
  return r.remaining > 0 && !r.dryRun ? ExitCode.PROBLEMS_FOUND : ExitCode.OK;
}
