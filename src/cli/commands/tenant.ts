/** `keyctl tenant list|add` and `keyctl shred`: per-tenant keyrings (docs/tenants.md). */
import { UsageError } from '../../base/errors.js';
import { ExitCode } from '../../base/exit-codes.js';
import type { TenantsReport } from '../../core/tenants.js';
import { formatCount } from '../../ui/format.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { ShredOptions, TenantAddOptions, TenantListOptions } from '../specs.js';

export async function list(rt: CliRuntime, f: TenantListOptions): Promise<number> {
  const { tenantSummaries } = await import('../../core/tenants.js');
  const report = await withCoreContext(rt, (ctx) => tenantSummaries(ctx, { counts: f.counts }));
  rt.output.result(report, () => renderTenants(report));
  return ExitCode.OK;
}

/** The table `tenant list` and `status --all-tenants` print. */
export function renderTenants(r: TenantsReport): string {
  const lines: string[] = [];
  const rows = r.tenants.map((t) => [
    t.tenant,
    t.shredded ? 'shredded' : (t.primary ?? '-'),
    t.versions.map((v) => `${v.version}${v.material === 'destroyed' ? '✗' : ''}`).join(' '),
    t.rotation ? `#${t.rotation.id} ${t.rotation.phase}${t.rotation.emergency ? ' (emergency)' : ''}` : '-',
    t.shredded ? `shredded ${t.shreddedAt?.slice(0, 10)}` : `${t.nextRotationDue?.slice(0, 10) ?? '-'}${t.overdue ? ' OVERDUE' : ''}`,
    t.values === null
      ? '(not counted)'
      : Object.entries(t.values)
          .map(([v, n]) => `${v} ${formatCount(n)}`)
          .join(', ') || '0',
  ]);
  const header = ['tenant', 'primary', 'versions', 'open rotation', 'next rotation due', 'values'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  lines.push(fmt(header), ...rows.map(fmt));
  lines.push('', `${formatCount(r.tenants.length)} tenant(s), ${r.tenants.filter((t) => t.shredded).length} shredded`);
  for (const u of r.unknownTenants)
    lines.push(
      u.tenant === '#null'
        ? `${formatCount(u.rows)} row(s) have no tenant (NULL in the tenancy column): no keyring can be chosen for them`
        : `tenant value ${JSON.stringify(u.tenant)} in ${formatCount(u.rows)} row(s) has no keyring: keyctl tenant add ${u.tenant} (keyctl never guesses one)`,
    );
  for (const t of r.tenants.filter((x) => (x.keyBackups?.length ?? 0) > 0))
    lines.push(
      `tenant ${t.tenant} (shredded): ${t.keyBackups!.length} key backup(s) still hold its keys (newest ${t.keyBackups![0]!.createdAt.slice(0, 10)}); retention never removes them: keyctl backup --prune-tenant ${t.tenant}`,
    );
  for (const t of r.tenants.filter((x) => x.unreadable > 0))
    lines.push(`tenant ${t.tenant}: ${formatCount(t.unreadable)} value(s) under a version its keyring does not hold`);
  return lines.join('\n');
}

export async function add(rt: CliRuntime, _f: TenantAddOptions, args: string[]): Promise<number> {
  const id = args[0]!;
  const { addTenant } = await import('../../core/tenants.js');
  const r = await withCoreContext(rt, (ctx) => addTenant(ctx, id));
  rt.output.result(
    { tenant: r },
    () =>
      `${rt.output.out.green('✓')} tenant ${r.tenant}: keyring ${r.keyring}, primary ${r.primary} (fingerprint ${r.fingerprint}${r.adopted ? ', adopted from the keystore' : ''}) in ${r.keystore}\n  next: keyctl status --tenant ${r.tenant}`,
  );
  return ExitCode.OK;
}

export async function shred(rt: CliRuntime, f: ShredOptions): Promise<number> {
  const id = f.tenant;
  if (!f.reason?.trim()) throw new UsageError('shred needs --reason TEXT (recorded in the audit)', `keyctl shred --tenant ${id} --reason "erasure request #…"`);
  if (!f.yes && !rt.stdinIsTTY)
    throw new UsageError(
      'shred asks you to type the tenant id, and there is no terminal to ask on',
      `pass --yes: keyctl shred --tenant ${id} --reason "…" --yes`,
    );
  if (!f.yes) {
    rt.output.warn(`shred destroys every key of tenant ${id}: its values in the database and in every database backup can never be read again`);
    const typed = (await rt.ask(`type the tenant id (${id}) to shred it: `)).trim();
    if (typed !== id) {
      rt.output.info('not shredded: the id typed does not match');
      return ExitCode.REFUSED;
    }
  }
  const { shredTenant } = await import('../../core/tenants.js');
  const reason = f.reason;
  const r = await withCoreContext(rt, (ctx) => shredTenant(ctx, id, reason));
  rt.output.result(
    { shred: r },
    () =>
      `${rt.output.out.green('✓')} tenant ${r.tenant} shredded${r.resumed ? ' (finishing an earlier run)' : ''}: ${r.versions.join(', ')} destroyed in the keystore and marked so in the registry${r.approvedBy.length ? `; approved by ${r.approvedBy.join(', ')}` : ''}\n` +
      `  key backups made before still hold its keys, and retention never removes them: keyctl backup --prune-tenant ${r.tenant} (keyctl tenant list names them)`,
  );
  return ExitCode.OK;
}
