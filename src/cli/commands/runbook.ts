/**
 * `keyctl runbook list | run NAME`: parses the flags, decides whether a person can be asked (a
 * terminal and no --yes) and hands the runbook to src/runbook/runner.ts with inquirer as its
 * Asker; the runner's result becomes the exit status.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import Table from 'cli-table3';
import { locateConfig, loadConfig, resolveConfigPath } from '../../config/load.js';
import { UsageError } from '../../base/errors.js';
import { ExitCode } from '../../base/exit-codes.js';
import { findRunbook, listRunbooks } from '../../runbook/load.js';
import { shortPath } from '../../runbook/render.js';
import {
  AskAborted,
  printSummary,
  runRunbook as runSteps,
  showPlan,
  type Asker,
  type RunResult,
  type StepChoice,
  type SummaryFormat,
} from '../../runbook/runner.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';

export interface RunbookListOptions {
  /** Also a runbook file of your own. */
  file?: string;
}

export interface RunbookOptions {
  /** Run this runbook file instead of one found by name. */
  file?: string;
  /** Show the plan and each step's command; change nothing. */
  dryRun?: boolean;
  /** Run check, command and wait steps without asking (confirm steps still need a person). */
  yes?: boolean;
  /** Inputs as NAME=VALUE. */
  set?: string[];
  /** Only print the closing summary of the latest rotation. */
  summary?: boolean;
  /** How the incident summary prints. */
  format?: SummaryFormat;
}

/** The team's runbook directory from keyctl.yaml, when there is a config. */
function teamDir(rt: CliRuntime): string | undefined {
  const { file } = locateConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  if (!existsSync(file)) return undefined;
  const config = loadConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  for (const warning of config.warnings ?? []) rt.output.warn(warning);
  return config.runbooks ? resolveConfigPath(config, config.runbooks) : undefined;
}

export async function list(rt: CliRuntime, flags: RunbookListOptions): Promise<number> {
  const runbooks = listRunbooks({ teamDir: teamDir(rt), file: flags.file });
  rt.output.result({ runbooks: runbooks.map((r) => ({ name: r.name, title: r.title, steps: r.steps.length, file: r.file })) }, () => {
    const table = new Table({ head: ['name', 'title', 'steps', 'file'], style: { head: [], border: [] } });
    for (const r of runbooks) table.push([r.name, r.title, r.steps.length, shortPath(rt.cwd, r.file)]);
    return `${table.toString()}\nStart one with: keyctl runbook run NAME   (--dry-run shows its plan first)`;
  });
  return ExitCode.OK;
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

function isPromptExit(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return name === 'ExitPromptError' || name === 'AbortPromptError';
}

/** inquirer, loaded on the first question; a prompt left with Ctrl-C becomes AskAborted (same message). */
function inquirerAsker(): Asker {
  const ask = async (questions: object[]): Promise<Record<string, string>> => {
    const { default: inquirer } = await import('inquirer');
    const prompt = inquirer.prompt as unknown as (q: object[]) => Promise<Record<string, string>>;
    try {
      return await prompt(questions);
    } catch (err) {
      if (isPromptExit(err)) throw new AskAborted((err as Error).message, { cause: err });
      throw err;
    }
  };
  return {
    async choose(step, offer) {
      const label: Record<StepChoice, string> = {
        run: step.kind === 'confirm' ? 'Done (confirm)' : 'Run',
        retry: 'Retry (after fixing it, e.g. in another terminal)',
        skip: 'Skip (you will give a reason)',
        abort: 'Abort (resume later from here)',
      };
      const { choice } = await ask([
        {
          type: 'select',
          name: 'choice',
          message: `${step.id}: what now?`,
          choices: offer.choices.map((value) => ({ name: label[value], value })),
        },
      ]);
      return choice as StepChoice;
    },
    async text(message, pattern) {
      const re = pattern ? new RegExp(pattern) : /\S/;
      const { value } = await ask([
        { type: 'input', name: 'value', message, validate: (v: string) => (re.test(v.trim()) ? true : pattern ? `must match ${pattern}` : 'required') },
      ]);
      return (value ?? '').trim();
    },
  };
}

function exitStatusOf(result: RunResult): number {
  switch (result.outcome) {
    case 'finished':
      return ExitCode.OK;
    case 'aborted':
      return ExitCode.INTERRUPTED;
    case 'failed':
      return result.exitCode;
  }
}

/** `keyctl runbook run NAME`. */
export async function run(rt: CliRuntime, opts: RunbookOptions, args: string[]): Promise<number> {
  const name = args[0]!;
  const runbook = findRunbook(name, { teamDir: teamDir(rt), file: opts.file });
  const sets = parseSets(opts.set);
  for (const k of Object.keys(sets)) {
    if (!runbook.inputs.some((i) => i.id === k))
      throw new UsageError(`--set ${k}: runbook ${runbook.name} has no input "${k}"`, `its inputs: ${runbook.inputs.map((i) => i.id).join(', ') || 'none'}`);
  }
  if (opts.summary) {
    if (!runbook.summary)
      throw new UsageError(`runbook ${runbook.name} has no summary`, 'emergency-rotation prints an incident summary; key-recovery-test an evidence line');
    return withCoreContext(rt, async (ctx) => {
      const printed = await printSummary({ ctx, output: rt.output, cwd: rt.cwd }, runbook, sets.incident ?? null, opts.format ?? 'text');
      if (!printed) throw new UsageError(`nothing to summarise yet: runbook ${runbook.name} has not run for keyring ${ctx.config.keyring}`);
      return ExitCode.OK;
    });
  }
  const interactive = rt.stdinIsTTY && !opts.yes;
  if (!opts.dryRun && !rt.stdinIsTTY && !opts.yes) {
    throw new UsageError(
      `keyctl runbook run asks before every step, and there is no terminal to ask`,
      `run it in a terminal (tmux, ssh -t), or pass --yes to run its check, command and wait steps without asking (confirm steps still need a person),\n` +
        `or run the steps' commands yourself: keyctl runbook run ${runbook.name} --dry-run shows them`,
    );
  }
  return withCoreContext(rt, async (ctx) => {
    if (opts.dryRun) {
      await showPlan({ ctx, output: rt.output, cwd: rt.cwd }, runbook, sets);
      return ExitCode.OK;
    }
    // Ctrl-C (or SIGTERM) between steps and during a wait aborts the runbook at the step, as Abort
    // does; a second one leaves at once. While a command runs, the command handles its own signals
    // (reencrypt finishes its batch and exits 7, which the runner records as interrupted).
    const stop = new AbortController();
    const onSignal = () => {
      if (stop.signal.aborted) {
        rt.output.info('keyctl: stopping now; run the runbook again to resume.');
        rt.exitNow(ExitCode.INTERRUPTED);
        return;
      }
      // The runner says where it stopped and how to resume ("aborted at step …").
      stop.abort();
    };
    const listen = () => [rt.onSignal('SIGINT', onSignal), rt.onSignal('SIGTERM', onSignal)];
    let unsubscribe = listen();
    const invoke = async (argv: string[]): Promise<number> => {
      for (const off of unsubscribe) off();
      try {
        return await rt.invoke(argv);
      } finally {
        unsubscribe = listen();
      }
    };
    const result = await runSteps(
      {
        ctx,
        output: rt.output,
        cwd: rt.cwd,
        asker: interactive ? inquirerAsker() : null,
        columns: rt.columns,
        invoke,
        sleep: (ms, signal) => sleep(ms, undefined, { signal }),
        progress: async (first) => (await import('../../ui/progress.js')).startProgress(rt.output, first),
        signal: stop.signal,
        summaryFormat: opts.format ?? 'text',
      },
      runbook,
      sets,
    ).finally(() => {
      for (const off of unsubscribe) off();
    });
    return exitStatusOf(result);
  });
}

/** The name main.ts registers today. */
export const runRunbook = run;
