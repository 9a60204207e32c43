/**
 * `keyctl reencrypt`: runs the engine with progress; Ctrl-C / SIGTERM finish the current batch,
 * save the cursor and exit INTERRUPTED; a second signal stops at once (still safe: each batch is
 * one statement in one transaction).
 */
import { ExitCode } from '../../core/exit-codes.js';
import { UsageError } from '../../core/errors.js';
import { reencrypt } from '../../core/rotation/reencrypt.js';
import { NEXT_STEP } from '../../core/rotations.js';
import { startProgress } from '../../ui/progress.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';

interface Flags {
  dryRun?: boolean;
  batchSize: string;
  table?: string;
  cryptoWorkers?: string;
}

export async function run(rt: CliRuntime, f: Flags): Promise<number> {
  const batchSize = Number(f.batchSize);
  if (!/^\d+$/.test(f.batchSize) || batchSize < 1) throw new UsageError(`--batch-size expects a whole number ≥ 1, found "${f.batchSize}"`);
  if (f.cryptoWorkers !== undefined && !/^\d+$/.test(f.cryptoWorkers)) throw new UsageError(`--crypto-workers expects a whole number ≥ 0, found "${f.cryptoWorkers}"`);
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      rt.output.info(`\nkeyctl: ${sig}: finishing the current batch and saving the cursor (press Ctrl-C again to stop at once)`);
      stop.abort();
    } else {
      rt.output.info(`keyctl: stopping now; the last committed batch is saved. Run the same command to resume.`);
      process.exit(ExitCode.INTERRUPTED);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const progress = await startProgress(rt.output, f.dryRun ? 'reencrypt --dry-run: scanning…' : 'reencrypt: starting…');
  try {
    return await withCoreContext(rt, async (ctx) => {
      const started = Date.now();
      const report = await reencrypt(ctx, {
        dryRun: Boolean(f.dryRun),
        batchSize,
        table: f.table,
        ...(f.cryptoWorkers !== undefined ? { cryptoWorkers: Number(f.cryptoWorkers) } : {}),
        signal: stop.signal,
        onProgress: (e) => {
          const secs = (Date.now() - started) / 1000;
          const rate = secs > 0 ? Math.round(e.rowsScanned / secs) : 0;
          const pct = e.rowsTotal > 0 ? ` (${Math.min(100, Math.floor((100 * e.rowsScanned) / e.rowsTotal))}%)` : '';
          progress.update(`${e.table}: ${e.rowsScanned.toLocaleString('en-US')}/${e.rowsTotal.toLocaleString('en-US')} rows${pct}, ${e.valuesRewritten.toLocaleString('en-US')} ${f.dryRun ? 'to rewrite' : 'rows rewritten'}, ${e.failures} failed, ${rate.toLocaleString('en-US')} rows/s${e.pass > 1 ? `, pass ${e.pass}` : ''}`);
        },
      });
      progress.stop();
      const c = rt.output.out;
      const resume = `keyctl ${rt.flags.config ? `--config ${rt.flags.config} ` : ''}reencrypt --batch-size ${batchSize}${f.table ? ` --table ${f.table}` : ''}`;
      rt.output.result(
        {
          dryRun: report.dryRun,
          target: report.target,
          rotation: { id: report.rotation.id, phase: report.rotation.phase },
          tables: report.tables,
          failures: report.failures,
          remaining: report.remaining,
          interrupted: report.interrupted,
          ...(report.interrupted ? { resume } : {}),
        },
        () => {
          const lines = report.tables.map(
            (t) =>
              `${t.table}: scanned ${t.rowsScanned.toLocaleString('en-US')} rows, ${report.dryRun ? `would rewrite ${t.valuesPlanned.toLocaleString('en-US')} values` : `rewrote ${t.rowsUpdated.toLocaleString('en-US')} rows`}, ${t.failures.length} value(s) failed${t.resumedFrom !== null ? ` (resumed after pk ${String(t.resumedFrom)})` : ''}`,
          );
          for (const x of report.failures.slice(0, 50)) lines.push(`  ${c.red('cannot decrypt')} ${x.table}.${x.column} pk=${x.pk}: ${x.reason}`);
          if (report.failures.length > 50) lines.push(`  … ${report.failures.length - 50} more (use --json for the full list)`);
          if (report.interrupted) lines.push(`${c.yellow('interrupted')}: progress is saved; resume with: ${resume}`);
          else if (report.dryRun) lines.push(`dry run: nothing was written. ${report.failures.length > 0 ? 'Values that fail would be left as they are.' : ''}`.trim());
          else if (report.remaining === 0) lines.push(`${c.green('✓')} every value is under ${report.target}; rotation #${report.rotation.id} is in phase ${c.bold(report.rotation.phase)}; next: ${NEXT_STEP[report.rotation.phase]}`);
          else if (report.failures.length > 0) lines.push(`${report.remaining} value(s) are still not under ${report.target}: those that cannot be decrypted need repair (or removal) by hand, then run reencrypt again`);
          else if (f.table) lines.push(`${report.remaining} value(s) in other targets are still not under ${report.target}; run reencrypt without --table`);
          else lines.push(`${report.remaining} value(s) are still not under ${report.target} after several passes: an application instance is probably still writing with an old key; make it reload the keyring, then run reencrypt again`);
          return lines.join('\n');
        },
      );
      if (report.interrupted) return ExitCode.INTERRUPTED;
      if (report.failures.length > 0) return ExitCode.PROBLEMS_FOUND;
      // Not finished although nothing failed: a writer keeps using an old key (after --table, other tables remain).
      return report.remaining > 0 && !f.table && !report.dryRun ? ExitCode.PROBLEMS_FOUND : ExitCode.OK;
    });
  } finally {
    progress.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
