/**
 * The runbook runner: shows where a runbook stands, then walks its steps for the current rotation —
 * before each one the explanation, then Run / Skip (with a reason) / Abort; checks run here,
 * command steps run another keyctl command, confirm steps ask a person, wait steps count down.
 * Every outcome goes to rotation_audit, so a second run — by anyone, anywhere — resumes at the
 * first step not done.
 *
 * It owns no terminal: the person (an Asker, or none), the output, the terminal's width, the way to
 * run another keyctl command, sleeping and the abort signal all come from the caller (inquirer and
 * the process in the CLI, scripted answers in tests). The clock is the context's.
 */
import { RefusedError, UsageError } from '../base/errors.js';
import { ExitCode } from '../base/exit-codes.js';
import type { CoreContext } from '../core/context.js';
import { describeBinding, breakGlassOwed, requestState, requestToWaitFor, signingCommands, type ApprovalAction, type RequestState } from '../core/approvals.js';
import { nextStep } from '../rotation/machine.js';
import { latestRotation, listAudit, openRotation } from '../rotation/store.js';
import { formatTime } from '../ui/format.js';
import type { Output } from '../ui/output.js';
import {
  fillTemplate,
  externalCheck,
  formatDuration,
  incidentSummary,
  INTERRUPTED_NOTE,
  previewSteps,
  recordStep,
  recoveryEvidence,
  runbookProgress,
  runCheck,
  splitArgs,
  RUNBOOK_ACTION,
  type RunbookProgress,
  type StepOutcome,
} from './engine.js';
import { describeStep, incidentMarkdown, incidentText, planLines, wrap } from './render.js';
import { forApprovalPolicy, type Runbook, type RunbookStep } from './schema.js';

export type SummaryFormat = 'text' | 'markdown';

export type StepChoice = 'run' | 'retry' | 'skip' | 'abort';

/** What the person may choose at a step: usually Run, Skip and Abort; no Run when the machine would refuse it now; Retry after a failed check. */
export interface StepOffer {
  choices: StepChoice[];
}

/** The person at the runbook. */
export interface Asker {
  /** Before a step (and after a failed check): one of `offer.choices` — run it (for a confirm step, confirm it is done), retry it, skip it, or abort here. */
  choose(step: RunbookStep, offer: StepOffer): Promise<StepChoice>;
  /** A line of text, trimmed; it must match `pattern` (a regular expression) when given, else be non-blank. */
  text(message: string, pattern?: string): Promise<string>;
}

/**
 * Thrown by an Asker when the person left the prompt (Ctrl-C, closed terminal): at a step the runner
 * records an abort there, as if they had chosen Abort.
 */
export class AskAborted extends Error {
  override name = 'AskAborted';
}

/** A live line while waiting (ui/progress's ProgressLine is one). */
export interface WaitProgress {
  update(text: string): void;
  stop(): void;
}

/** What the plan needs: the database and config, where to print, and the directory paths are shown relative to. */
export interface RunbookView {
  ctx: CoreContext;
  output: Output;
  cwd: string;
}

export interface RunnerIO extends RunbookView {
  /** Who answers the prompts; null when nobody will (--yes, or no terminal): every step runs, a confirm step is refused. */
  asker: Asker | null;
  /** The terminal's width in columns now (0: unknown); explanations are folded to it, at most 100. */
  columns(): number;
  /** Run another keyctl command with its normal output; resolves to its exit status. */
  invoke(args: string[]): Promise<number>;
  /** Sleep `ms`; rejects when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Start the live line shown while a wait step counts down. */
  progress(first: string): Promise<WaitProgress>;
  /**
   * Aborting it (the CLI does on Ctrl-C or SIGTERM) stops a wait step at once and any other step
   * once it ends; the runner records an abort at that step.
   */
  signal?: AbortSignal;
  /** How the closing incident summary is printed (default text). */
  summaryFormat?: SummaryFormat;
}

export type RunResult =
  /** Nothing left to do for now. */
  | { outcome: 'finished'; steps: RanStep[] }
  /** The person aborted at `step` (recorded; the next run resumes there). */
  | { outcome: 'aborted'; step: string; steps: RanStep[] }
  /** `step` failed (recorded); `exitCode` is the failed command's status, or PROBLEMS_FOUND for a check. */
  | { outcome: 'failed'; step: string; exitCode: number; steps: RanStep[] };

/** A step this run recorded, in order. */
export interface RanStep {
  id: string;
  outcome: StepOutcome;
}

/** `--dry-run`: the plan with each remaining step's command and the guard that would refuse it now. Writes nothing. */
export async function showPlan(view: RunbookView, asWritten: Runbook, sets: Record<string, string>): Promise<void> {
  const { ctx, output } = view;
  const runbook = forApprovalPolicy(asWritten, ctx.config.approvals);
  const progress = await runbookProgress(ctx, runbook);
  const known = { ...(await previousInputs(ctx, runbook)), ...sets };
  const previews = await previewSteps(ctx, progress, known);
  output.result(
    {
      runbook: runbook.name,
      phase: progress.phase,
      rotation: progress.rotation
        ? { id: progress.rotation.id, emergency: progress.rotation.emergency, compromised: progress.rotation.compromisedVersion }
        : null,
      next: progress.next?.step.id ?? null,
      note: progress.note,
      steps: progress.steps.map((s) => ({
        id: s.step.id,
        kind: s.step.kind,
        title: s.step.title,
        status: s.status,
        by: s.record
          ? { actor: s.record.actor, at: s.record.at.toISOString(), note: s.record.note, ...(s.record.passedBy ? { passedBy: s.record.passedBy } : {}) }
          : null,
        done: s.done,
        applies: s.applies,
        does: describeStep(s.step),
        command: previews.get(s.index)?.command ?? null,
        refusedNow: previews.get(s.index)?.refusal ?? null,
        wayForward: previews.get(s.index)?.wayForward ?? null,
      })),
    },
    () => planLines(output, view.cwd, runbook, progress, ctx.config.keyring, previews).join('\n'),
  );
}

/**
 * Whether a run picks up where an earlier one (or someone by hand) left this rotation: a step before
 * the next one has an outcome, or the next one was begun (aborted, failed). Steps further on done
 * by hand (a routine rotation the emergency runbook starts on) do not make step 1 a resume.
 */
function resuming(p: RunbookProgress): boolean {
  const next = p.next;
  return next !== null && p.steps.some((s) => (s.index < next.index ? s.status !== 'none' : s === next && s.record !== null));
}

/** Run `runbook` from the first step not done for the current rotation; `sets` are inputs given up front. */
export async function runRunbook(io: RunnerIO, asWritten: Runbook, sets: Record<string, string>): Promise<RunResult> {
  const { ctx, output, asker } = io;
  const runbook = forApprovalPolicy(asWritten, ctx.config.approvals);
  const c = output.out;
  const out = (line = '') => output.info(line);
  const width = () => Math.min(io.columns() || 100, 100) - 4;
  const ran: RanStep[] = [];
  let enteredAt: string | null = null;
  const record = async (step: RunbookStep, outcome: StepOutcome, details: Record<string, unknown>, rotationBefore?: number) => {
    // When the inputs were typed (the incident summary's "incident entered"), on the rows of this run.
    await recordStep(ctx, runbook, step, outcome, { ...details, ...(enteredAt ? { inputsEnteredAt: enteredAt } : {}) }, rotationBefore);
    ran.push({ id: step.id, outcome });
  };
  const abort = async (step: RunbookStep, inputs: Record<string, string>): Promise<RunResult> => {
    await record(step, 'aborted', { inputs });
    out(c.yellow(`aborted at step ${step.id}. To resume (any operator, any machine): keyctl runbook run ${runbook.name}`));
    return { outcome: 'aborted', step: step.id, steps: ran };
  };

  let progress = await runbookProgress(ctx, runbook);
  for (const line of planLines(output, io.cwd, runbook, progress, ctx.config.keyring)) out(line);
  if (resuming(progress)) out(c.cyan(`resuming at step ${progress.next!.index + 1} (${progress.next!.step.id})`));

  const asked = await collectInputs(ctx, runbook, sets, asker);
  const inputs = asked.inputs;
  enteredAt = asked.enteredAt;

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
    for (const line of wrap(step.explain.trim(), width())) out(`  ${line}`);
    // What it will do, as it will run: the command with this run's inputs and the rotation filled in.
    out(`  ${c.dim(step.kind === 'command' ? `command: ${commandLine(expandCommand(step.command, inputs, progress.rotation, true))}` : describeStep(step))}`);
    if (step.kind === 'check' && step.check === 'external') {
      // The command comes from keyctl.yaml, never from the runbook: shown before anyone chooses Run.
      const ext = externalCheck(ctx, step);
      if (!ext) {
        const note = `no check command "${step.external}" in keyctl.yaml (checks: ${step.external}: {command: …}), so this check is skipped`;
        await record(step, 'skipped', { skipped: note, check: 'external', external: step.external, inputs });
        for (const [i, line] of wrap(`${note}; docs/runbooks.md says how to configure one`, width() - 2).entries())
          out(c.yellow(`  ${i === 0 ? '↷' : ' '} ${line}`));
        continue;
      }
      out(`  ${c.dim(`runs (from keyctl.yaml checks.${ext.name}): $ ${ext.command}`)}`);
      if (ext.description) out(`  ${c.dim(ext.description)}`);
    }
    if (next.status === 'aborted' && next.record)
      out(
        `  ${c.yellow(`${next.record.note === INTERRUPTED_NOTE ? 'interrupted' : 'aborted'} here by ${next.record.actor} ${formatTime(next.record.at)}: Run resumes it`)}`,
      );
    // The guard that would refuse the step's command now is shown before the choice, and Run is not
    // offered. (Steps that come `before:` a command prepare it — the propagation wait, a backup — and
    // stay on offer while that command would be refused.)
    const preview =
      asker && step.kind === 'command' && !step.before && next.command ? (await previewSteps(ctx, progress, inputs, [next.index])).get(next.index) : undefined;
    const refusal = preview?.refusal ?? null;
    if (refusal) out(`  ${c.yellow(refusal)}`);
    // The way forward, as the refused command would print it (e.g. close the routine rotation first).
    if (refusal && preview?.wayForward) for (const line of wrap(`way forward: ${preview.wayForward}`, width())) out(`  ${c.yellow(line)}`);

    if (step.kind === 'confirm' && !asker) {
      throw new RefusedError(
        `step ${step.id} needs a person to confirm: ${step.title}`,
        `run \`keyctl runbook run ${runbook.name}\` in a terminal; it resumes at this step`,
      );
    }
    const rotationBefore = progress.rotation;
    let offer: StepChoice[] = refusal ? ['skip', 'abort'] : ['run', 'skip', 'abort'];
    let finished: StepResult | null = null;
    while (!finished) {
      if (io.signal?.aborted) return abort(step, inputs);
      let choice: StepChoice = 'run';
      try {
        if (asker) choice = await asker.choose(step, { choices: offer });
        if (choice === 'skip') {
          const reason = await asker!.text('Why skip this step? (recorded in the audit)');
          await record(step, 'skipped', { skipped: reason, inputs });
          out(c.yellow(`  skipped: ${reason}`));
          break;
        }
      } catch (err) {
        if (!(err instanceof AskAborted)) throw err;
        choice = 'abort';
      }
      if (choice === 'abort') return abort(step, inputs);

      const result = await runStep(io, step, inputs, progress).catch(async (err: unknown) => {
        if (err instanceof AskAborted || io.signal?.aborted) return 'abort' as const;
        await record(step, 'failed', { error: (err as Error).message, inputs }).catch(() => undefined);
        throw err;
      });
      if (result === 'abort') return abort(step, inputs);
      if (result.exitCode === ExitCode.INTERRUPTED) {
        // The command stopped cleanly on Ctrl-C (reencrypt saved its cursor): resumable, not failed.
        await record(step, 'aborted', { ...result.details, inputs }, rotationBefore?.id);
        out(c.yellow(`⏸ step ${step.id} interrupted. To resume (any operator, any machine): keyctl runbook run ${runbook.name}`));
        return { outcome: 'aborted', step: step.id, steps: ran };
      }
      await record(step, result.ok ? 'ok' : 'failed', { ...result.details, inputs }, rotationBefore?.id);
      if (result.ok) {
        out(c.green(`✓ ${step.id}`) + (result.detail ? `: ${result.detail}` : ''));
        finished = result;
        break;
      }
      out(c.red(`✗ step ${step.id} failed`) + (result.detail ? `: ${result.detail}` : ''));
      // One hint: the step's own guidance, else how to come back.
      const hint = step.on_failure ? `what to do: ${step.on_failure.trim()}` : null;
      if (hint) for (const [i, line] of wrap(hint, width()).entries()) out(`  ${i === 0 ? line.replace('what to do:', c.bold('what to do:')) : line}`);
      if (asker && step.kind === 'check' && !io.signal?.aborted) {
        // A person is here: fix it in another terminal and retry, rather than start over.
        offer = ['retry', 'skip', 'abort'];
        continue;
      }
      if (!hint) out(`  run \`keyctl runbook run ${runbook.name}\` again; it resumes at this step`);
      return { outcome: 'failed', step: step.id, exitCode: result.exitCode, steps: ran };
    }
  }

  out();
  const rotation = progress.rotation;
  await printSummary(io, runbook, inputs.incident ?? null, io.summaryFormat ?? 'text');
  out(c.green(`✓ runbook ${runbook.name}: nothing left to do${rotation ? ` in phase ${rotation.phase}; next: ${nextStep(rotation.phase)}` : ''}`));
  return { outcome: 'finished', steps: ran };
}

/**
 * The runbook's closing summary of the latest rotation: the incident timeline (text, or Markdown to
 * paste into a ticket) or the evidence line. `incident`: the reference, else the one recorded.
 */
export async function printSummary(view: RunbookView, runbook: Runbook, incident: string | null, format: SummaryFormat): Promise<boolean> {
  const { ctx, output } = view;
  if (runbook.summary === 'incident') {
    const summary = await incidentSummary(ctx, incident ?? (await recordedInput(ctx, runbook, 'incident')));
    if (summary) output.result({ incident: summary }, () => (format === 'markdown' ? incidentMarkdown(summary) : incidentText(output, summary)));
    return summary !== null;
  }
  if (runbook.summary === 'evidence') {
    const line = await recoveryEvidence(ctx);
    if (line) output.result({ evidence: line }, () => line);
    return line !== null;
  }
  return false;
}

/** An input recorded on the latest rotation's runbook rows (the summary after the rotation closed). */
async function recordedInput(ctx: CoreContext, runbook: Runbook, id: string): Promise<string | null> {
  const rotation = (await openRotation(ctx.db, ctx.config.keyring)) ?? (await latestRotation(ctx.db, ctx.config.keyring));
  if (!rotation) return null;
  const rows = (await listAudit(ctx.db, ctx.config.keyring, { rotationId: rotation.id })).filter(
    (r) => r.action === RUNBOOK_ACTION && r.details?.runbook === runbook.name,
  );
  const value = (rows.at(-1)?.details?.inputs as Record<string, unknown> | undefined)?.[id];
  return typeof value === 'string' ? value : null;
}

/** The runbook's inputs: given with --set, given earlier in this rotation, or asked for. */
async function collectInputs(
  ctx: CoreContext,
  runbook: Runbook,
  sets: Record<string, string>,
  asker: Asker | null,
): Promise<{ inputs: Record<string, string>; enteredAt: string | null }> {
  const previous = await previousInputs(ctx, runbook);
  const inputs: Record<string, string> = {};
  let enteredAt: string | null = null;
  for (const input of runbook.inputs) {
    const given = sets[input.id] ?? previous[input.id];
    if (given !== undefined) {
      if (input.pattern && !new RegExp(input.pattern).test(given)) throw new UsageError(`input ${input.id} "${given}" must match ${input.pattern}`);
      inputs[input.id] = given;
      continue;
    }
    if (!asker) throw new UsageError(`runbook ${runbook.name} needs input "${input.id}" (${input.prompt})`, `pass --set ${input.id}=VALUE`);
    inputs[input.id] = await asker.text(input.prompt, input.pattern);
    enteredAt = ctx.now().toISOString();
  }
  return { inputs, enteredAt };
}

/** Inputs given earlier in this rotation (the runbook-step rows keep them), so a resume does not ask again. */
async function previousInputs(ctx: CoreContext, runbook: Runbook): Promise<Record<string, string>> {
  const rotation = await openRotation(ctx.db, ctx.config.keyring);
  if (!rotation) return {};
  const rows = (await listAudit(ctx.db, ctx.config.keyring, { rotationId: rotation.id })).filter(
    (r) => r.action === RUNBOOK_ACTION && r.details?.runbook === runbook.name,
  );
  return (rows.at(-1)?.details?.inputs as Record<string, string> | undefined) ?? {};
}

/** A command step's arguments with inputs and rotation fields filled in (`lenient`: `<name>` for what is not known yet). */
function expandCommand(command: string, inputs: Record<string, string>, rotation: RunbookProgress['rotation'], lenient = false): string[] {
  const known = lenient ? new Proxy(inputs, { get: (t, k: string) => t[k] ?? `<${k}>` }) : inputs;
  return splitArgs(command).map((a) => fillTemplate(a, known, rotation, lenient));
}

/** As the operator would type it: arguments with spaces quoted. */
function commandLine(argv: string[]): string {
  return `keyctl ${argv.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`;
}

interface StepResult {
  ok: boolean;
  exitCode: number;
  detail: string;
  details: Record<string, unknown>;
}

async function runStep(io: RunnerIO, step: RunbookStep, inputs: Record<string, string>, p: RunbookProgress): Promise<StepResult> {
  const { ctx } = io;
  switch (step.kind) {
    case 'check': {
      const r = await runCheck(ctx, step);
      return {
        ok: r.ok,
        exitCode: r.ok ? ExitCode.OK : ExitCode.PROBLEMS_FOUND,
        detail: r.detail,
        details: { check: step.check, result: r.detail, ...r.details },
      };
    }
    case 'command': {
      const argv = expandCommand(step.command, inputs, p.rotation);
      io.output.info(io.output.out.dim(`$ ${commandLine(argv)}`));
      const code = await io.invoke(argv);
      return {
        ok: code === ExitCode.OK,
        exitCode: code,
        detail: code === ExitCode.OK ? '' : `keyctl ${argv[0]} exited ${code}`,
        details: { command: argv.join(' '), exitCode: code },
      };
    }
    case 'confirm': {
      const value = step.input ? await io.asker!.text(step.input.prompt, step.input.pattern) : undefined;
      return { ok: true, exitCode: ExitCode.OK, detail: value ? `recorded "${value}"` : 'confirmed', details: value ? { value } : {} };
    }
    case 'wait': {
      const seconds =
        step.wait === 'propagation'
          ? Math.max(0, Math.ceil(ctx.config.policy.minPropagationSeconds - (ctx.now().getTime() - (p.rotation?.phaseChangedAt.getTime() ?? 0)) / 1000))
          : step.wait;
      if (seconds > 0) await countdown(io, seconds);
      return {
        ok: true,
        exitCode: ExitCode.OK,
        detail: seconds > 0 ? `waited ${formatDuration(seconds)}` : 'no wait needed',
        details: { waitedSeconds: seconds },
      };
    }
    case 'approval':
      return step.approval === 'break-glass' ? breakGlassStep(io, step, p) : approvalStep(io, step, step.approval, step.before === 'generate --emergency');
  }
}

type ApprovalStep = Extract<RunbookStep, { kind: 'approval' }>;

/** What is still missing on a request, and the commands that add it. */
function missingLines(s: RequestState): string[] {
  const have = s.valid.length > 0 ? ` (${s.valid.map((v) => v.approver).join(', ')})` : '';
  return [
    `request #${s.request.id}, ${describeBinding(s.request)}: ${s.valid.length} of ${s.required} signatures${have}; still to sign: ${s.missing.join(', ')}`,
    ...s.rejected.map((r) => `not counted: ${r.approver}: ${r.reason}`),
    ...signingCommands(s.request.id),
  ];
}

/**
 * Wait, re-checking every `pollSeconds`, until `check` says enough; the live line counts down to the
 * next check. Ctrl-C aborts (the runner records it; running the runbook again resumes here).
 */
async function waitForSignatures(io: RunnerIO, step: ApprovalStep, check: () => Promise<{ done: boolean; line: string; lines: string[] }>): Promise<string> {
  let shown = '';
  for (;;) {
    const state = await check();
    if (state.done) return state.line;
    // What is missing and how to add it, printed again only when it changes (a signature came in).
    const text = state.lines.join('\n');
    if (text !== shown) {
      for (const line of state.lines) io.output.info(`  ${line}`);
      shown = text;
    }
    const progress = await io.progress(`waiting for approvals: ${state.line}`);
    try {
      for (let left = step.pollSeconds; left > 0; left--) {
        progress.update(`waiting for approvals: ${state.line}; checking again in ${left} s (Ctrl-C aborts; the runbook resumes here)`);
        await io.sleep(1000, io.signal);
      }
    } finally {
      progress.stop();
    }
  }
}

async function approvalStep(io: RunnerIO, step: ApprovalStep, action: ApprovalAction, emergency: boolean): Promise<StepResult> {
  const first = await requestToWaitFor(io.ctx, action, `keyctl runbook, step ${step.id}`, emergency);
  const id = first.request.id;
  let last: RequestState | null = null;
  const line = await waitForSignatures(io, step, async () => {
    last = last === null ? first : await requestState(io.ctx, id);
    if (last.status === 'expired' || last.status === 'consumed')
      throw new RefusedError(`approval request #${id} is ${last.status} before it was approved`, `run the runbook again: it makes a new request`);
    const done = last.valid.length >= last.required;
    return {
      done,
      line: done
        ? `request #${id} approved by ${last.valid.map((v) => v.approver).join(', ')}`
        : `${last.valid.length} of ${last.required} signatures on request #${id}`,
      lines: missingLines(last),
    };
  });
  return {
    ok: true,
    exitCode: ExitCode.OK,
    detail: line,
    details: {
      request: id,
      approvers: (last ?? first).valid.map((v) => ({ name: v.approver, fingerprint: v.fingerprint, signedAt: v.signedAt.toISOString() })),
    },
  };
}

async function breakGlassStep(io: RunnerIO, step: ApprovalStep, p: RunbookProgress): Promise<StepResult> {
  const rotation = p.rotation?.id ?? null;
  const line = await waitForSignatures(io, step, async () => {
    const owed = (await breakGlassOwed(io.ctx)).filter((o) => rotation === null || o.rotationId === rotation);
    const broken = owed.find((o) => o.problem !== null);
    if (broken)
      throw new RefusedError(
        `the break glass of ${broken.action} (request #${broken.request}) cannot be approved: ${broken.problem}`,
        '`keyctl status --check` reports it too',
      );
    if (owed.length === 0) return { done: true, line: 'no break-glass action awaits approval', lines: [] };
    return {
      done: false,
      line: `${owed.length} break-glass action(s) await approval (request${owed.length === 1 ? '' : 's'} ${owed.map((o) => `#${o.request}`).join(', ')})`,
      lines: owed.flatMap((o) => missingLines(o.state!)),
    };
  });
  return { ok: true, exitCode: ExitCode.OK, detail: line, details: {} };
}

async function countdown(io: RunnerIO, seconds: number): Promise<void> {
  const progress = await io.progress(`waiting ${formatDuration(seconds)}`);
  const end = io.ctx.now().getTime() + seconds * 1000;
  try {
    for (let now = io.ctx.now().getTime(); now < end; now = io.ctx.now().getTime()) {
      progress.update(`waiting: ${formatDuration(Math.ceil((end - now) / 1000))} left (Ctrl-C aborts; the runbook resumes here)`);
      await io.sleep(Math.min(1000, end - now), io.signal);
    }
  } finally {
    progress.stop();
  }
}
