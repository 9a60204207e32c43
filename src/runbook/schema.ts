/**
 * The runbook file format (docs/runbooks.md): a list of steps, each an automatic `check`, a keyctl
 * `command`, a `confirm` for a human action keyctl cannot do, a `wait`, or an `approval` (the
 * two-person rule's signatures). Parsing reports every
 * problem at once, each naming the file, the step (number and id) and what is wrong.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../base/errors.js';
import type { ApprovalsConfig } from '../config/schema.js';
import { MACHINE_COMMANDS, PHASES } from '../rotation/machine.js';

/** keyctl commands a runbook may run (not `runbook` itself, not `init`). */
export const RUNBOOK_COMMANDS = [
  'status',
  'generate',
  'dual-key',
  'reencrypt',
  'verify',
  'promote',
  'retire',
  'rollback',
  'backup',
  'recover-test',
  'audit',
] as const;

export const CHECKS = [
  'database-reachable',
  'keystore-reachable',
  'backup-fresh',
  'recover-test-recent',
  'no-unparseable',
  'no-open-rotation',
  'audit-chain-intact',
  'external',
] as const;
export type CheckName = (typeof CHECKS)[number];

/**
 * `recover-test-recent` without `days`: a recovery test passed within this many days. The
 * documented cron (monthly) fits it with room for a missed month; a unit test keeps them agreeing.
 */
export const RECOVER_TEST_RECENT_DAYS = 90;

/** `none`: no rotation is open. */
export const RUNBOOK_PHASES = ['none', ...PHASES] as const;
export type RunbookPhase = (typeof RUNBOOK_PHASES)[number];

const id = z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'an id of lowercase letters, digits and -');

const common = {
  id,
  title: z.string().min(1),
  /** What the operator reads before acting: why, what it does, what to watch. */
  explain: z.string().min(1),
  /**
   * When the step applies. A command step that moves the rotation (generate, dual-key, …) applies
   * whenever the rotation machine allows that command now; `before: COMMAND` gives any other step
   * the same window (e.g. a confirm before dual-key). `phases` (a list of phase names, `none` for no
   * open rotation) is still accepted for team runbooks; absent all three: any phase.
   */
  before: z.enum(MACHINE_COMMANDS).optional(),
  phases: z.array(z.enum(RUNBOOK_PHASES)).min(1).optional(),
  /** Guidance printed when the step fails. */
  on_failure: z.string().min(1).optional(),
};

const CheckStep = z.strictObject({
  ...common,
  kind: z.literal('check'),
  check: z.enum(CHECKS),
  /** backup-fresh: maxAgeHours (default 24); recover-test-recent: days (default 90). */
  maxAgeHours: z.number().positive().optional(),
  days: z.number().positive().optional(),
  /** external: the name of a check command in keyctl.yaml (`checks:`); the runbook never holds the command itself. */
  external: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'a check name from keyctl.yaml checks:')
    .optional(),
});

const CommandStep = z.strictObject({
  ...common,
  kind: z.literal('command'),
  /** keyctl arguments, e.g. "reencrypt --dry-run"; {{input}} and {{rotation.newVersion}} are filled in. */
  command: z.string().min(1),
});

const ConfirmStep = z.strictObject({
  ...common,
  kind: z.literal('confirm'),
  /** Optionally make the operator type a value (recorded in the audit), e.g. a change ticket. */
  input: z
    .strictObject({
      prompt: z.string().min(1),
      /** The value must match this regular expression. */
      pattern: z.string().min(1).optional(),
    })
    .optional(),
});

const WaitStep = z.strictObject({
  ...common,
  kind: z.literal('wait'),
  /** A fixed time, or `propagation`: policy.minPropagationSeconds since the rotation's last phase change. */
  wait: z.union([z.literal('propagation'), z.number().int().positive()]),
});

/** The approvals a step can wait for: a guarded action's, or the break-glass actions of the rotation (signed afterwards). */
export const APPROVAL_STEP_ACTIONS = ['generate', 'promote', 'retire', 'rollback', 'break-glass'] as const;

const ApprovalStep = z.strictObject({
  ...common,
  kind: z.literal('approval'),
  /**
   * Gathers the signatures the two-person rule (keyctl.yaml `approvals:`) asks for: makes the
   * request when none is open, shows who still has to sign and how, and re-checks until they have.
   * Left out of the run when the policy does not guard the action (or allows no break glass).
   */
  approval: z.enum(APPROVAL_STEP_ACTIONS),
  /** How often to re-check while waiting (default 5 s). */
  pollSeconds: z.number().int().positive().max(3600).default(5),
});

const Step = z.discriminatedUnion('kind', [CheckStep, CommandStep, ConfirmStep, WaitStep, ApprovalStep]);
export type RunbookStep = z.infer<typeof Step>;

const Input = z.strictObject({
  id: z.string().regex(/^[a-z][a-z0-9_]{0,31}$/, 'an input name of lowercase letters, digits and _'),
  prompt: z.string().min(1),
  pattern: z.string().min(1).optional(),
});

const RunbookSchema = z.strictObject({
  name: id,
  title: z.string().min(1),
  description: z.string().min(1),
  /** Values asked once at the start (or given with --set NAME=VALUE), usable as {{name}}. */
  inputs: z.array(Input).default([]),
  steps: z.array(Step).min(1),
  /**
   * `emergency`: with a routine rotation open, only the step that runs `generate --emergency` applies
   * (it turns that rotation into an emergency one, or is refused with the way forward).
   */
  rotation: z.enum(['routine', 'emergency']).optional(),
  /** What to print at the end: an incident timeline (emergency) or an evidence line (recovery test). */
  summary: z.enum(['incident', 'evidence']).optional(),
});

export type Runbook = z.infer<typeof RunbookSchema> & { file: string };

const KINDS = ['check', 'command', 'confirm', 'wait', 'approval'];

/** Parse and validate one runbook file; throws ConfigError listing every problem. */
export function parseRunbook(text: string, file: string): Runbook {
  const rel = path.relative(process.cwd(), file);
  const label = rel && !rel.startsWith('..') ? rel : file;
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      `${label} is not valid YAML`,
      doc.errors.map((e) => `${label}:${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`),
      'fix the syntax at the line shown',
    );
  }
  const raw = doc.toJS() as unknown;
  const result = RunbookSchema.safeParse(raw);
  const problems: string[] = [];
  if (!result.success) for (const issue of result.error.issues) problems.push(describeIssue(issue, raw, label));
  const steps = (raw as { steps?: unknown })?.steps;
  if (Array.isArray(steps)) {
    const seen = new Set<string>();
    const inputs = new Set(((raw as { inputs?: Array<{ id?: string }> }).inputs ?? []).map((i) => i?.id));
    steps.forEach((s: Record<string, unknown> | null, i) => {
      const where = `${label}: ${stepLabel(i, s)}`;
      if (typeof s?.id === 'string') {
        if (seen.has(s.id)) problems.push(`${where}: the id "${s.id}" is used by an earlier step`);
        seen.add(s.id);
      }
      if (s?.kind === 'check' && (s.check === 'external') !== (s.external !== undefined))
        problems.push(
          `${where}: ${s.check === 'external' ? 'check: external needs "external": the name of a check command in keyctl.yaml (checks:)' : '"external" goes with check: external'}`,
        );
      if (s?.kind === 'command' && typeof s.command === 'string') {
        const first = s.command.trim().split(/\s+/)[0] ?? '';
        if (!(RUNBOOK_COMMANDS as readonly string[]).includes(first)) {
          problems.push(`${where}: command "${first}" is not a keyctl command a runbook can run (${RUNBOOK_COMMANDS.join(', ')})`);
        }
        for (const m of s.command.matchAll(/\{\{\s*([\w.]+)\s*\}\}/g)) {
          if (!inputs.has(m[1]) && !m[1]!.startsWith('rotation.'))
            problems.push(`${where}: {{${m[1]}}} is neither an input of this runbook nor rotation.<field>`);
        }
      }
      for (const key of ['pattern'] as const) {
        const pattern = (s?.input as { pattern?: unknown } | undefined)?.[key];
        if (typeof pattern === 'string' && !validRegex(pattern)) problems.push(`${where}: input.pattern is not a valid regular expression`);
      }
    });
  }
  // In file order: problems of the file itself first, then step by step.
  const stepNo = (line: string) => Number(/: step (\d+)/.exec(line)?.[1] ?? 0);
  problems.sort((a, b) => stepNo(a) - stepNo(b));
  if (problems.length > 0) {
    throw new ConfigError(
      `${label} is not a valid runbook (${problems.length} problem${problems.length === 1 ? '' : 's'})`,
      problems,
      'see docs/runbooks.md for the format',
    );
  }
  return { ...result.data!, file };
}

export function loadRunbookFile(file: string): Runbook {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read runbook ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseRunbook(text, file);
}

function validRegex(p: string): boolean {
  try {
    new RegExp(p);
    return true;
  } catch {
    return false;
  }
}

function stepLabel(i: number, s: unknown): string {
  const sid = (s as { id?: unknown } | null)?.id;
  return `step ${i + 1}${typeof sid === 'string' ? ` (id "${sid}")` : ''}`;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown, label: string): string {
  const p = issue.path;
  // Inside a step, paths are told relative to the step; elsewhere relative to the file.
  const inStep = p[0] === 'steps' && typeof p[1] === 'number';
  const base: unknown = inStep ? (raw as { steps: unknown[] }).steps[p[1] as number] : raw;
  const where = inStep ? `${label}: ${stepLabel(p[1] as number, base)}` : label;
  const rest = inStep ? p.slice(2) : p;
  const field = rest.length > 0 ? `${rest.join('.')}: ` : '';
  const found = rest.reduce<unknown>((v, k) => (v as Record<PropertyKey, unknown> | undefined)?.[k as string], base);
  switch (issue.code) {
    case 'invalid_union': {
      const kind = ((inStep ? base : found) as { kind?: unknown } | undefined)?.kind;
      if (kind === undefined) return `${where}: missing "kind" (one of ${KINDS.join(', ')})`;
      return `${where}: unknown kind ${JSON.stringify(kind)} (one of ${KINDS.join(', ')})`;
    }
    case 'invalid_type': {
      if (found === undefined) return `${where}: missing "${rest.join('.')}"`;
      return `${where}: ${field}expected ${issue.expected}, found ${JSON.stringify(found)}`;
    }
    case 'unrecognized_keys':
      return `${where}: ${field}unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    case 'invalid_value':
      return `${where}: ${field}expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, found ${JSON.stringify(found)}`;
    default:
      return `${where}: ${field}${issue.message}`;
  }
}

/**
 * The runbook as it runs under this config: approval steps the policy does not ask for are left out
 * (an action `approvals.require` does not guard; break-glass approvals without `breakGlass: true`).
 */
export function forApprovalPolicy(runbook: Runbook, approvals: ApprovalsConfig | undefined): Runbook {
  const needed = (step: RunbookStep): boolean => {
    if (step.kind !== 'approval') return true;
    if (!approvals) return false;
    if (step.approval === 'break-glass') return approvals.breakGlass && Object.values(approvals.require).some((n) => (n ?? 0) > 0);
    return (approvals.require[step.approval] ?? 0) > 0;
  };
  return runbook.steps.every(needed) ? runbook : { ...runbook, steps: runbook.steps.filter(needed) };
}
