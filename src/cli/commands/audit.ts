/** `keyctl audit`: a rotation's history as evidence (table, JSON or Markdown), or `--verify` the chain. */
import { listAudit, type AuditRow } from '../../rotation/store.js';
import { ExitCode } from '../../base/exit-codes.js';
import { ProblemsFoundError, UsageError } from '../../base/errors.js';
import { anchorAuditHead, resetAnchor } from '../../core/audit-anchor.js';
import { exportAudit, verifyAudit } from '../../core/audit.js';
import { getRotation, latestRotation, openRotation, type Rotation } from '../../rotation/store.js';
import { formatCount, formatIsoText, formatTime } from '../../ui/format.js';
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

/** A runbook-step row: the step and its kind, then what the operator typed or decided and what ran. */
function runbookSummary(d: Record<string, unknown>, showInputs: boolean): string {
  const parts: string[] = [`step ${String(d.step)}${typeof d.kind === 'string' ? ` (${d.kind})` : ''}`];
  if (typeof d.value === 'string') parts.push(`value ${JSON.stringify(d.value)}`);
  if (typeof d.skipped === 'string') parts.push(`skipped: ${d.skipped}`);
  if (typeof d.command === 'string') parts.push(`$ keyctl ${d.command}`);
  if (typeof d.exitCode === 'number' && d.exitCode !== 0) parts.push(`exit ${d.exitCode}`);
  if (typeof d.result === 'string') parts.push(d.result);
  if (typeof d.waitedSeconds === 'number' && d.waitedSeconds > 0) parts.push(`waited ${d.waitedSeconds} s`);
  if (typeof d.reason === 'string' && d.reason) parts.push(d.reason);
  if (typeof d.error === 'string') parts.push(`error: ${d.error}`);
  const inputs = d.inputs && typeof d.inputs === 'object' ? Object.entries(d.inputs as Record<string, unknown>) : [];
  if (showInputs && inputs.length > 0) parts.push(`inputs: ${inputs.map(([k, v]) => `${k}=${JSON.stringify(String(v))}`).join(', ')}`);
  return parts.join('; ');
}

const RUNBOOK_ACTION = 'runbook-step';

function summary(r: Pick<AuditRow, 'details' | 'action'>, showInputs = false): string {
  const d = r.details ?? {};
  if (r.action === RUNBOOK_ACTION) return runbookSummary(d, showInputs);
  const parts: string[] = [];
  if (typeof d.reason === 'string' && d.reason) parts.push(d.reason);
  if (typeof d.fingerprint === 'string' && !r.action.startsWith('approval-')) parts.push(`fingerprint ${d.fingerprint}`);
  if (d.emergency === true) parts.push('EMERGENCY');
  if (typeof d.material === 'string') parts.push(`key ${d.material}`);
  if (typeof d.seconds === 'number') parts.push(`${d.seconds.toFixed(1)} s`);
  if (typeof d.failures === 'number' && d.failures > 0) parts.push(`${formatCount(d.failures)} failed`);
  if (r.action.startsWith('approval-') && typeof d.request === 'number') {
    parts.push(`request #${d.request}${typeof d.for === 'string' ? ` for ${d.for}` : ''}${d.breakGlass === true ? ' (BREAK GLASS)' : ''}`);
    if (typeof d.approver === 'string') parts.push(`signed by ${d.approver}${typeof d.fingerprint === 'string' ? ` (${d.fingerprint})` : ''}`);
    if (Array.isArray(d.approvers) && d.approvers.length > 0)
      parts.push(`approved by ${d.approvers.map((a) => String((a as { name?: unknown }).name)).join(', ')}`);
  }
  return parts.join('; ');
}

/**
 * The approvals section of `audit --format markdown`: per rotation, every signature that authorised
 * an action (approver, key fingerprint, signed at, the action), and break-glass actions with the
 * signatures that came afterwards (or none yet).
 */
export function approvalsMarkdown(rows: readonly AuditRow[], esc: (s: string) => string): string[] {
  const consumed = rows.filter((r) => r.action === 'approval-consume' && r.outcome === 'ok');
  if (consumed.length === 0) return [];
  const lines = [
    '',
    '### Approvals',
    '',
    '| rotation | action | request | approver | key fingerprint | signed at (UTC) | note |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const c of consumed) {
    const d = c.details ?? {};
    const request = Number(d.request);
    const action = String(d.for ?? '');
    const rotation = c.rotationId === null ? '' : `#${c.rotationId}`;
    const cell = (approver: string, fp: string, at: string, note: string) =>
      `| ${[rotation, action, `#${request}`, approver, fp, at, note].map((x) => esc(printable(x))).join(' | ')} |`;
    if (d.breakGlass === true) {
      const after = rows.filter((r) => r.action === 'approval-sign' && r.outcome === 'ok' && r.details?.request === request);
      const note = `break glass at ${formatIsoText(c.createdAt.toISOString())} by ${c.actor}: ${String(d.reason ?? '')}`;
      if (after.length === 0) lines.push(cell('—', '—', '—', `${note}; AWAITING APPROVAL`));
      for (const a of after)
        lines.push(
          cell(
            String(a.details?.approver ?? ''),
            String(a.details?.fingerprint ?? ''),
            formatIsoText(String(a.details?.signedAt)),
            `${note}; approved afterwards`,
          ),
        );
      continue;
    }
    for (const a of Array.isArray(d.approvers) ? (d.approvers as Array<Record<string, unknown>>) : []) {
      lines.push(
        cell(
          String(a.name ?? ''),
          String(a.fingerprint ?? ''),
          formatIsoText(String(a.signedAt)),
          `authorised ${action} at ${formatIsoText(c.createdAt.toISOString())}`,
        ),
      );
    }
  }
  return lines;
}

/**
 * Text from the audit table (actor, reason, details) as one printable line: control characters —
 * ANSI escapes, newlines, carriage returns — are shown as escapes, so a row can neither redraw
 * the terminal nor forge table or Markdown rows.
 */
export function printable(s: string): string {
  let out = '';
  for (const c of s) {
    const code = c.charCodeAt(0);
    const control = code < 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029;
    if (!control) out += c;
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else out += `\\u${code.toString(16).padStart(4, '0')}`;
  }
  return out;
}

/**
 * The table within `width` columns: the details in their own column when that leaves them at least
 * 40 columns, else on a row of their own under each entry, wrapped to the table's width.
 */
function auditTable(Table: typeof import('cli-table3'), cols: string[], cells: string[][], width: number, style: { head: string[]; border: string[] }): string {
  const natural = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)) + 2);
  const others = natural.slice(0, -1).reduce((a, b) => a + b, 0) + cols.length + 1;
  if (others + natural.at(-1)! <= width || width - others >= 40) {
    const fits = others + natural.at(-1)! <= width;
    const table = new Table({ head: cols, style, ...(fits ? {} : { colWidths: [...natural.slice(0, -1), width - others], wordWrap: true }) });
    for (const r of cells) table.push(r);
    return table.toString();
  }
  const head = cols.slice(0, -1);
  const table = new Table({ head, style, colWidths: natural.slice(0, -1) });
  for (const r of cells) {
    table.push(r.slice(0, -1));
    const details = r.at(-1)!;
    if (details) table.push([{ colSpan: head.length, content: details, wordWrap: true }]);
  }
  return table.toString();
}

export async function run(rt: CliRuntime, f: AuditOptions): Promise<number> {
  if (f.expectHead && !f.verify) throw new UsageError('--expect-head goes with --verify', 'run `keyctl audit --verify --expect-head SEQ:HASH`');
  if ([f.verify, f.anchor, f.export].filter(Boolean).length > 1) throw new UsageError('choose one of --verify, --anchor and --export');
  if (f.reset && !f.anchor) throw new UsageError('--reset goes with --anchor', 'run `keyctl audit --anchor --reset --reason "…"`');
  if (f.reason !== undefined && !f.reset) throw new UsageError('--reason goes with --anchor --reset');
  if (f.reset && !f.reason?.trim()) {
    throw new UsageError(
      'audit --anchor --reset needs --reason "…"',
      'say why the database no longer reaches the anchor (e.g. the restore it came from); it goes on the audit record',
    );
  }
  return withCoreContext(rt, async (ctx) => {
    if (f.export) {
      // JSON lines on stdout; with --json, one object holding them (`lines`), as every --json result.
      const lines = await exportAudit(ctx);
      rt.output.result({ lines }, () => lines.map((l) => JSON.stringify(l)).join('\n'));
      return ExitCode.OK;
    }
    if (f.anchor && f.reset) {
      const r = await resetAnchor(ctx, ctx.config.keyring, f.reason ?? '');
      if (r.status === 'refused') throw new ProblemsFoundError(`the audit anchor was not reset: ${r.reason}`, r.hint);
      rt.output.result(
        {
          anchored: true,
          reset: true,
          head: { seq: r.head.seq, hash: r.head.hash, at: r.head.at },
          previous: r.previous ? { seq: r.previous.seq, hash: r.previous.hash, at: r.previous.at } : null,
        },
        () =>
          `re-anchored the audit head of keyring ${ctx.config.keyring} in ${ctx.keystore.describe()}: seq ${r.head.seq}, hash ${r.head.hash}` +
          `${r.previous ? ` (the previous anchor was seq ${r.previous.seq}, hash ${r.previous.hash}; keep it with your records)` : ''}; the reset is audit row seq ${r.head.seq}`,
      );
      return ExitCode.OK;
    }
    if (f.anchor) {
      const r = await anchorAuditHead(ctx, ctx.config.keyring);
      if (r.status === 'refused') throw new ProblemsFoundError(`the audit anchor was not moved: ${r.reason}`, r.hint);
      rt.output.result(
        { anchored: r.status === 'anchored', ...(r.status === 'anchored' ? { head: { seq: r.head.seq, hash: r.head.hash, at: r.head.at } } : { seq: r.seq }) },
        () =>
          r.status === 'anchored'
            ? `anchored the audit head of keyring ${ctx.config.keyring} in ${ctx.keystore.describe()}: seq ${r.head.seq}, hash ${r.head.hash}${r.previousSeq === null ? ' (first anchor)' : ` (was seq ${r.previousSeq})`}`
            : `the audit anchor of keyring ${ctx.config.keyring} is up to date (seq ${r.seq})`,
      );
      return ExitCode.OK;
    }
    if (f.verify) {
      const v = await verifyAudit(ctx, f.expectHead);
      rt.output.result(v, () =>
        [
          ...v.chains.map((r) => printable(`keyring ${r.keyring}: ${formatCount(r.rows)} row(s), head ${r.headSeq}:${r.lastHash}`)),
          ...v.notes.map((n) => printable(n)),
          ...v.unchecked.map((u) => printable(`not checked — ${u}`)),
          v.problems.length === 0
            ? `${rt.output.out.green('✓')} the audit chain is intact${v.anchors.some((a) => a.status === 'matches' || a.status === 'behind') ? ' and ends where its anchor says' : ''}`
            : `${rt.output.out.red('✗ the audit chain is broken:')}\n${v.problems.map((p) => `  - ${printable(p)}`).join('\n')}`,
          ...(v.missingTables.length > 0
            ? ["hint: run `keyctl migrate` on a new database; a dropped table's history can only come back from a database backup or an `audit --export` copy"]
            : []),
        ].join('\n'),
      );
      return v.intact ? ExitCode.OK : ExitCode.PROBLEMS_FOUND;
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
    // The same sentence twice: ISO times for the JSON summary, the human style for the title.
    const head = (time: (at: Date) => string) =>
      rotation
        ? `Rotation #${rotation.id} of keyring ${rotation.keyring}: ${rotation.oldVersion} → ${rotation.newVersion}${rotation.emergency ? ' (EMERGENCY)' : ''}, opened ${time(rotation.openedAt)} by ${rotation.openedBy}, phase ${rotation.phase}${rotation.closedAt ? `, closed ${time(rotation.closedAt)} (took ${duration(rotation.closedAt.getTime() - rotation.openedAt.getTime())})` : ''}`
        : `Audit history of keyring ${ctx.config.keyring}`;
    if (f.format === 'json' || rt.output.json) {
      rt.output.data({ summary: head((at) => at.toISOString()), rotation, entries });
      return ExitCode.OK;
    }
    const title = printable(head(formatTime));
    const cols = ['time (UTC)', 'action', 'phase', 'actor', 'versions', 'rows', 'outcome', '+time', 'details'];
    // A runbook's inputs ride on each of its rows; show them where they first appear or change.
    let lastInputs = '';
    const cells = entries.map((e) => {
      const inputs = e.action === RUNBOOK_ACTION ? JSON.stringify(e.details?.inputs ?? {}) : lastInputs;
      const showInputs = inputs !== lastInputs;
      lastInputs = inputs;
      return [
        formatIsoText(e.createdAt),
        e.action,
        // A runbook step moves nothing: the phase it ran in.
        e.toPhase === null && e.action === RUNBOOK_ACTION ? (e.fromPhase ?? '') : e.fromPhase || e.toPhase ? `${e.fromPhase ?? '–'} → ${e.toPhase ?? '–'}` : '',
        e.actor,
        e.oldVersion || e.newVersion ? `${e.oldVersion ?? ''}→${e.newVersion ?? ''}` : '',
        e.rowsAffected === null ? '' : formatCount(e.rowsAffected),
        e.outcome,
        e.sincePreviousMs ? duration(e.sincePreviousMs) : '',
        summary(e, showInputs),
      ].map(printable);
    });
    if (f.format === 'markdown') {
      const esc = (s: string) => s.replace(/\|/g, '\\|');
      const md = [
        `## ${title}`,
        '',
        `| ${cols.join(' | ')} |`,
        `|${cols.map(() => '---').join('|')}|`,
        ...cells.map((r) => `| ${r.map(esc).join(' | ')} |`),
        ...approvalsMarkdown(rows, esc),
      ];
      rt.output.result({}, () => md.join('\n'));
      return ExitCode.OK;
    }
    const { default: Table } = await import('cli-table3');
    const plain = rt.output.out.level === 0;
    const style = { head: plain ? [] : ['cyan'], border: plain ? [] : ['grey'] };
    const text = auditTable(Table, cols, cells, rt.columns() || 120, style);
    rt.output.result({}, () => `${title}\n${text}`);
    return ExitCode.OK;
  });
}
