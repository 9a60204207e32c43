/**
 * How a runbook looks to the operator: the plan (each step with its mark, who did it and when),
 * one step's description, explanations folded to the terminal's width, and the incident summary
 * table. Pure text: the caller decides where it goes.
 */
import path from 'node:path';
import Table from 'cli-table3';
import { nextStep } from '../rotation/machine.js';
import { formatCount, formatIsoText, formatTime } from '../ui/format.js';
import type { Output } from '../ui/output.js';
import { formatDuration, INTERRUPTED_NOTE, type IncidentSummary, type RunbookProgress, type StepPreview, type StepState, type StepStatus } from './engine.js';
import type { Runbook, RunbookStep } from './schema.js';

/** `file` relative to `cwd` when it lies below it, else as given. */
export function shortPath(cwd: string, file: string): string {
  const rel = path.relative(cwd, file);
  return rel && !rel.startsWith('..') ? rel : file;
}

export function describeStep(step: RunbookStep): string {
  switch (step.kind) {
    case 'check':
      if (step.check === 'external') return `check: external, the command keyctl.yaml names ${step.external} (checks:)`;
      return `check: ${step.check}${step.maxAgeHours ? ` (max ${step.maxAgeHours} h)` : ''}${step.days ? ` (max ${step.days} days)` : ''}`;
    case 'command':
      return `command: keyctl ${step.command}`;
    case 'confirm':
      return `confirm${step.input ? `: ${step.input.prompt}` : ''}`;
    case 'wait':
      return `wait: ${step.wait === 'propagation' ? 'policy.minPropagationSeconds since the last phase change' : `${step.wait} s`}`;
    case 'approval':
      return step.approval === 'break-glass'
        ? 'approval: the signatures owed for break-glass actions of this rotation'
        : `approval: the approvers' signatures for ${step.approval} (approvals.require)`;
  }
}

const MARKS: Record<StepStatus | 'next' | 'todo' | 'not-now', string> = {
  done: '✓',
  'done-outside': '◆',
  passed: '↷',
  skipped: '↷',
  failed: '✗',
  aborted: '⏸',
  none: '·',
  next: '▸',
  todo: '·',
  'not-now': '–',
};

function stepNote(s: StepState): string {
  const r = s.record;
  if (!r) return '';
  switch (s.status) {
    case 'done':
      return `done by ${r.actor} ${formatTime(r.at)}`;
    case 'done-outside':
      return `done outside the runbook by ${r.actor} ${formatTime(r.at)}`;
    case 'passed':
      return `passed: the rotation moved on (${r.passedBy ?? 'its command'} ran ${formatTime(r.at)}, by ${r.actor})`;
    case 'skipped':
      return `skipped by ${r.actor} ${formatTime(r.at)}: ${r.note ?? '(no reason)'}`;
    case 'failed':
      return `failed ${formatTime(r.at)} (${r.actor})${r.note ? `: ${r.note}` : ''}`;
    case 'aborted':
      return r.note === INTERRUPTED_NOTE ? `interrupted by ${r.actor} ${formatTime(r.at)}: resume here` : `aborted here by ${r.actor} ${formatTime(r.at)}`;
    case 'none':
      return '';
  }
}

/** The plan: where the rotation stands, every step with its mark and note, and what comes next. */
export function planLines(output: Output, cwd: string, runbook: Runbook, p: RunbookProgress, keyring: string, previews?: Map<number, StepPreview>): string[] {
  const c = output.out;
  const where = p.rotation
    ? `rotation #${p.rotation.id} (${p.rotation.emergency ? 'emergency' : 'routine'}, ${p.rotation.oldVersion} → ${p.rotation.newVersion}) in phase ${c.bold(p.phase)}`
    : 'no rotation open';
  const lines = [`${c.bold(runbook.title)} (${runbook.name}, ${shortPath(cwd, runbook.file)})`, `keyring ${keyring} · ${where}`];
  if (p.note) lines.push(c.yellow(p.note));
  for (const s of p.steps) {
    const kind = s === p.next ? 'next' : s.status !== 'none' ? s.status : s.applies ? 'todo' : 'not-now';
    const colour =
      kind === 'next'
        ? c.cyan
        : kind === 'done' || kind === 'done-outside'
          ? c.green
          : kind === 'skipped' || kind === 'aborted' || kind === 'passed'
            ? c.yellow
            : kind === 'failed'
              ? c.red
              : (x: string) => x;
    const note = stepNote(s);
    const text = `${colour(MARKS[kind])} ${String(s.index + 1).padStart(2)} ${s.step.id.padEnd(20)} ${s.step.title}${note ? c.dim(`  — ${note}`) : ''}`;
    lines.push(s.applies || s === p.next || s.status !== 'none' ? text : c.dim(text));
    const pv = previews?.get(s.index);
    if (pv?.command) lines.push(c.dim(`        $ ${pv.command}`));
    if (pv?.refusal) lines.push(`        ${c.yellow(pv.refusal)}`);
    if (pv?.refusal && pv.wayForward) lines.push(`        ${c.yellow(`way forward: ${pv.wayForward}`)}`);
  }
  lines.push(
    p.next
      ? `next: step ${p.next.index + 1}, ${p.next.step.id} (${describeStep(p.next.step)})`
      : `nothing left to do in this phase${p.rotation ? `; next: ${nextStep(p.rotation.phase)}` : ''}`,
  );
  lines.push(c.dim('✓ done here  ◆ done outside  ↷ skipped, or passed over  ✗ failed  ⏸ aborted  ▸ next  · to do  – not for this phase'));
  return lines;
}

/** Fold paragraphs to `width` (runbook YAML folds them into long lines). */
export function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(/\s+/).filter(Boolean)) {
      if (line && line.length + 1 + word.length > width) {
        out.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    out.push(line);
  }
  return out;
}

/** The incident summary as a heading, the facts and a timeline table. */
export function incidentText(output: Output, s: IncidentSummary): string {
  const table = new Table({
    head: ['time (UTC)', '+', 'step', 'outcome', 'actor', 'detail'],
    style: { head: [], border: [] },
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    // Long details (a database path, a check's result) wrap instead of widening the table.
    colWidths: [null, null, null, null, null, 48],
    wordWrap: true,
  });
  for (const e of s.timeline) table.push([formatIsoText(e.at), formatDuration(e.sincePreviousSeconds), e.action, e.outcome, e.actor, e.detail]);
  return [
    output.out.bold(`Incident summary${s.incident ? ` — ${s.incident}` : ''} (rotation #${s.rotationId})`),
    `reason: ${s.reason ?? '-'}`,
    `compromised key: ${s.compromisedVersion ?? '-'}   replaced by: ${s.newVersion}`,
    `started ${formatIsoText(s.startedAt)}, last step ${formatIsoText(s.endedAt)}: ${formatDuration(s.durationSeconds)}`,
    `rows re-encrypted: ${formatCount(s.rowsReencrypted)} (all passes)`,
    `incident entered: ${s.incidentEnteredAt ? formatIsoText(s.incidentEnteredAt) : '-'}   done by: ${s.actors.join(', ') || '-'}`,
    table.toString(),
  ].join('\n');
}

/** The incident summary as Markdown, to paste into a ticket: the facts, then the timeline as a table. */
export function incidentMarkdown(s: IncidentSummary): string {
  const cell = (x: string) => x.replace(/\|/g, '\\|').replace(/[\r\n]+/g, ' ');
  return [
    `## Incident summary${s.incident ? ` — ${cell(s.incident)}` : ''} (rotation #${s.rotationId})`,
    '',
    `- **Reason:** ${cell(s.reason ?? '-')}`,
    `- **Compromised key:** ${s.compromisedVersion ?? '-'}, replaced by ${s.newVersion}`,
    `- **Incident entered:** ${s.incidentEnteredAt ? formatIsoText(s.incidentEnteredAt) : '-'}`,
    `- **Started:** ${formatIsoText(s.startedAt)}, **last step:** ${formatIsoText(s.endedAt)} (${formatDuration(s.durationSeconds)})`,
    `- **Rows re-encrypted (all passes):** ${formatCount(s.rowsReencrypted)}`,
    `- **Done by:** ${s.actors.map(cell).join(', ') || '-'}`,
    '',
    '| time (UTC) | + | step | outcome | by | detail |',
    '|---|---|---|---|---|---|',
    ...s.timeline.map(
      (e) => `| ${formatIsoText(e.at)} | ${formatDuration(e.sincePreviousSeconds)} | ${cell(e.action)} | ${e.outcome} | ${cell(e.actor)} | ${cell(e.detail)} |`,
    ),
  ].join('\n');
}
