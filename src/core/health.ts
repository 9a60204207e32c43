/**
 * The unsafe states `status --check` (the monitoring exit code) reports. Each problem has a stable
 * code — monitoring matches on it, so a code is never renamed or reused — a message naming what is
 * wrong, and a hint naming what to run. README.md and docs/monitoring.md list the codes (a unit
 * test keeps them in step with PROBLEM_CODES).
 *
 * Time comes from the context's clock (`ctx.now`), so a check can be asked "as of" any moment.
 */
import path from 'node:path';
import { ConfigError } from '../base/errors.js';
import { formatTime } from '../base/format.js';
import { listBackups, type BackupFile } from '../backup/files.js';
import { resolveConfigPath } from '../config/load.js';
import type { KeyringDocument, Keystore } from '../keystore/types.js';
import { PHASE_INFO, secondsLeft } from '../rotation/machine.js';
import { checkRegistry, latestAuditOf, type RegisteredVersion, type Rotation } from '../rotation/store.js';
import { verifyAudit } from './audit.js';
import { type KekOverview, kekOverview, kekUnusable } from './kek.js';
import { breakGlassOwed, describeBinding } from './approvals.js';
import type { CoreContext } from './context.js';

/** Every problem code, with what it means (for docs and `--help`-like listings). Append only. */
export const PROBLEM_CODES = {
  'rotation-overdue': 'the primary key is older than policy.rotationIntervalDays',
  'unparseable-values': 'a target column holds values that are not ciphertext keyctl can read',
  'unknown-version-values': 'a target column holds values under a key version the keyring does not hold',
  'key-not-in-registry': "the keystore publishes a key version that keyctl's registry does not know (a key planted by hand)",
  'primary-mismatch': "the keystore's primary is not the registry's primary",
  'key-not-published': 'the registry lists a primary or decrypt-only key the keystore does not publish',
  'retired-key-published': 'the keystore still publishes a key the registry lists as archived or retired',
  'compromised-key-in-use': 'a key marked compromised is primary or published with no emergency rotation open to replace it',
  'rotation-stalled': 'the open rotation has stayed in one phase longer than policy allows',
  'emergency-overdue': 'an emergency rotation is still open policy.emergencyMaxHours after the compromise was declared',
  'backup-stale': 'backups are configured and the newest backup is missing or older than backup.maxAgeHours',
  'recover-test-stale': 'backups are configured and no recover-test passed within backup.recoverTestMaxAgeDays',
  'registry-tampered': 'the key-version registry differs from what the audit chain last recorded (edited outside keyctl)',
  'audit-chain-broken': 'the audit hash chain does not verify (a row was edited, deleted or inserted outside keyctl)',
  'plaintext-values': 'a target with plaintext: encrypt still holds values that are not encrypted',
  'break-glass-unapproved':
    'break-glass action awaiting approval: an emergency step ran with --break-glass and lacks the signatures approvals.require asks for',
  'tenant-without-keyring': 'with tenancy: a target holds rows whose tenant has no keyring (or no tenant at all), which no key can be chosen for',
  'kek-unusable': 'envelope keystores: a key-encryption key that wraps a stored data key is disabled, pending deletion, gone or below min_decryption_version',
} as const;

export type ProblemCode = keyof typeof PROBLEM_CODES;

export interface Problem {
  code: ProblemCode;
  message: string;
  hint: string;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** What `checkHealth` looks at besides the database: the published keyring and the registry as status read them. */
export interface HealthInput {
  doc: KeyringDocument;
  versions: readonly RegisteredVersion[];
  rotation: Rotation | null;
  /** Envelope keystores: the KEKs and their state (null for the other providers). */
  keks?: KekOverview | null;
}

/** The problems that need more than the counts: keystore against registry, rotation age, backups, evidence. */
export async function checkHealth(ctx: CoreContext, input: HealthInput): Promise<Problem[]> {
  return [
    ...keystoreProblems(input),
    ...kekProblems(input.keks ?? null),
    ...compromisedProblems(input),
    ...(await rotationAgeProblems(ctx, input.rotation)),
    ...(await backupProblems(ctx)),
    ...(await evidenceProblems(ctx).catch((err: unknown) => [unreadableEvidence(err)])),
    ...(await breakGlassProblems(ctx)),
  ];
}

/**
 * For `status --check` when the keyring cannot be read at all: a disabled or deleted KEK makes
 * every unwrap fail, so its problem is all the check can report (empty for other providers).
 */
export async function unusableKekProblems(keystore: Keystore): Promise<Problem[]> {
  return kekProblems(await kekOverview(keystore).catch(() => null));
}

/** A KEK that can no longer unwrap a stored data key: every application that unwraps it fails, and a deleted one loses the key. */
function kekProblems(keks: KekOverview | null): Problem[] {
  return (keks?.keks ?? []).filter(kekUnusable).map((k) => ({
    code: 'kek-unusable' as const,
    message: `${k.kek} wraps ${k.versions.join(', ')} but is ${k.state}${k.problem ? ` (${k.problem})` : ''}: applications cannot unwrap ${k.versions.length > 1 ? 'them' : 'it'}`,
    hint:
      k.state === 'pending-deletion'
        ? 'cancel the deletion now (aws kms cancel-key-deletion, then enable-key): once deleted, the data keys it wraps are lost; then `keyctl rewrap` to another KEK'
        : k.state === 'disabled'
          ? 'enable it again (aws kms enable-key, or lower min_decryption_version), then `keyctl rewrap` before disabling it'
          : 'restore the key in the key service, or restore the data keys from a backup (keyctl restore); docs/keystores.md, "Envelope encryption"',
  }));
}

/** Emergency steps taken with --break-glass whose approvals have not come in afterwards. */
async function breakGlassProblems(ctx: CoreContext): Promise<Problem[]> {
  let owed: Awaited<ReturnType<typeof breakGlassOwed>>;
  try {
    owed = await breakGlassOwed(ctx);
  } catch (err) {
    // Unreadable evidence (a dropped audit table) is the evidence check's finding, not this one's.
    if (!(err instanceof ConfigError)) return [];
    // An approver's key that no longer parses must not hide a break glass nobody approved.
    return [
      {
        code: 'break-glass-unapproved',
        message: `break-glass actions cannot be checked: ${(err as Error).message}`,
        hint: 'fix approvals.approvers in keyctl.yaml (`keyctl approval list` shows the same error with every problem)',
      },
    ];
  }
  return owed.map((o) => {
    const what = `${o.action}${o.rotationId !== null ? ` of rotation #${o.rotationId}` : ''} ran ${formatTime(o.at)} by ${o.actor}`;
    if (!o.state) {
      return {
        code: 'break-glass-unapproved',
        message: `break-glass action awaiting approval: ${what}: ${o.problem}`,
        hint: 'restore keyctl_approval_requests (and keyctl.yaml) from a backup; `keyctl audit --verify` and the audit report show what ran',
      };
    }
    const s = o.state;
    return {
      code: 'break-glass-unapproved',
      message: `break-glass action awaiting approval: ${describeBinding(s.request)} ran ${formatTime(o.at)} by ${o.actor} (request #${s.request.id}, ${s.valid.length} of ${s.required} signatures${s.valid.length > 0 ? `: ${s.valid.map((v) => v.approver).join(', ')}` : ''})`,
      hint: `each of ${s.missing.join(', ')} signs the text of \`keyctl approval show ${s.request.id} --canonical\` on their own machine (\`gpg --detach-sign --armor\`); add each signature with \`keyctl approval add ${s.request.id} --signature FILE\``,
    };
  });
}

/** Evidence that cannot even be read (a dropped audit table, say) is a broken chain, not a crash of the check. */
function unreadableEvidence(err: unknown): Problem {
  // Driver messages start with the SQL statement; the reason is after the last " - ".
  const reason = (err instanceof Error ? err.message : String(err)).split(' - ').pop() ?? '';
  return {
    code: 'audit-chain-broken',
    message: `the audit evidence cannot be read: ${reason}`,
    hint: 'run `keyctl audit --verify`; restore a missing or damaged table from a database backup',
  };
}

/** The published keyring against the registry: what applications use must be what keyctl recorded. */
function keystoreProblems({ doc, versions, rotation }: HealthInput): Problem[] {
  const problems: Problem[] = [];
  const registered = new Map(versions.map((v) => [v.version, v]));
  // `generate` publishes the new key before registering it; while it is unfinished that key is expected.
  const beingGenerated = rotation?.phase === 'generating' ? rotation.newVersion : null;
  for (const version of doc.keys.keys()) {
    const reg = registered.get(version);
    if (!reg && version !== beingGenerated) {
      problems.push({
        code: 'key-not-in-registry',
        message: `the keystore publishes ${version}${version === doc.primary ? ' as primary' : ''}, which the registry does not know: keyctl did not create it`,
        hint: `if nobody restored it on purpose, treat the keystore as tampered with: remove ${version} from the keystore (or restore the keyring from a backup) and find out who wrote it; \`keyctl audit\` shows what keyctl did`,
      });
    } else if (reg && (reg.state === 'retired' || reg.state === 'archived') && !reg.compromised) {
      problems.push({
        code: 'retired-key-published',
        message: `the keystore still publishes ${version}, which the registry lists as ${reg.state}`,
        hint: `remove ${version} from the published keyring (it is kept in the archive), or restore the keystore from a backup`,
      });
    }
  }
  const regPrimary = versions.find((v) => v.state === 'primary');
  if (regPrimary && regPrimary.version !== doc.primary) {
    problems.push({
      code: 'primary-mismatch',
      message: `the keystore's primary is ${doc.primary} but the registry's is ${regPrimary.version}: applications write with a key keyctl did not make primary`,
      hint: `set the keystore's primary back to ${regPrimary.version} (or restore the keyring from a backup); \`keyctl audit\` shows the last primary keyctl set`,
    });
  }
  for (const v of versions) {
    if ((v.state === 'primary' || v.state === 'decrypt-only') && !doc.keys.has(v.version)) {
      problems.push({
        code: 'key-not-published',
        message: `the registry lists ${v.version} as ${v.state} but the keystore does not publish it: values under it cannot be read by applications`,
        hint: `restore ${v.version} into the keystore: \`keyctl restore --backup FILE --identity KEY\``,
      });
    }
  }
  return problems;
}

/** Invariant 6: a compromised key is never primary or published once no emergency rotation is replacing it. */
function compromisedProblems({ doc, versions, rotation }: HealthInput): Problem[] {
  const problems: Problem[] = [];
  // An open emergency rotation is replacing its compromised key (its age is checked below) —
  // unless it is rolling back, which puts that key back.
  const replacing = rotation?.emergency && rotation.phase !== 'rolling_back' ? (rotation.compromisedVersion ?? rotation.oldVersion) : null;
  for (const v of versions) {
    if (!v.compromised || v.version === replacing) continue;
    const where = [v.state === 'primary' || doc.primary === v.version ? 'primary' : '', doc.keys.has(v.version) ? 'published' : ''].filter(Boolean);
    if (where.length === 0) continue;
    problems.push({
      code: 'compromised-key-in-use',
      message: `${v.version} is marked compromised but is still ${where.join(' and ')}${rotation ? ` (rotation #${rotation.id} open, ${rotation.emergency ? `replacing ${replacing}` : 'routine'})` : ' and no emergency rotation is open'}`,
      hint: rotation
        ? `finish or roll back rotation #${rotation.id}, then \`keyctl generate --emergency --compromised ${v.version} --reason "…"\` and carry it through to \`keyctl retire\``
        : `run \`keyctl generate --emergency --compromised ${v.version} --reason "…"\` and carry it through to \`keyctl retire\` (runbook: \`keyctl runbook run emergency-rotation\`)`,
    });
  }
  return problems;
}

async function rotationAgeProblems(ctx: CoreContext, rotation: Rotation | null): Promise<Problem[]> {
  if (!rotation) return [];
  const problems: Problem[] = [];
  const policy = ctx.config.policy;
  const now = ctx.now().getTime();
  const next = PHASE_INFO[rotation.phase].next.replace(/`/g, '');
  if (rotation.phase === 'promoted' && rotation.rollbackDeadline) {
    // Promoted: waiting is the point until the rollback window ends; then retire is due.
    const due = rotation.rollbackDeadline.getTime() + policy.retireGraceDays * DAY_MS;
    if (now > due) {
      problems.push({
        code: 'rotation-stalled',
        message: `rotation #${rotation.id} has been in phase ${rotation.phase} since ${formatTime(rotation.phaseChangedAt)}; its rollback window ended ${formatTime(rotation.rollbackDeadline)} and policy.retireGraceDays (${policy.retireGraceDays}) has passed too`,
        hint: 'run `keyctl retire` (the old key stays archived for policy.retiredKeyRetentionDays), or `keyctl rollback --reason "…"` if the new key is not wanted',
      });
    }
  } else if (now - rotation.phaseChangedAt.getTime() > policy.maxPhaseHours * HOUR_MS) {
    problems.push({
      code: 'rotation-stalled',
      message: `rotation #${rotation.id} has been in phase ${rotation.phase} for ${secondsLeft(now - rotation.phaseChangedAt.getTime())} (since ${formatTime(rotation.phaseChangedAt)}; policy.maxPhaseHours: ${policy.maxPhaseHours})`,
      hint: `run ${next}; \`keyctl status\` says why it would be refused, if it would`,
    });
  }
  if (rotation.emergency) {
    const declared = await emergencyDeclaredAt(ctx, rotation);
    if (now - declared.getTime() > policy.emergencyMaxHours * HOUR_MS) {
      problems.push({
        code: 'emergency-overdue',
        message: `emergency rotation #${rotation.id} (compromised ${rotation.compromisedVersion ?? rotation.oldVersion}) has been open since ${formatTime(declared)}, longer than policy.emergencyMaxHours (${policy.emergencyMaxHours} h); it is in phase ${rotation.phase}`,
        hint: `finish it now: ${next}, then on to \`keyctl retire\` (emergency rotations have no rollback window)`,
      });
    }
  }
  return problems;
}

/** When the rotation became an emergency one: its escalation, or its opening. */
async function emergencyDeclaredAt(ctx: CoreContext, rotation: Rotation): Promise<Date> {
  const escalations = await latestAuditOf(ctx.db, ctx.config.keyring, 'escalate', 20).catch(() => []);
  const escalation = escalations.find((r) => r.rotationId === rotation.id);
  return escalation?.createdAt ?? rotation.openedAt;
}

/** Only when backups are configured (`backup.recipients`): a key that exists only in the keystore is one mistake from lost. */
async function backupProblems(ctx: CoreContext): Promise<Problem[]> {
  const { backup, keyring } = ctx.config;
  if (backup.recipients.length === 0) return [];
  const problems: Problem[] = [];
  const now = ctx.now().getTime();
  const dir = resolveConfigPath(ctx.config, backup.dir);
  let newest: BackupFile | undefined;
  let unreadable: string | null = null;
  try {
    newest = (await listBackups(dir, keyring))[0];
  } catch (err) {
    unreadable = err instanceof Error ? err.message : String(err);
  }
  if (unreadable || !newest || now - newest.createdAt.getTime() > backup.maxAgeHours * HOUR_MS) {
    problems.push({
      code: 'backup-stale',
      message:
        unreadable ??
        (newest
          ? `the newest backup of keyring ${keyring} (${path.basename(newest.file)}) is ${((now - newest.createdAt.getTime()) / HOUR_MS).toFixed(1)} h old, older than backup.maxAgeHours (${backup.maxAgeHours})`
          : `no backup of keyring ${keyring} in ${dir} (backup.maxAgeHours: ${backup.maxAgeHours})`),
      hint: unreadable ? `make ${dir} readable by this user, then run \`keyctl backup\`` : 'run `keyctl backup` and check the cron job that should run it',
    });
  }
  // Unreadable audit rows count as no test passed (evidenceProblems reports why).
  const passed = (await latestAuditOf(ctx.db, keyring, 'recover-test', 1).catch(() => []))[0];
  if (!passed || now - passed.createdAt.getTime() > backup.recoverTestMaxAgeDays * DAY_MS) {
    problems.push({
      code: 'recover-test-stale',
      message: passed
        ? `the last recover-test that passed ran ${formatTime(passed.createdAt)}, more than backup.recoverTestMaxAgeDays (${backup.recoverTestMaxAgeDays}) ago`
        : `no recover-test of keyring ${keyring} has passed (backup.recoverTestMaxAgeDays: ${backup.recoverTestMaxAgeDays})`,
      hint: 'run `keyctl recover-test --identity KEY` (e.g. monthly from cron) to prove the backups restore access',
    });
  }
  return problems;
}

/** The registry digest and the audit chain, as `audit --verify` checks them (this keyring only). */
async function evidenceProblems(ctx: CoreContext): Promise<Problem[]> {
  const problems: Problem[] = [];
  const keyring = ctx.config.keyring;
  const registry = await checkRegistry(ctx.db, keyring);
  if (!registry.ok && registry.recorded) {
    problems.push({
      code: 'registry-tampered',
      message: `keyctl_key_versions does not match the registry recorded by audit row seq ${registry.recorded.seq} (${registry.recorded.action}): it was changed outside keyctl`,
      hint: 'restore keyctl_key_versions from a database backup; every rotation command refuses until then (`keyctl audit --verify` shows the details)',
    });
  }
  // As `audit --verify` checks it: the database chain, and its head against the anchor in the
  // keystore (which catches a truncation or a consistent rewrite the chain alone cannot show).
  // The chain check reports the registry too; that finding is the problem above, not a broken chain.
  const report = await verifyAudit(ctx);
  const chain =
    report.missingTables.length > 0
      ? report.problems
      : report.problems
          .filter((p) => p.startsWith(`${keyring}: `))
          .map((p) => p.slice(keyring.length + 2))
          .filter((p) => !p.startsWith('keyctl_key_versions '));
  if (chain.length > 0) {
    problems.push({
      code: 'audit-chain-broken',
      message: `the audit chain of keyring ${keyring} does not verify: ${chain[0]}${chain.length > 1 ? ` (and ${chain.length - 1} more)` : ''}`,
      hint: 'run `keyctl audit --verify` for every finding; compare rotation_audit with a database backup to learn what was changed',
    });
  }
  return problems;
}
