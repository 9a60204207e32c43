/**
 * `--all-tenants` for commands on one keyring: the command runs once per live tenant, in id order,
 * each with `--tenant ID`. Human output is each run's own, under a line naming the tenant; with
 * --json, one object lists every tenant's exit code and result. The exit code is the first
 * non-zero one; an interrupted run (Ctrl-C, exit 7) stops before the next tenant.
 */
import { ExitCode } from '../base/exit-codes.js';
import type { Output } from '../ui/output.js';
import { withCoreContext, type CliRuntime } from './runtime.js';

export async function runForAllTenants(
  rt: CliRuntime,
  capture: () => Promise<{ output: Output; text: () => string }>,
  run: (rt: CliRuntime) => Promise<number>,
): Promise<number> {
  const { liveTenants } = await import('../core/tenants.js');
  const { tenancy: _, ...keyringFlags } = rt.flags;
  const ids = await withCoreContext({ ...rt, flags: keyringFlags }, async (ctx) => {
    if (!ctx.config.tenancy) {
      const { UsageError } = await import('../base/errors.js');
      throw new UsageError(`--all-tenants: ${ctx.config.file} has no tenancy: section, so it has no tenants`, 'run the command without --all-tenants');
    }
    return liveTenants(ctx);
  });
  const results: Array<{ tenant: string; exitCode: number; result?: unknown }> = [];
  let status: number = ExitCode.OK;
  for (const [i, tenant] of ids.entries()) {
    const flags = { ...rt.flags, tenancy: { tenant, all: false } };
    // Commands a run starts (runbook steps) act on the same tenant.
    const invoke = (args: string[]) => rt.invoke(args.includes('--tenant') ? args : [...args, '--tenant', tenant]);
    if (rt.flags.json) {
      const c = await capture();
      let code: number;
      try {
        code = await run({ ...rt, flags, invoke, output: c.output });
      } catch (err) {
        code = c.output.error(err);
      }
      let result: unknown = null;
      try {
        result = JSON.parse(c.text());
      } catch {
        result = null;
      }
      results.push({ tenant, exitCode: code, result });
      if (status === ExitCode.OK) status = code;
      if (code === ExitCode.INTERRUPTED) break;
    } else {
      rt.output.info(`── tenant ${tenant} (${i + 1} of ${ids.length}) ──`);
      let code: number;
      try {
        code = await run({ ...rt, flags, invoke });
      } catch (err) {
        code = rt.output.error(err);
      }
      results.push({ tenant, exitCode: code });
      if (status === ExitCode.OK) status = code;
      if (code === ExitCode.INTERRUPTED) break;
    }
  }
  const failed = results.filter((r) => r.exitCode !== ExitCode.OK);
  const skipped = ids.slice(results.length);
  if (rt.flags.json) {
    rt.output.text(`${JSON.stringify({ ok: failed.length === 0, exitCode: status, tenants: results, notRun: skipped }, null, 2)}\n`);
  } else {
    const lines = [`all tenants: ${results.length - failed.length} of ${ids.length} ok`];
    if (failed.length > 0) lines.push(`failed: ${failed.map((f) => `${f.tenant} (exit ${f.exitCode})`).join(', ')}`);
    if (skipped.length > 0) lines.push(`not run (stopped after an interruption): ${skipped.join(', ')} — run the same command again`);
    rt.output.info(lines.join('\n'));
  }
  return status;
}
