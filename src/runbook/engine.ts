/**
 * Runbook logic that needs no terminal: where a runbook stands for the current rotation (which
 * steps are done, which comes next), the built-in checks, recording a step's outcome in
 * rotation_audit (`action = runbook-step`), and the closing summaries (incident timeline,
 * recovery-test evidence line) built from the audit record.
 */
import path from 'node:path';
import { resolveConfigPath } from '../config/load.js';
import { checkChecksum, listBackups } from '../backup/files.js';
import { appendAudit, latestAuditOf, listAudit, runbookRunAudit, type AuditOutcome, type AuditRow } from '../rotation/store.js';
import { verifyAudit } from '../core/audit.js';
import type { CoreContext } from '../core/context.js';
import { ProblemsFoundError, UsageError } from '../base/errors.js';
import { formatCount, formatTime } from '../base/format.js';
import { ExitCode } from '../base/exit-codes.js';
import { reconcileRegistry } from '../core/registry.js';
import { latestRotation, listVersions, openRotation, type Rotation } from '../rotation/store.js';
import { countAllTargets } from '../core/rotation/counts.js';
import { snapshotOf } from '../core/rotation/snapshot.js';
import { commandApplies, finishingActions, isMachineCommand, isPhase, movesBack, preview, type GuardInput, type MachineCommand } from '../rotation/machine.js';
import { countVersions, keyringLoader } from '../core/status.js';
import { RECOVER_TEST_RECENT_DAYS, type Runbook, type RunbookPhase, type RunbookStep } from './schema.js';

export const RUNBOOK_ACTION = 'runbook-step';

export type StepOutcome = 'ok' | 'skipped' | 'failed' | 'aborted';

/**
 * What the plan shows for a step: done in this runbook, done outside it (the command's own audit
 * row, e.g. an operator ran `keyctl dual-key` by hand), passed (a step that prepares a command —
 * comes `before:` it, or is its `--dry-run` — whose own action never ran, while that command did:
 * not needed any more, and not done either), skipped, failed, aborted, or nothing yet.
 */
export type StepStatus = 'done' | 'done-outside' | 'passed' | 'skipped' | 'failed' | 'aborted' | 'none';

export interface StepRecord {
  actor: string;
  at: Date;
  /** Skip reason, or the failure. */
  note: string | null;
  /** For a passed step: the command that moved the rotation on past it (`actor` and `at` are that command's). */
  passedBy?: string;
}

export interface StepState {
  step: RunbookStep;
  index: number;
  /** The latest thing recorded for this step in this rotation. */
  status: StepStatus;
  record: StepRecord | null;
  /** Done (or skipped) since the rotation last moved back: the runbook does not offer it again. */
  done: boolean;
  /** The machine allows the step's command (or the command it comes before) now. */
  applies: boolean;
  /** The rotation command the step runs or prepares, if any. */
  command: MachineCommand | null;
}

export interface RunbookProgress {
  phase: RunbookPhase;
  rotation: Rotation | null;
  steps: StepState[];
  /** The first step that applies and is not done; null when nothing is left in this phase. */
  next: StepState | null;
  /** Why steps of this runbook do not apply now (e.g. an emergency runbook with a routine rotation open). */
  note: string | null;
}

/**
 * A step that prepares a command rather than making its move: one that comes `before:` it, or a
 * command step that is that command's `--dry-run`.
 */
function preparesCommand(step: RunbookStep): boolean {
  return (
    Boolean(step.before) ||
    (step.kind === 'approval' && step.approval !== 'break-glass') ||
    (step.kind === 'command' && splitArgs(step.command).includes('--dry-run'))
  );
}

/**
 * The audit action a preparing command step's own run leaves (`backup --if-configured`: a backup
 * row); null when it leaves none (a dry run, a check, a confirmation, a wait).
 */
function ownAction(step: RunbookStep): string | null {
  if (step.kind !== 'command' || !step.before) return null;
  const argv = splitArgs(step.command);
  return argv.includes('--dry-run') ? null : (argv[0] ?? null);
}

/** The rotation command a step runs (`generate --emergency` when it passes --emergency), or prepares with `before:`. */
export function stepCommand(step: RunbookStep): MachineCommand | null {
  if (step.before) return step.before;
  // An approval step comes before the action it approves.
  if (step.kind === 'approval') return step.approval === 'break-glass' ? null : step.approval;
  if (step.kind !== 'command') return null;
  const argv = splitArgs(step.command);
  const first = argv[0] ?? '';
  if (first === 'generate' && argv.includes('--emergency')) return 'generate --emergency';
  return isMachineCommand(first) ? first : null;
}

function stepApplies(step: RunbookStep, command: MachineCommand | null, phase: RunbookPhase): boolean {
  if (command === 'generate --emergency') return commandApplies('generate', phase) || commandApplies('generate --emergency', phase);
  if (command) return commandApplies(command, phase);
  return !step.phases || step.phases.includes(phase);
}

/**
 * Where the runbook stands. Outcomes count for the open rotation (rows carrying its id); with no
 * rotation open, for pre-rotation steps recorded since the last rotation closed. A step counts as
 * done until the rotation moves back along the procedure (a failed verify, a new write pass after
 * verify): then the steps from there on are offered again. Another operator on another machine
 * sees the same rows, so a hand-over resumes at the same step.
 */
export async function runbookProgress(ctx: CoreContext, runbook: Runbook): Promise<RunbookProgress> {
  const keyring = ctx.config.keyring;
  const rotation = await openRotation(ctx.db, keyring);
  const phase: RunbookPhase = rotation?.phase ?? 'none';
  // Steps before `generate` carry no rotation id: they count from the end of the previous rotation.
  const rows = await runbookRunAudit(ctx.db, keyring, rotation?.id ?? null);
  const backAt =
    rows
      .filter((r) => r.action !== RUNBOOK_ACTION && r.outcome !== 'refused' && isPhase(r.fromPhase) && isPhase(r.toPhase) && movesBack(r.fromPhase, r.toPhase))
      .at(-1)?.createdAt ?? null;
  const emergencyOnly = runbook.rotation === 'emergency' && rotation !== null && !rotation.emergency;
  const moved = (command: MachineCommand) =>
    rows.filter((r) => r.action !== RUNBOOK_ACTION && r.outcome === 'ok' && r.toPhase !== null && madeBy(command, r)).at(-1);
  const steps: StepState[] = runbook.steps.map((step, index) => {
    const command = stepCommand(step);
    const mine = rows.filter((r) => r.action === RUNBOOK_ACTION && r.details?.runbook === runbook.name && r.details?.step === step.id).at(-1);
    let outside: AuditRow | undefined;
    let passed: AuditRow | undefined;
    if (!mine && command && preparesCommand(step)) {
      // Done outside only when its own action ran (a backup by hand during this rotation), with that
      // action's time; the command it prepares having run since says the step is behind us, not done.
      const own = ownAction(step);
      outside = own ? rows.filter((r) => r.action === own && r.outcome === 'ok' && (!rotation || r.rotationId === rotation.id)).at(-1) : undefined;
      const by = outside ? undefined : moved(command);
      passed = by && by.fromPhase !== by.toPhase ? by : undefined;
    } else if (!mine && command && step.kind === 'command') {
      outside = moved(command);
    }
    const rec = mine ?? outside ?? passed;
    const status: StepStatus = mine ? statusOf(mine.outcome, mine) : outside ? 'done-outside' : passed ? 'passed' : 'none';
    const record: StepRecord | null = rec ? { actor: rec.actor, at: rec.createdAt, note: noteOf(rec), ...(passed ? { passedBy: command! } : {}) } : null;
    // A command run by hand counts as done once it moved the rotation on; a pass that left the phase
    // as it was (a shard's part, an interrupted run) is shown but the step is still to do. A step's
    // own action outside the runbook (a backup) moves no phase: it is done.
    const finished =
      status === 'done' ||
      status === 'skipped' ||
      status === 'passed' ||
      (status === 'done-outside' && (preparesCommand(step) || rec!.fromPhase !== rec!.toPhase));
    const counts = finished && (!backAt || rec!.createdAt > backAt);
    // Once the rotation is an emergency one, `generate --emergency` has nothing left to escalate.
    let applies = command === 'generate --emergency' && rotation?.emergency ? commandApplies('generate', phase) : stepApplies(step, command, phase);
    if (emergencyOnly && command !== 'generate --emergency') applies = false;
    return { step, index, status, record, done: counts, applies, command };
  });
  const note = emergencyOnly
    ? `rotation #${rotation.id} is a routine rotation (${rotation.oldVersion} → ${rotation.newVersion}, phase ${rotation.phase}); this runbook first turns it into an emergency rotation with \`generate --emergency\`, which is refused unless the compromised key is ${rotation.oldVersion}`
    : null;
  return { phase, rotation, steps, next: steps.find((s) => s.applies && !s.done) ?? null, note };
}

/** Whether audit row `r` records `command` (an emergency generate: only an emergency one, or an escalation). */
function madeBy(command: MachineCommand, r: AuditRow): boolean {
  if (command === 'generate --emergency')
    return (
      finishingActions('generate --emergency').some((a) => a === r.action) ||
      (finishingActions('generate').some((a) => a === r.action) && r.details?.emergency === true)
    );
  return finishingActions(command).some((a) => a === r.action);
}

/** The note of a command step stopped by Ctrl-C (exit 7): it resumes, it did not fail. */
export const INTERRUPTED_NOTE = 'interrupted';

function interruptedCommand(r: AuditRow): boolean {
  return r.action === RUNBOOK_ACTION && r.details?.kind === 'command' && r.details?.exitCode === ExitCode.INTERRUPTED;
}

function statusOf(outcome: AuditOutcome, r: AuditRow): StepStatus {
  // Rows from before interrupted commands were recorded as such said "failed" with exit 7.
  if (interruptedCommand(r)) return 'aborted';
  switch (outcome) {
    case 'ok':
      return 'done';
    case 'skipped':
      return 'skipped';
    case 'interrupted':
      return 'aborted';
    case 'failed':
    case 'refused':
      return 'failed';
  }
}

function noteOf(r: AuditRow): string | null {
  const d = r.details ?? {};
  if (interruptedCommand(r)) return INTERRUPTED_NOTE;
  if (typeof d.skipped === 'string') return d.skipped;
  if (typeof d.error === 'string') return d.error;
  if (r.outcome === 'failed' && typeof d.result === 'string') return d.result;
  if (r.outcome === 'failed' && typeof d.exitCode === 'number') return `exit ${d.exitCode}`;
  return null;
}

export interface StepPreview {
  /** The keyctl command line with inputs filled in (`<name>` where an input is not known yet). */
  command: string | null;
  /** Why the machine would refuse the step's command now, with the date when it is a wait. */
  refusal: string | null;
  /** What to do instead, as the refused command itself would say it (its hint), e.g. `keyctl retire --force …` first. */
  wayForward: string | null;
}

/**
 * For the plan: each remaining step's expanded command and the guard that would refuse it now.
 * Reads only (no keystore sync, no audit rows); counts come from one GROUP BY scan per target.
 */
export async function previewSteps(
  ctx: CoreContext,
  p: RunbookProgress,
  inputs: Record<string, string>,
  /** Only these steps (the runner previews the one it is about to offer). */
  only?: number[],
): Promise<Map<number, StepPreview>> {
  const versions = await listVersions(ctx.db, ctx.config.keyring);
  const counts = await countAllTargets(ctx);
  const snap = snapshotOf(ctx, p.rotation, versions, { byVersion: counts.byVersion, unparseable: counts.unparseable, plaintext: counts.plaintext });
  const out = new Map<number, StepPreview>();
  for (const s of p.steps) {
    if (s.done || !s.applies || (only && !only.includes(s.index))) continue;
    let command: string | null = null;
    let guardInput: GuardInput = {};
    if (s.step.kind === 'command') {
      const known = { ...inputs };
      const argv = splitArgs(s.step.command).map((a) => fillTemplate(a, new Proxy(known, { get: (t, k: string) => t[k] ?? `<${k}>` }), p.rotation, true));
      command = `keyctl ${argv.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`;
      const i = argv.indexOf('--compromised');
      const reason = argv.indexOf('--reason');
      guardInput = {
        ...(i >= 0 && argv[i + 1] && !argv[i + 1]!.startsWith('<') ? { compromised: argv[i + 1]! } : {}),
        ...(argv.includes('--force') ? { force: true, ...(reason >= 0 ? { reason: argv[reason + 1] ?? '' } : {}) } : {}),
      };
    }
    let refusal: string | null = null;
    let wayForward: string | null = null;
    if (s.command) {
      const candidates: MachineCommand[] = s.command === 'generate --emergency' && commandApplies('generate', p.phase) ? ['generate'] : [s.command];
      const r = preview(candidates[0]!, snap, guardInput).refusal;
      if (r) {
        refusal = `${s.command}: refused now — ${r.reason}${typeof r.details?.until === 'string' ? ` (stop here until ${r.details.until.slice(0, 10)})` : ''}`;
        wayForward = r.hint || null;
      }
    }
    out.set(s.index, { command, refusal, wayForward });
  }
  return out;
}

/** Record one step's outcome; the open rotation (if any, after the step ran) owns the row. */
export async function recordStep(
  ctx: CoreContext,
  runbook: Runbook,
  step: RunbookStep,
  outcome: StepOutcome,
  details: Record<string, unknown>,
  /** The rotation open before the step ran: owns the row when the step closed it (retire). */
  rotationBefore?: number,
): Promise<void> {
  const rotation = await openRotation(ctx.db, ctx.config.keyring);
  const auditOutcome: AuditOutcome = outcome === 'aborted' ? 'interrupted' : outcome;
  await appendAudit(
    ctx.db,
    {
      keyring: ctx.config.keyring,
      action: RUNBOOK_ACTION,
      actor: ctx.actor,
      rotationId: rotation?.id ?? rotationBefore ?? null,
      fromPhase: rotation?.phase ?? null,
      outcome: auditOutcome,
      details: { runbook: runbook.name, step: step.id, kind: step.kind, ...details },
    },
    ctx.now(),
  );
}

export interface CheckResult {
  ok: boolean;
  detail: string;
  /** An external check with no command in keyctl.yaml: the step is skipped with this note. */
  notConfigured?: string;
  /** For the audit row: an external check's command, exit code and last line of output. */
  details?: Record<string, unknown>;
}

/** The command an external check step runs, from keyctl.yaml only; null when none is configured. */
export function externalCheck(ctx: CoreContext, step: RunbookStep): { name: string; command: string; description?: string; timeoutSeconds: number } | null {
  if (step.kind !== 'check' || step.check !== 'external' || !step.external) return null;
  const c = ctx.config.checks[step.external];
  return c ? { name: step.external, command: c.command, ...(c.description ? { description: c.description } : {}), timeoutSeconds: c.timeoutSeconds } : null;
}

/** Run an external check command with `sh -c` in the config's directory: exit status and the last line it printed. */
async function runExternal(ctx: CoreContext, step: CheckStep): Promise<CheckResult> {
  const check = externalCheck(ctx, step);
  if (!check)
    return {
      ok: true,
      detail: '',
      notConfigured: `no check command "${step.external}" in keyctl.yaml (checks: ${step.external}: {command: …}); skipped — see docs/runbooks.md`,
    };
  const { spawn } = await import('node:child_process');
  const result = await new Promise<{ code: number | null; signal: string | null; output: string; error?: string }>((resolve) => {
    let output = '';
    const child = spawn('sh', ['-c', check.command], { cwd: ctx.config.baseDir, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => {
      output = (output + d.toString('utf8')).slice(-4096);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGTERM'), check.timeoutSeconds * 1000);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, output, error: err.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, output });
    });
  });
  const lastLine =
    result.output
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter(Boolean)
      .at(-1) ?? '';
  const details = { external: check.name, command: check.command, exitCode: result.code, lastLine, ...(result.signal ? { signal: result.signal } : {}) };
  if (result.code === 0) return { ok: true, detail: `${check.name}: exit 0${lastLine ? `: ${lastLine}` : ''}`, details };
  const why = result.error
    ? `could not start: ${result.error}`
    : result.signal
      ? `stopped by ${result.signal}${result.signal === 'SIGTERM' ? ` after ${check.timeoutSeconds} s` : ''}`
      : `exit ${result.code}`;
  return { ok: false, detail: `${check.name}: ${why}${lastLine ? `: ${lastLine}` : ''}`, details };
}

type CheckStep = Extract<RunbookStep, { kind: 'check' }>;

export async function runCheck(ctx: CoreContext, step: CheckStep): Promise<CheckResult> {
  const keyring = ctx.config.keyring;
  const now = ctx.now();
  switch (step.check) {
    case 'database-reachable':
      await ctx.db.knex.raw('select 1');
      return { ok: true, detail: `connected to ${ctx.db.endpoint.description}` };
    case 'keystore-reachable': {
      const snap = await ctx.keystore.read();
      if (!snap) return { ok: false, detail: `${ctx.keystore.describe()} holds no keys` };
      await reconcileRegistry(ctx);
      return { ok: true, detail: `${ctx.keystore.describe()}: primary ${snap.doc.primary}, ${snap.doc.keys.size} key(s) matching the registry` };
    }
    case 'backup-fresh': {
      const hours = step.maxAgeHours ?? 24;
      const dir = resolveConfigPath(ctx.config, ctx.config.backup.dir);
      for (const b of await listBackups(dir, keyring)) {
        if ((await checkChecksum(b.file)).ok) {
          const age = (now.getTime() - b.createdAt.getTime()) / 3_600_000;
          return age <= hours
            ? { ok: true, detail: `${path.basename(b.file)} (${age.toFixed(1)} h old)` }
            : { ok: false, detail: `the newest intact backup, ${path.basename(b.file)}, is ${age.toFixed(1)} h old (limit ${hours} h)` };
        }
      }
      return { ok: false, detail: `no intact backup of keyring ${keyring} in ${dir}` };
    }
    case 'recover-test-recent': {
      const days = step.days ?? RECOVER_TEST_RECENT_DAYS;
      const [last] = await latestAuditOf(ctx.db, keyring, 'recover-test', 1);
      if (!last) return { ok: false, detail: 'no recovery test has passed yet' };
      const age = (now.getTime() - last.createdAt.getTime()) / 86_400_000;
      return age <= days
        ? { ok: true, detail: `passed ${formatTime(last.createdAt)} by ${last.actor}` }
        : { ok: false, detail: `the last one passed ${Math.floor(age)} days ago (limit ${days})` };
    }
    case 'no-unparseable': {
      const bad: string[] = [];
      const keys = keyringLoader(ctx);
      for (const t of ctx.config.targets)
        for (const c of await countVersions(ctx.db, t, keys)) if (c.unparseable > 0) bad.push(`${c.table}.${c.column}: ${formatCount(c.unparseable)}`);
      return bad.length === 0
        ? { ok: true, detail: `all values in ${ctx.config.targets.length} target(s) parse` }
        : { ok: false, detail: `unparseable values: ${bad.join(', ')}` };
    }
    case 'no-open-rotation': {
      const r = await openRotation(ctx.db, keyring);
      return r ? { ok: false, detail: `rotation #${r.id} is open (phase ${r.phase})` } : { ok: true, detail: 'no rotation is open' };
    }
    case 'external':
      return runExternal(ctx, step);
    case 'audit-chain-intact': {
      // As `audit --verify` checks it: the chains and this keyring's head against its anchor.
      const report = await verifyAudit(ctx);
      if (report.problems.length > 0) return { ok: false, detail: report.problems.join('; ') };
      const anchored = report.anchors.find((a) => a.keyring === keyring)?.status === 'matches';
      return { ok: true, detail: anchored ? 'the audit hash chain is intact and ends in the anchored head' : 'the audit hash chain is intact' };
    }
  }
}

/** Fill {{input}} and {{rotation.field}} in one argument (`lenient`: an unknown rotation field stays `<name>`). */
export function fillTemplate(text: string, inputs: Record<string, string>, rotation: Rotation | null, lenient = false): string {
  return text.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_, name: string) => {
    if (name.startsWith('rotation.')) {
      const field = name.slice('rotation.'.length);
      const v = rotation && field in rotation ? rotation[field as keyof Rotation] : undefined;
      if ((v === undefined || v === null) && lenient) return `<${name}>`;
      if (v === undefined || v === null) throw new UsageError(`{{${name}}} has no value: no rotation is open`);
      return v instanceof Date ? v.toISOString() : String(v);
    }
    return inputs[name] ?? '';
  });
}

/** Split a command line into arguments: whitespace separates, double or single quotes group. */
export function splitArgs(line: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (const m of line.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

// ── summaries ──────────────────────────────────────────────────────────────────────────────────

export interface IncidentSummary {
  rotationId: number;
  incident: string | null;
  reason: string | null;
  compromisedVersion: string | null;
  newVersion: string;
  startedAt: string;
  endedAt: string;
  durationSeconds: number;
  rowsReencrypted: number;
  /** When the incident reference was typed at the runbook's start (null: given with --set or not recorded). */
  incidentEnteredAt: string | null;
  /** Everyone who did a step, in the order they first appear. */
  actors: string[];
  timeline: Array<{ at: string; action: string; outcome: string; actor: string; detail: string; sincePreviousSeconds: number }>;
}

/** The incident summary of the latest rotation of the keyring, from rotation_audit alone. */
export async function incidentSummary(ctx: CoreContext, incident: string | null): Promise<IncidentSummary | null> {
  const rotation = (await openRotation(ctx.db, ctx.config.keyring)) ?? (await latestRotation(ctx.db, ctx.config.keyring));
  if (!rotation) return null;
  // A command step's own row says what the runbook row would repeat; keep the runbook rows that
  // add something (confirmations with their values, skips, aborts, failures).
  // From the runbook's start: the checks before generate carry no rotation id; other rows without
  // one (init, a backup the day before) count only from the first runbook step of this run on.
  const run = await runbookRunAudit(ctx.db, ctx.config.keyring, rotation.id);
  const firstStep = run.find((r) => r.action === RUNBOOK_ACTION)?.createdAt.getTime() ?? rotation.openedAt.getTime();
  const rows = run.filter(
    (r) =>
      (r.rotationId === rotation.id || (r.createdAt.getTime() >= firstStep && r.createdAt.getTime() <= rotation.openedAt.getTime())) &&
      !(r.action === RUNBOOK_ACTION && r.details?.kind === 'command' && r.outcome === 'ok'),
  );
  if (rows.length === 0) return null;
  if (!rotation.emergency || !rotation.compromisedVersion) {
    throw new ProblemsFoundError(
      `rotation #${rotation.id} (${rotation.oldVersion} → ${rotation.newVersion}) has no key marked compromised: it is not an emergency rotation, so there is no incident to summarise`,
      'an emergency rotation starts with `keyctl generate --emergency --compromised vN --reason "…"`; `keyctl audit` shows what this rotation did',
    );
  }
  const enteredAt = rows
    .map((r) => r.details?.inputsEnteredAt)
    .filter((v): v is string => typeof v === 'string')
    .sort()[0];
  type Entry = { at: Date; action: string; outcome: string; actor: string; detail: string };
  const entries: Entry[] = rows.map((r) => ({
    at: r.createdAt,
    action: r.action === RUNBOOK_ACTION ? `runbook ${String(r.details?.step)}` : r.action,
    outcome: r.outcome,
    actor: r.actor,
    detail: timelineDetail(r),
  }));
  if (enteredAt) {
    const by = rows.find((r) => r.details?.inputsEnteredAt === enteredAt)?.actor ?? '';
    entries.push({
      at: new Date(enteredAt),
      action: 'incident entered',
      outcome: 'ok',
      actor: by,
      detail: incidentLine(incident, rotation.reason),
    });
    entries.sort((a, b) => a.at.getTime() - b.at.getTime());
  }
  const first = entries[0]!.at;
  const last = entries.at(-1)!.at;
  let prev = first;
  const timeline = entries.map((r) => {
    const entry = {
      at: r.at.toISOString(),
      action: r.action,
      outcome: r.outcome,
      actor: r.actor,
      detail: r.detail,
      sincePreviousSeconds: Math.round((r.at.getTime() - prev.getTime()) / 1000),
    };
    prev = r.at;
    return entry;
  });
  return {
    rotationId: rotation.id,
    incident,
    reason: rotation.reason,
    compromisedVersion: rotation.compromisedVersion,
    newVersion: rotation.newVersion,
    startedAt: first.toISOString(),
    endedAt: last.toISOString(),
    durationSeconds: Math.round((last.getTime() - first.getTime()) / 1000),
    // Every pass counts: interrupted and resumed runs each record the rows they rewrote.
    rowsReencrypted: rows.filter((r) => r.action === 'reencrypt').reduce((n, r) => n + (r.rowsAffected ?? 0), 0),
    incidentEnteredAt: enteredAt ?? null,
    actors: [...new Set(entries.map((e) => e.actor).filter(Boolean))],
    timeline,
  };
}

/** The incident and the reason, once each: a reason written from the runbook's template already names the incident. */
function incidentLine(incident: string | null, reason: string | null): string {
  if (incident && reason?.includes(incident)) return reason;
  return [incident, reason].filter(Boolean).join(' — ');
}

function timelineDetail(r: AuditRow): string {
  const d = r.details ?? {};
  if (r.action === RUNBOOK_ACTION)
    return [
      d.skipped ? `skipped: ${String(d.skipped)}` : '',
      d.value ? `value: ${String(d.value)}` : '',
      d.kind === 'check' && typeof d.result === 'string' ? d.result : '',
      d.kind === 'command' && typeof d.command === 'string' ? `keyctl ${d.command}${d.exitCode ? ` (exit ${String(d.exitCode)})` : ''}` : '',
    ]
      .filter(Boolean)
      .join('; ');
  if (r.rowsAffected) return `${formatCount(r.rowsAffected)} rows`;
  if (r.toPhase) return `→ ${r.toPhase}`;
  return '';
}

export function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s} s` : `${s} s`;
}

/** The one line a compliance log keeps for a key-recovery test. */
export async function recoveryEvidence(ctx: CoreContext): Promise<string | null> {
  const rows = await listAudit(ctx.db, ctx.config.keyring);
  const test = rows.filter((r) => r.action === 'recover-test').at(-1);
  if (!test) return null;
  const backup = rows.filter((r) => r.action === 'backup' && r.outcome === 'ok' && r.details?.file === test.details?.file).at(-1);
  const versions = Array.isArray(test.details?.versions) ? (test.details!.versions as unknown[]).join(',') : '';
  return [
    `KEY-RECOVERY-TEST ${test.outcome === 'ok' ? 'PASS' : 'FAIL'}`,
    `keyring=${ctx.config.keyring}`,
    `at=${test.createdAt.toISOString()}`,
    `backup=${String(test.details?.file ?? '?')}`,
    ...(backup?.details?.sha256 ? [`sha256=${String(backup.details.sha256)}`] : []),
    `versions=${versions}`,
    `actor=${test.actor}`,
    `audit_id=${test.id}`,
  ].join(' ');
}
