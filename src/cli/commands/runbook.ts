/**
 * `keyctl runbook list | run NAME`: an operator follows a runbook step by step. Before each step
 * the explanation is shown and inquirer asks Run / Skip (with a reason) / Abort; command steps run
 * in this process with their normal output. Every outcome goes to rotation_audit, so a second run —
 * by anyone, anywhere — resumes at the first step not done for the current rotation.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Table from 'cli-table3';
import { locateConfig, loadConfig, resolveConfigPath } from '../../config/load.js';
import type { CoreContext } from '../../core/context.js';
import { RefusedError, UsageError } from '../../base/errors.js';
import { ExitCode } from '../../base/exit-codes.js';
import { nextStep } from '../../rotation/machine.js';
import {
  fillTemplate,
  formatDuration,
  incidentSummary,
  recordStep,
  recoveryEvidence,
  previewSteps,
  runbookProgress,
  runCheck,
  splitArgs,
  type RunbookProgress,
  type StepPreview,
  type StepState,
  type StepStatus,
} from '../../runbook/engine.js';
import { findRunbook, listRunbooks } from '../../runbook/load.js';
import type { Runbook, RunbookStep } from '../../runbook/schema.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';

interface ListFlags {
  file?: string;
}

interface RunFlags {
  file?: string;
  dryRun?: boolean;
  yes?: boolean;
  set?: string[];
}

/** The team's runbook directory from keyctl.yaml, when there is a config. */
function teamDir(rt: CliRuntime): string | undefined {
  const { file } = locateConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  if (!existsSync(file)) return undefined;
  const config = loadConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  return config.runbooks ? resolveConfigPath(config, config.runbooks) : undefined;
}

export async function list(rt: CliRuntime, flags: ListFlags): Promise<number> {
  const runbooks = listRunbooks({ teamDir: teamDir(rt), file: flags.file });
  rt.output.result({ runbooks: runbooks.map((r) => ({ name: r.name, title: r.title, steps: r.steps.length, file: r.file })) }, () => {
    const table = new Table({ head: ['name', 'title', 'steps', 'file'], style: { head: [], border: [] } });
    for (const r of runbooks) table.push([r.name, r.title, r.steps.length, shortPath(rt, r.file)]);
    return `${table.toString()}\nStart one with: keyctl runbook run NAME   (--dry-run shows its plan first)`;
  });
  return ExitCode.OK;
}

function shortPath(rt: CliRuntime, file: string): string {
  const rel = path.relative(rt.cwd, file);
  return rel && !rel.startsWith('..') ? rel : file;
}

type Choice = 'run' | 'skip' | 'abort';

interface Asker {
  choose(step: RunbookStep): Promise<Choice>;
  text(message: string, pattern?: string): Promise<string>;
}

/** inquirer, loaded only when a person is there to answer. */
async function inquirerAsker(): Promise<Asker> {
  const { default: inquirer } = await import('inquirer');
  const prompt = inquirer.prompt as unknown as (q: object[]) => Promise<Record<string, string>>;
  return {
    async choose(step) {
      const { choice } = await prompt([
        {
          type: 'select',
          name: 'choice',
          message: `${step.id}: what now?`,
          choices: [
            { name: step.kind === 'confirm' ? 'Done (confirm)' : 'Run', value: 'run' },
            { name: 'Skip (you will give a reason)', value: 'skip' },
            { name: 'Abort (resume later from here)', value: 'abort' },
          ],
        },
      ]);
      return choice as Choice;
    },
    async text(message, pattern) {
      const re = pattern ? new RegExp(pattern) : /\S/;
      const { value } = await prompt([
        { type: 'input', name: 'value', message, validate: (v: string) => (re.test(v.trim()) ? true : pattern ? `must match ${pattern}` : 'required') },
      ]);
      return (value ?? '').trim();
    },
  };
}

function parseSets(sets: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of sets ?? []) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set expects NAME=VALUE, found "${s}"`, 'e.g. --set incident=INC-1234');
    out[s.slice(0, eq)] = s.slice(eq + 1);
  }
  return out;
}

function describeStep(step: RunbookStep): string {
  switch (step.kind) {
    case 'check':
      return `check: ${step.check}${step.maxAgeHours ? ` (max ${step.maxAgeHours} h)` : ''}${step.days ? ` (max ${step.days} days)` : ''}`;
    case 'command':
      return `command: keyctl ${step.command}`;
    case 'confirm':
      return `confirm${step.input ? `: ${step.input.prompt}` : ''}`;
    case 'wait':
      return `wait: ${step.wait === 'propagation' ? 'policy.minPropagationSeconds since the last phase change' : `${step.wait} s`}`;
  }
}

const MARKS: Record<StepStatus | 'next' | 'todo' | 'not-now', string> = {
  done: '✓',
  'done-outside': '◆',
  skipped: '↷',
  failed: '✗',
  aborted: '⏸',
  none: '·',
  next: '▸',
  todo: '·',
  'not-now': '–',
};

function when(d: Date): string {
  return d.toISOString().replace('T', ' ').slice(0, 16);
}

function stepNote(s: StepState): string {
  const r = s.record;
  if (!r) return '';
  switch (s.status) {
    case 'done':
      return `done by ${r.actor} ${when(r.at)}`;
    case 'done-outside':
      return `done outside the runbook by ${r.actor} ${when(r.at)}`;
    case 'skipped':
      return `skipped by ${r.actor} ${when(r.at)}: ${r.note ?? '(no reason)'}`;
    case 'failed':
      return `failed ${when(r.at)} (${r.actor})${r.note ? `: ${r.note}` : ''}`;
    case 'aborted':
      return `aborted here by ${r.actor} ${when(r.at)}`;
    case 'none':
      return '';
  }
}

function planLines(rt: CliRuntime, runbook: Runbook, p: RunbookProgress, keyring: string, previews?: Map<number, StepPreview>): string[] {
  const c = rt.output.out;
  const where = p.rotation
    ? `rotation #${p.rotation.id} (${p.rotation.emergency ? 'emergency' : 'routine'}, ${p.rotation.oldVersion} → ${p.rotation.newVersion}) in phase ${c.bold(p.phase)}`
    : 'no rotation open';
  const lines = [`${c.bold(runbook.title)} (${runbook.name}, ${shortPath(rt, runbook.file)})`, `keyring ${keyring} · ${where}`];
  if (p.note) lines.push(c.yellow(p.note));
  for (const s of p.steps) {
    const kind = s === p.next ? 'next' : s.status !== 'none' ? s.status : s.applies ? 'todo' : 'not-now';
    const colour = kind === 'next' ? c.cyan : kind === 'done' || kind === 'done-outside' ? c.green : kind === 'skipped' || kind === 'aborted' ? c.yellow : kind === 'failed' ? c.red : (x: string) => x;
    const note = stepNote(s);
    const text = `${colour(MARKS[kind])} ${String(s.index + 1).padStart(2)} ${s.step.id.padEnd(20)} ${s.step.title}${note ? c.dim(`  — ${note}`) : ''}`;
    lines.push(s.applies || s === p.next || s.status !== 'none' ? text : c.dim(text));
    const pv = previews?.get(s.index);
    if (pv?.command) lines.push(c.dim(`        $ ${pv.command}`));
    if (pv?.refusal) lines.push(`        ${c.yellow(pv.refusal)}`);
  }
  lines.push(
    p.next
      ? `next: step ${p.next.index + 1}, ${p.next.step.id} (${describeStep(p.next.step)})`
      : `nothing left to do in this phase${p.rotation ? `; next: ${nextStep(p.rotation.phase)}` : ''}`,
  );
  lines.push(c.dim('✓ done here  ◆ done outside the runbook  ↷ skipped  ✗ failed  ⏸ aborted  ▸ next  · to do  – not for this phase'));
  return lines;
}

export async function runRunbook(rt: CliRuntime, flags: RunFlags, args: string[]): Promise<number> {
  const name = args[0]!;
  const runbook = findRunbook(name, { teamDir: teamDir(rt), file: flags.file });
  const sets = parseSets(flags.set);
  for (const k of Object.keys(sets)) {
    if (!runbook.inputs.some((i) => i.id === k)) throw new UsageError(`--set ${k}: runbook ${runbook.name} has no input "${k}"`, `its inputs: ${runbook.inputs.map((i) => i.id).join(', ') || 'none'}`);
  }
  const interactive = rt.stdinIsTTY && !flags.yes;
  if (!flags.dryRun && !rt.stdinIsTTY && !flags.yes) {
    throw new UsageError(
      `keyctl runbook run asks before every step, and there is no terminal to ask`,
      `run it in a terminal (tmux, ssh -t), or pass --yes to run its check, command and wait steps without asking (confirm steps still need a person),\n` +
        `or run the steps' commands yourself: keyctl runbook run ${runbook.name} --dry-run shows them`,
    );
  }
  return withCoreContext(rt, async (ctx) => {
    let progress = await runbookProgress(ctx, runbook);
    if (flags.dryRun) {
      const known = { ...(await previousInputs(ctx, runbook)), ...sets };
      const previews = await previewSteps(ctx, progress, known);
      rt.output.result(
        {
          runbook: runbook.name,
          phase: progress.phase,
          rotation: progress.rotation ? { id: progress.rotation.id, emergency: progress.rotation.emergency, compromised: progress.rotation.compromisedVersion } : null,
          next: progress.next?.step.id ?? null,
          note: progress.note,
          steps: progress.steps.map((s) => ({
            id: s.step.id,
            kind: s.step.kind,
            title: s.step.title,
            status: s.status,
            by: s.record ? { actor: s.record.actor, at: s.record.at.toISOString(), note: s.record.note } : null,
            done: s.done,
            applies: s.applies,
            does: describeStep(s.step),
            command: previews.get(s.index)?.command ?? null,
            refusedNow: previews.get(s.index)?.refusal ?? null,
          })),
        },
        () => planLines(rt, runbook, progress, ctx.config.keyring, previews).join('\n'),
      );
      return ExitCode.OK;
    }
    const out = (line = '') => rt.output.info(line);
    for (const line of planLines(rt, runbook, progress, ctx.config.keyring)) out(line);
    if (progress.steps.some((s) => s.done) && progress.next) out(rt.output.out.cyan(`resuming at step ${progress.next.index + 1} (${progress.next.step.id})`));

    const asker = interactive ? await inquirerAsker() : null;
    const inputs = await collectInputs(ctx, runbook, sets, asker);
    const c = rt.output.out;

    // Walk forward only: once the last step closes the rotation, the first steps apply again,
    // but they belong to the next rotation.
    let lastIndex = -1;
    for (;;) {
      progress = await runbookProgress(ctx, runbook);
      const next = progress.steps.find((s) => s.index > lastIndex && s.applies && !s.done);
      if (!next) break;
      lastIndex = next.index;
      const { step } = next;
      out();
      out(`${c.bold(`Step ${next.index + 1}/${runbook.steps.length} · ${step.title}`)}  ${c.dim(`[${step.id}, ${step.kind}]`)}`);
      for (const line of wrap(step.explain.trim(), Math.min(process.stderr.columns || 100, 100) - 4)) out(`  ${line}`);
      out(`  ${c.dim(describeStep(step).replace(/\{\{/g, '{{'))}`);

      if (step.kind === 'confirm' && !asker) {
        throw new RefusedError(
          `step ${step.id} needs a person to confirm: ${step.title}`,
          `run \`keyctl runbook run ${runbook.name}\` in a terminal; it resumes at this step`,
        );
      }
      let choice: Choice = 'run';
      try {
        if (asker) choice = await asker.choose(step);
        if (choice === 'skip') {
          const reason = await asker!.text('Why skip this step? (recorded in the audit)');
          await recordStep(ctx, runbook, step, 'skipped', { skipped: reason, inputs });
          out(c.yellow(`  skipped: ${reason}`));
          continue;
        }
      } catch (err) {
        if (!isPromptExit(err)) throw err;
        choice = 'abort';
      }
      if (choice === 'abort') return abort(rt, ctx, runbook, step, inputs);

      const rotationBefore = progress.rotation;
      const result = await runStep(rt, ctx, step, inputs, asker, progress).catch(async (err: unknown) => {
        if (isPromptExit(err)) return 'abort' as const;
        await recordStep(ctx, runbook, step, 'failed', { error: (err as Error).message, inputs }).catch(() => undefined);
        throw err;
      });
      if (result === 'abort') return abort(rt, ctx, runbook, step, inputs);
      await recordStep(ctx, runbook, step, result.ok ? 'ok' : 'failed', { ...result.details, inputs }, rotationBefore?.id);
      if (!result.ok) {
        out(c.red(`✗ step ${step.id} failed`) + (result.detail ? `: ${result.detail}` : ''));
        if (step.on_failure) for (const [i, line] of wrap(`what to do: ${step.on_failure.trim()}`, Math.min(process.stderr.columns || 100, 100) - 4).entries()) out(`  ${i === 0 ? line.replace('what to do:', c.bold('what to do:')) : line}`);
        out(`  then run \`keyctl runbook run ${runbook.name}\` again; it resumes at this step`);
        return result.exitCode;
      }
      out(c.green(`✓ ${step.id}`) + (result.detail ? `: ${result.detail}` : ''));
    }

    out();
    const rotation = progress.rotation;
    if (runbook.summary === 'incident') printIncident(rt, await incidentSummary(ctx, inputs.incident ?? null));
    if (runbook.summary === 'evidence') {
      const line = await recoveryEvidence(ctx);
      if (line) rt.output.result({ evidence: line }, () => line);
    }
    out(c.green(`✓ runbook ${runbook.name}: nothing left to do${rotation ? ` in phase ${rotation.phase}; next: ${nextStep(rotation.phase)}` : ''}`));
    return ExitCode.OK;
  });
}

async function collectInputs(ctx: CoreContext, runbook: Runbook, sets: Record<string, string>, asker: Asker | null): Promise<Record<string, string>> {
  const previous = await previousInputs(ctx, runbook);
  const inputs: Record<string, string> = {};
  for (const input of runbook.inputs) {
    const given = sets[input.id] ?? previous[input.id];
    if (given !== undefined) {
      if (input.pattern && !new RegExp(input.pattern).test(given)) throw new UsageError(`input ${input.id} "${given}" must match ${input.pattern}`);
      inputs[input.id] = given;
      continue;
    }
    if (!asker) throw new UsageError(`runbook ${runbook.name} needs input "${input.id}" (${input.prompt})`, `pass --set ${input.id}=VALUE`);
    inputs[input.id] = await asker.text(input.prompt, input.pattern);
  }
  return inputs;
}

/** Inputs given earlier in this rotation (the runbook-step rows keep them), so a resume does not ask again. */
async function previousInputs(ctx: CoreContext, runbook: Runbook): Promise<Record<string, string>> {
  const { listAudit } = await import('../../rotation/store.js');
  const progress = await runbookProgress(ctx, runbook);
  const rows = (await listAudit(ctx.db, ctx.config.keyring)).filter(
    (r) => r.action === 'runbook-step' && r.details?.runbook === runbook.name && (progress.rotation ? r.rotationId === progress.rotation.id : false),
  );
  return (rows.at(-1)?.details?.inputs as Record<string, string> | undefined) ?? {};
}

interface StepResult {
  ok: boolean;
  exitCode: number;
  detail: string;
  details: Record<string, unknown>;
}

async function runStep(rt: CliRuntime, ctx: CoreContext, step: RunbookStep, inputs: Record<string, string>, asker: Asker | null, p: RunbookProgress): Promise<StepResult> {
  switch (step.kind) {
    case 'check': {
      const r = await runCheck(ctx, step);
      return { ok: r.ok, exitCode: r.ok ? ExitCode.OK : ExitCode.PROBLEMS_FOUND, detail: r.detail, details: { check: step.check, result: r.detail } };
    }
    case 'command': {
      const argv = splitArgs(step.command).map((a) => fillTemplate(a, inputs, p.rotation));
      rt.output.info(rt.output.out.dim(`$ keyctl ${argv.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`));
      const code = await rt.invoke(argv);
      return { ok: code === ExitCode.OK, exitCode: code, detail: code === ExitCode.OK ? '' : `keyctl ${argv[0]} exited ${code}`, details: { command: argv.join(' '), exitCode: code } };
    }
    case 'confirm': {
      const value = step.input ? await asker!.text(step.input.prompt, step.input.pattern) : undefined;
      return { ok: true, exitCode: ExitCode.OK, detail: value ? `recorded "${value}"` : 'confirmed', details: value ? { value } : {} };
    }
    case 'wait': {
      const seconds = step.wait === 'propagation' ? Math.max(0, Math.ceil(ctx.config.policy.minPropagationSeconds - (ctx.now().getTime() - (p.rotation?.phaseChangedAt.getTime() ?? 0)) / 1000)) : step.wait;
      if (seconds > 0) await countdown(rt, seconds);
      return { ok: true, exitCode: ExitCode.OK, detail: seconds > 0 ? `waited ${formatDuration(seconds)}` : 'no wait needed', details: { waitedSeconds: seconds } };
    }
  }
}

async function countdown(rt: CliRuntime, seconds: number): Promise<void> {
  const { startProgress } = await import('../../ui/progress.js');
  const progress = await startProgress(rt.output, `waiting ${formatDuration(seconds)}`);
  const end = Date.now() + seconds * 1000;
  try {
    while (Date.now() < end) {
      progress.update(`waiting: ${formatDuration(Math.ceil((end - Date.now()) / 1000))} left (Ctrl-C aborts; the runbook resumes here)`);
      await new Promise((r) => setTimeout(r, Math.min(1000, end - Date.now())));
    }
  } finally {
    progress.stop();
  }
}

async function abort(rt: CliRuntime, ctx: CoreContext, runbook: Runbook, step: RunbookStep, inputs: Record<string, string>): Promise<number> {
  await recordStep(ctx, runbook, step, 'aborted', { inputs });
  rt.output.info(rt.output.out.yellow(`aborted at step ${step.id}. To resume (any operator, any machine): keyctl runbook run ${runbook.name}`));
  return ExitCode.INTERRUPTED;
}

/** Fold paragraphs to the terminal's width (runbook YAML folds them into long lines). */
function wrap(text: string, width: number): string[] {
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

function isPromptExit(err: unknown): boolean {
  return (err as { name?: string })?.name === 'ExitPromptError' || (err as { name?: string })?.name === 'AbortPromptError';
}

function printIncident(rt: CliRuntime, s: Awaited<ReturnType<typeof incidentSummary>>): void {
  if (!s) return;
  rt.output.result({ incident: s }, () => {
    const table = new Table({
      head: ['time (UTC)', '+', 'step', 'outcome', 'actor', 'detail'],
      style: { head: [], border: [] },
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    for (const e of s.timeline) table.push([e.at.replace('T', ' ').slice(0, 19), formatDuration(e.sincePreviousSeconds), e.action, e.outcome, e.actor, e.detail]);
    return [
      rt.output.out.bold(`Incident summary${s.incident ? ` — ${s.incident}` : ''} (rotation #${s.rotationId})`),
      `reason: ${s.reason ?? '-'}`,
      `compromised key: ${s.compromisedVersion ?? '-'}   replaced by: ${s.newVersion}`,
      `started ${s.startedAt}, last step ${s.endedAt}: ${formatDuration(s.durationSeconds)}`,
      `rows re-encrypted: ${s.rowsReencrypted}`,
      table.toString(),
    ].join('\n');
  });
}

export type { StepState };
