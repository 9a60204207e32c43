/**
 * Runbook logic that needs no terminal: where a runbook stands for the current rotation (which
 * steps are done, which comes next), the built-in checks, recording a step's outcome in
 * rotation_audit (`action = runbook-step`), and the closing summaries (incident timeline,
 * recovery-test evidence line) built from the audit record.
 */
import path from 'node:path';
import { resolveConfigPath } from '../config/load.js';
import { checkChecksum, listBackups } from '../backup/files.js';
import { appendAudit, listAudit, verifyAuditChain, type AuditOutcome, type AuditRow } from '../rotation/store.js';
import type { CoreContext } from '../core/context.js';
import { UsageError } from '../core/errors.js';
import { reconcileRegistry } from '../core/registry.js';
import { latestRotation, openRotation, type Rotation } from '../rotation/store.js';
import { fromDbTime } from '../db/adapter.js';
import { TABLES } from '../db/migrations.js';
import { countVersions } from '../core/status.js';
import { AesGcmV1Codec } from '../crypto/codec.js';
import type { Runbook, RunbookPhase, RunbookStep } from './schema.js';

export const RUNBOOK_ACTION = 'runbook-step';

export type StepOutcome = 'ok' | 'skipped' | 'failed' | 'aborted';

export interface StepState {
  step: RunbookStep;
  index: number;
  /** Recorded as ok or skipped for this rotation. */
  done: boolean;
  /** The step's phases include the current phase (or it has none). */
  applies: boolean;
}

export interface RunbookProgress {
  phase: RunbookPhase;
  rotation: Rotation | null;
  steps: StepState[];
  /** The first step that applies and is not done; null when nothing is left in this phase. */
  next: StepState | null;
}

/**
 * Where the runbook stands. Outcomes count for the open rotation (rows carrying its id); with no
 * rotation open, for pre-rotation steps recorded since the last rotation closed. Another operator
 * on another machine sees the same rows, so a hand-over resumes at the same step.
 */
export async function runbookProgress(ctx: CoreContext, runbook: Runbook): Promise<RunbookProgress> {
  const keyring = ctx.config.keyring;
  const rotation = await openRotation(ctx.db, keyring);
  const phase: RunbookPhase = rotation?.phase ?? 'none';
  // Steps before `generate` carry no rotation id: they count from the end of the previous rotation.
  const previous = await ctx.db.knex(TABLES.rotations).where({ keyring }).whereNotNull('closed_at').modify((q) => {
    if (rotation) q.andWhere('id', '<', rotation.id);
  }).orderBy('id', 'desc').first();
  const since = previous ? fromDbTime(previous.closed_at) : null;
  const rows = (await listAudit(ctx.db, keyring)).filter(
    (r) =>
      r.action === RUNBOOK_ACTION &&
      r.details?.runbook === runbook.name &&
      (r.outcome === 'ok' || (r.outcome as string) === 'skipped') &&
      ((rotation && r.rotationId === rotation.id) || (r.rotationId === null && (!since || r.createdAt >= since))),
  );
  const doneIds = new Set(rows.map((r) => String(r.details?.step)));
  const steps = runbook.steps.map((step, index) => ({
    step,
    index,
    done: doneIds.has(step.id),
    applies: !step.phases || step.phases.includes(phase),
  }));
  return { phase, rotation, steps, next: steps.find((s) => s.applies && !s.done) ?? null };
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
  const auditOutcome = (outcome === 'aborted' ? 'interrupted' : outcome) as AuditOutcome;
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
      const days = step.days ?? 90;
      const last = (await listAudit(ctx.db, keyring)).filter((r) => r.action === 'recover-test' && r.outcome === 'ok').at(-1);
      if (!last) return { ok: false, detail: 'no recovery test has passed yet' };
      const age = (now.getTime() - last.createdAt.getTime()) / 86_400_000;
      return age <= days
        ? { ok: true, detail: `passed ${last.createdAt.toISOString()} by ${last.actor}` }
        : { ok: false, detail: `the last one passed ${Math.floor(age)} days ago (limit ${days})` };
    }
    case 'no-unparseable': {
      const codec = new AesGcmV1Codec();
      const bad: string[] = [];
      for (const t of ctx.config.targets) for (const c of await countVersions(ctx.db, t, codec)) if (c.unparseable > 0) bad.push(`${c.table}.${c.column}: ${c.unparseable}`);
      return bad.length === 0 ? { ok: true, detail: `all values in ${ctx.config.targets.length} target(s) parse` } : { ok: false, detail: `unparseable values: ${bad.join(', ')}` };
    }
    case 'no-open-rotation': {
      const r = await openRotation(ctx.db, keyring);
      return r ? { ok: false, detail: `rotation #${r.id} is open (phase ${r.phase})` } : { ok: true, detail: 'no rotation is open' };
    }
    case 'audit-chain-intact': {
      const problems = (await verifyAuditChain(ctx.db, keyring)).flatMap((r) => r.problems);
      return problems.length === 0 ? { ok: true, detail: 'the audit hash chain is intact' } : { ok: false, detail: problems.join('; ') };
    }
  }
}

/** Fill {{input}} and {{rotation.field}} in one argument. */
export function fillTemplate(text: string, inputs: Record<string, string>, rotation: Rotation | null): string {
  return text.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_, name: string) => {
    if (name.startsWith('rotation.')) {
      const v = rotation ? (rotation as unknown as Record<string, unknown>)[name.slice('rotation.'.length)] : undefined;
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
  timeline: Array<{ at: string; action: string; outcome: string; actor: string; detail: string; sincePreviousSeconds: number }>;
}

/** The incident summary of the latest rotation of the keyring, from rotation_audit alone. */
export async function incidentSummary(ctx: CoreContext, incident: string | null): Promise<IncidentSummary | null> {
  const rotation = (await openRotation(ctx.db, ctx.config.keyring)) ?? (await latestRotation(ctx.db, ctx.config.keyring));
  if (!rotation) return null;
  // A command step's own row says what the runbook row would repeat; keep the runbook rows that
  // add something (confirmations with their values, skips, aborts, failures).
  const rows = (await listAudit(ctx.db, ctx.config.keyring, { rotationId: rotation.id })).filter(
    (r) => !(r.action === RUNBOOK_ACTION && r.details?.kind === 'command' && r.outcome === 'ok'),
  );
  if (rows.length === 0) return null;
  const first = rows[0]!.createdAt;
  const last = rows.at(-1)!.createdAt;
  let prev = first;
  const timeline = rows.map((r) => {
    const entry = {
      at: r.createdAt.toISOString(),
      action: r.action === RUNBOOK_ACTION ? `runbook ${String(r.details?.step)}` : r.action,
      outcome: r.outcome,
      actor: r.actor,
      detail: timelineDetail(r),
      sincePreviousSeconds: Math.round((r.createdAt.getTime() - prev.getTime()) / 1000),
    };
    prev = r.createdAt;
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
    rowsReencrypted: rows.filter((r) => r.action === 'reencrypt' && r.outcome === 'ok').reduce((n, r) => n + (r.rowsAffected ?? 0), 0),
    timeline,
  };
}

function timelineDetail(r: AuditRow): string {
  const d = r.details ?? {};
  if (r.action === RUNBOOK_ACTION) return [d.skipped ? `skipped: ${String(d.skipped)}` : '', d.value ? `value: ${String(d.value)}` : ''].filter(Boolean).join('; ');
  if (r.rowsAffected) return `${r.rowsAffected} rows`;
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
