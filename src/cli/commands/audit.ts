/** `keyctl audit`: a rotation's history as evidence (table, JSON or Markdown), or `--verify` the chain. */
import { listAudit, verifyAuditChain, type AuditRow } from '../../rotation/store.js';
import { ExitCode } from '../../base/exit-codes.js';
import { UsageError } from '../../base/errors.js';
import { getRotation, latestRotation, openRotation, type Rotation } from '../../rotation/store.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { AuditOptions } from '../specs.js';

function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

function summary(r: Pick<AuditRow, 'details'>): string {
  const d = r.details ?? {};
  const parts: string[] = [];
  if (typeof d.reason === 'string' && d.reason) parts.push(d.reason);
  if (typeof d.fingerprint === 'string') parts.push(`fingerprint ${d.fingerprint}`);
  if (d.emergency === true) parts.push('EMERGENCY');
  if (typeof d.material === 'string') parts.push(`key ${d.material}`);
  if (typeof d.seconds === 'number') parts.push(`${d.seconds.toFixed(1)} s`);
  if (typeof d.failures === 'number' && d.failures > 0) parts.push(`${d.failures} failed`);
  return parts.join('; ');
}

export async function run(rt: CliRuntime, f: AuditOptions): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    if (f.verify) {
      const reports = await verifyAuditChain(ctx.db);
      const problems = reports.flatMap((r) => r.problems.map((p) => `${r.keyring}: ${p}`));
      rt.output.result({ intact: problems.length === 0, chains: reports, problems }, () =>
        [
          ...reports.map((r) => `keyring ${r.keyring}: ${r.rows} row(s), head seq ${r.headSeq}, head hash ${r.lastHash}`),
          problems.length === 0
            ? `${rt.output.out.green('✓')} the audit chain is intact`
            : `${rt.output.out.red('✗ the audit chain is broken:')}\n${problems.map((p) => `  - ${p}`).join('\n')}`,
        ].join('\n'),
      );
      return problems.length === 0 ? ExitCode.OK : ExitCode.PROBLEMS_FOUND;
    }
    let rotation: Rotation | null = null;
    if (f.rotation !== undefined) {
      rotation = await getRotation(ctx.db, f.rotation);
      if (!rotation || rotation.keyring !== ctx.config.keyring) {
        throw new UsageError(`keyring ${ctx.config.keyring} has no rotation #${f.rotation}`, 'run `keyctl audit --all` to see every rotation of this keyring');
      }
    } else if (!f.all) {
      rotation = (await openRotation(ctx.db, ctx.config.keyring)) ?? (await latestRotation(ctx.db, ctx.config.keyring));
    }
    const rows = await listAudit(ctx.db, ctx.config.keyring, rotation ? { rotationId: rotation.id } : {});
    const entries = rows.map((r, i) => ({
      ...r,
      createdAt: r.createdAt.toISOString(),
      sincePreviousMs: i === 0 ? 0 : r.createdAt.getTime() - rows[i - 1]!.createdAt.getTime(),
    }));
    const head = rotation
      ? `Rotation #${rotation.id} of keyring ${rotation.keyring}: ${rotation.oldVersion} → ${rotation.newVersion}${rotation.emergency ? ' (EMERGENCY)' : ''}, opened ${rotation.openedAt.toISOString()} by ${rotation.openedBy}, phase ${rotation.phase}${rotation.closedAt ? `, closed ${rotation.closedAt.toISOString()} (took ${duration(rotation.closedAt.getTime() - rotation.openedAt.getTime())})` : ''}`
      : `Audit history of keyring ${ctx.config.keyring}`;
    if (f.format === 'json' || rt.output.json) {
      rt.output.data({ summary: head, rotation, entries });
      return ExitCode.OK;
    }
    const cols = ['time (UTC)', 'action', 'phase', 'actor', 'versions', 'rows', 'outcome', '+time', 'details'];
    const cells = entries.map((e) => [
      e.createdAt.replace('T', ' ').slice(0, 19),
      e.action,
      e.fromPhase || e.toPhase ? `${e.fromPhase ?? '–'} → ${e.toPhase ?? '–'}` : '',
      e.actor,
      e.oldVersion || e.newVersion ? `${e.oldVersion ?? ''}→${e.newVersion ?? ''}` : '',
      e.rowsAffected === null ? '' : String(e.rowsAffected),
      e.outcome,
      e.sincePreviousMs ? duration(e.sincePreviousMs) : '',
      summary(e),
    ]);
    if (f.format === 'markdown') {
      const esc = (s: string) => s.replace(/\|/g, '\\|');
      const md = [`## ${head}`, '', `| ${cols.join(' | ')} |`, `|${cols.map(() => '---').join('|')}|`, ...cells.map((r) => `| ${r.map(esc).join(' | ')} |`)];
      rt.output.result({}, () => md.join('\n'));
      return ExitCode.OK;
    }
    const { default: Table } = await import('cli-table3');
    const plain = rt.output.out.level === 0;
    const table = new Table({ head: cols, style: { head: plain ? [] : ['cyan'], border: plain ? [] : ['grey'] } });
    for (const r of cells) table.push(r);
    rt.output.result({}, () => `${head}\n${table.toString()}`);
    return ExitCode.OK;
  });
}
