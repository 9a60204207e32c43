/**
 * The rotation machine: the one place that decides which phase moves are legal and what must be
 * true before each. Every command, the runbook engine, `status`'s "next" line and the table in
 * docs/rotation.md read this module (test/unit/machine.test.ts checks the doc against it).
 *
 * A rule is (action, from-phases, to-phase, guards, effects). `transition()` in
 * core/rotation/transition.ts refuses any move that no rule allows. Guards are pure functions over
 * a snapshot of the rotation, the registry, fresh database counts, policy and the clock; each
 * returns a refusal (reason + hint) or null. Nothing in here touches the database.
 */
import { formatTime } from '../base/format.js';
import type { RegisteredVersion } from './store.js';
import type { Rotation } from './store.js';

// ── phases ─────────────────────────────────────────────────────────────────────────────────────

export const PHASES = [
  'generating',
  'generated',
  'dual_key',
  'reencrypting',
  'reencrypted',
  'verified',
  'promoted',
  'rolling_back',
  'retired',
  'rolled_back',
] as const;
export type Phase = (typeof PHASES)[number];
/** `none`: the keyring has no open rotation. */
export type PhaseOrNone = Phase | 'none';

interface PhaseInfo {
  /**
   * Position along the procedure; a move to a lower rank goes back (runbooks then offer the later
   * steps again). A rollback runs the procedure backwards from the start: rank 0.
   */
  rank: number;
  /** A closed rotation frees its keyring for the next one. */
  closed: boolean;
  /** What an operator runs next (status, every command's last line, runbook plans). */
  next: string;
  /** The command of that next step, whose guards `status` previews. */
  forward: MachineCommand;
  meaning: string;
}

export const PHASE_INFO: Record<Phase, PhaseInfo> = {
  generating: {
    forward: 'generate',
    rank: 1,
    closed: false,
    next: '`keyctl generate` again, to finish opening the rotation',
    meaning: 'rotation claimed; the new key may not be in the keystore yet',
  },
  generated: {
    forward: 'dual-key',
    rank: 2,
    closed: false,
    next: '`keyctl dual-key` once every application has reloaded the keyring',
    meaning: 'new key published decrypt-only',
  },
  dual_key: { forward: 'reencrypt', rank: 3, closed: false, next: '`keyctl reencrypt`', meaning: 'new key primary; old key decrypt-only' },
  reencrypting: {
    forward: 'reencrypt',
    rank: 4,
    closed: false,
    next: '`keyctl reencrypt` (it resumes where it stopped)',
    meaning: 'a write pass is running or was interrupted',
  },
  reencrypted: {
    forward: 'verify',
    rank: 5,
    closed: false,
    next: '`keyctl verify` (a full verify; a sampled one does not unlock promote)',
    meaning: 'no value counted under another version; not yet verified in full',
  },
  verified: { forward: 'promote', rank: 6, closed: false, next: '`keyctl promote`', meaning: 'a verify passed since the last write pass' },
  promoted: {
    forward: 'retire',
    rank: 7,
    closed: false,
    next: '`keyctl retire` when the rollback window has passed',
    meaning: 'old key unpublished, archived for rollback',
  },
  rolling_back: {
    forward: 'reencrypt',
    rank: 0,
    closed: false,
    next: '`keyctl reencrypt`, then `keyctl verify`',
    meaning: 'old key primary again; values move back to it',
  },
  retired: { forward: 'generate', rank: 9, closed: true, next: '`keyctl generate` to start the next rotation', meaning: 'closed: the old key is retired' },
  rolled_back: { forward: 'generate', rank: 9, closed: true, next: '`keyctl generate` to start a new rotation', meaning: 'closed: the new key is retired' },
};

export const CLOSED_PHASES: readonly Phase[] = PHASES.filter((p) => PHASE_INFO[p].closed);
const OPEN_PHASES: readonly Phase[] = PHASES.filter((p) => !PHASE_INFO[p].closed);

export function isPhase(value: unknown): value is Phase {
  return typeof value === 'string' && (PHASES as readonly string[]).includes(value);
}

export function nextStep(phase: PhaseOrNone): string {
  return phase === 'none' ? '`keyctl generate` to start a rotation' : PHASE_INFO[phase].next;
}

// ── snapshot and guards ────────────────────────────────────────────────────────────────────────

export interface PolicySnapshot {
  minPropagationSeconds: number;
  rollbackWindowDays: number;
}

/** Values per version over every target, counted by the database. */
export interface CountsSnapshot {
  byVersion: Record<string, number>;
  unparseable: number;
  /** Plaintext values in targets with `plaintext: encrypt` (not yet encrypted). */
  plaintext?: number;
}

/** What a guard may look at. Counts are filled only for actions whose guards need them. */
export interface Snapshot {
  now: Date;
  keyring: string;
  rotation: Rotation | null;
  versions: readonly RegisteredVersion[];
  policy: PolicySnapshot;
  keystoreWritable: boolean;
  /** A read-only keystore: what to set by hand instead (the env keystore lists its variables). */
  keystoreReadOnlyHint?: string;
  counts?: CountsSnapshot;
}

/** What the operator passed that guards may consider. */
export interface GuardInput {
  force?: boolean;
  reason?: string;
  /** verify: the result of the check that just ran. */
  verify?: { passed: boolean; scope: VerifyScope };
  /** A move that destroys key material: the decryption scan with the keys that remain (null: nothing is destroyed). */
  destructionScan?: { failures: number; checked: number } | null;
  /** dual-key: whether backups are configured and which backup (if any) holds the new key. */
  backup?: { configured: boolean; file: string | null };
  /** reencrypt: values left under other versions after the pass. */
  remaining?: number;
  /** generate --emergency: the version named compromised. */
  compromised?: string;
  /**
   * The two-person rule (core/approvals): null when the policy needs no approval for the move;
   * otherwise whether signatures (or a break glass) allow it, and if not, what is missing.
   */
  approval?: { ok: true } | { ok: false; reason: string; hint: string; details?: Record<string, unknown> } | null;
}

export type VerifyScope = 'full' | 'sample';
export type VerifyOutcome = 'passed' | 'failed';

export interface Refusal {
  /** The guard that said no, or `phase` when no rule starts from the current phase. */
  guard: GuardName | 'phase';
  reason: string;
  hint: string;
  details?: Record<string, unknown>;
}

interface GuardSpec {
  /** One line for docs/rotation.md. */
  describe: string;
  /** `--force --reason` lets the operator past this guard (recorded in the audit). */
  forceable: boolean;
  check(s: Snapshot, input: GuardInput): Omit<Refusal, 'guard'> | null;
}

const DAY_MS = 86_400_000;

export function secondsLeft(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.ceil(s / 60)} min`;
  if (s < 2 * 86400) return `${Math.ceil(s / 3600)} h`;
  return `${Math.ceil(s / 86400)} days`;
}

function rotationOf(s: Snapshot): Rotation {
  if (!s.rotation) throw new Error('machine: guard needs an open rotation');
  return s.rotation;
}

function countsOf(s: Snapshot): CountsSnapshot {
  if (!s.counts) throw new Error('machine: guard needs fresh counts in the snapshot');
  return s.counts;
}

function notUnder(c: CountsSnapshot, version: string): number {
  return Object.entries(c.byVersion).reduce((sum, [v, n]) => (v === version ? sum : sum + n), 0);
}

export const GUARDS = {
  approvalsSigned: {
    describe:
      'when `approvals.require` names the action: an open approval request for exactly this action, rotation and key versions carries valid signatures of enough distinct approvers, none expired (emergency: `--break-glass --reason`, approved afterwards); resuming an interrupted generate needs none when its opening consumed one',
    forceable: false,
    check: (_s, input) => {
      if (input.approval === undefined) return { reason: 'the approval check did not run', hint: 'this is a bug in keyctl; please report it' };
      if (input.approval === null || input.approval.ok) return null;
      return { reason: input.approval.reason, hint: input.approval.hint, ...(input.approval.details ? { details: input.approval.details } : {}) };
    },
  },
  keystoreWritable: {
    describe: 'the keystore can be written (not the read-only env keystore)',
    forceable: false,
    check: (s) =>
      s.keystoreWritable
        ? null
        : {
            reason: 'the keystore is read-only: keyctl cannot add, publish or retire keys in it, so it cannot run a rotation',
            hint:
              s.keystoreReadOnlyHint ??
              'run rotations with a keystore keyctl can write (keystore.provider: file, or a managed keystore); the env keystore is for reading',
          },
  },
  compromisedIsPrimary: {
    describe: 'emergency: the key named compromised (`--compromised`, default the primary) is the current primary',
    forceable: false,
    check: (s, input) => {
      const primary = s.versions.find((v) => v.state === 'primary')?.version;
      if (!input.compromised || input.compromised === primary) return null;
      return {
        reason: `--compromised ${input.compromised} is not the primary (${primary ?? 'none'}); an emergency rotation replaces the primary key`,
        hint: s.versions.some((v) => v.version === input.compromised)
          ? `${input.compromised} is ${s.versions.find((v) => v.version === input.compromised)!.state}; \`keyctl status\` shows every version`
          : `the registry has no ${input.compromised}; \`keyctl status\` lists the versions`,
      };
    },
  },
  compromisedIsOldKey: {
    describe: "emergency during an open rotation: the key named compromised is the rotation's old key (the rotation then becomes an emergency rotation)",
    forceable: false,
    check: (s, input) => {
      const r = rotationOf(s);
      const named = input.compromised ?? r.oldVersion;
      if (named === r.oldVersion) return null;
      if (named === r.newVersion) {
        return {
          reason: `rotation #${r.id} (routine, ${r.oldVersion} → ${r.newVersion}, phase ${r.phase}) introduced ${named}; an emergency rotation cannot start while it is open`,
          hint:
            r.phase === 'promoted'
              ? `every value is already under ${named}: close the routine rotation with \`keyctl retire --force --reason "…"\`, then \`keyctl generate --emergency --compromised ${named} --reason "…"\``
              : `abandon it with \`keyctl rollback --reason "…"\` (${r.oldVersion} becomes primary again; ${named} is retired once reencrypt and verify have moved every value back)`,
        };
      }
      return {
        reason: `--compromised ${named} is neither the old (${r.oldVersion}) nor the new (${r.newVersion}) key of the open rotation #${r.id}`,
        hint: '`keyctl status` lists the versions and their states',
      };
    },
  },
  notAlreadyEmergency: {
    describe: 'the open rotation is not already an emergency rotation',
    forceable: false,
    check: (s) => {
      const r = rotationOf(s);
      return r.emergency
        ? {
            reason: `rotation #${r.id} is already an emergency rotation (compromised: ${r.compromisedVersion ?? r.oldVersion})`,
            hint: `next: ${nextStep(r.phase)}`,
          }
        : null;
    },
  },
  propagationElapsed: {
    describe: '`minPropagationSeconds` since the new key was published (emergency: skipped)',
    forceable: false,
    check: (s) => {
      const r = rotationOf(s);
      if (r.emergency) return null;
      const newV = s.versions.find((v) => v.version === r.newVersion);
      const since = Math.max(r.phaseChangedAt.getTime(), newV?.publishedAt?.getTime() ?? s.now.getTime());
      const left = since + s.policy.minPropagationSeconds * 1000 - s.now.getTime();
      if (left <= 0) return null;
      return {
        reason: `${r.newVersion} was published ${secondsLeft(s.now.getTime() - since)} ago; policy.minPropagationSeconds asks for ${s.policy.minPropagationSeconds} s so every reader has it before anyone writes with it`,
        hint: `wait ${secondsLeft(left)} more (make sure every application instance has reloaded the keyring), then run \`keyctl dual-key\` again`,
        details: { secondsLeft: Math.ceil(left / 1000) },
      };
    },
  },
  passLeftNothing: {
    describe: 'the write pass left no value under another version or unparseable (database count after the pass)',
    forceable: false,
    check: (_s, input) =>
      input.remaining === 0
        ? null
        : {
            reason: `${input.remaining ?? '?'} value(s) are still not under the primary`,
            hint: 'run `keyctl reencrypt` again; the report lists values that do not decrypt',
          },
  },
  backupHoldsNewKey: {
    describe: 'when `backup:` has recipients: a backup written since the rotation opened holds the new key, its checksum intact (emergencies too)',
    forceable: false,
    check: (s, input) => {
      const r = rotationOf(s);
      if (!input.backup) return { reason: 'the backup check did not run', hint: 'this is a bug in keyctl; please report it' };
      if (!input.backup.configured || input.backup.file) return null;
      return {
        reason: `no backup holds ${r.newVersion} yet: once it is primary, every value written under it would be lost with the keystore`,
        hint: `run \`keyctl backup\` (it writes one holding ${r.newVersion}), then \`keyctl dual-key\` again`,
      };
    },
  },
  nothingLeftUnderOtherVersions: {
    describe: 'a fresh database count finds every value under the primary, none unparseable and none still plaintext',
    forceable: false,
    check: (s) => {
      const r = rotationOf(s);
      const c = countsOf(s);
      const target = s.versions.find((v) => v.state === 'primary')?.version ?? r.newVersion;
      const left = notUnder(c, target);
      const plaintext = c.plaintext ?? 0;
      if (left === 0 && c.unparseable === 0 && plaintext === 0) return null;
      return {
        reason: `a fresh count finds ${left} value(s) not under ${target} and ${c.unparseable} unparseable${plaintext > 0 ? `, ${plaintext} plaintext` : ''}`,
        hint: 'run `keyctl reencrypt`, then `keyctl verify`, then try again',
        details: { byVersion: c.byVersion, unparseable: c.unparseable, plaintext },
      };
    },
  },
  verifyPassed: {
    describe: 'the check verify just ran passed',
    forceable: false,
    check: (_s, input) => (input.verify?.passed ? null : { reason: 'verification did not pass', hint: 'see the problems listed above' }),
  },
  verifyWasFull: {
    describe: 'the verify that just ran was full, not a sample (closing a rollback retires the new key)',
    forceable: false,
    check: (_s, input) =>
      input.verify?.scope === 'full'
        ? null
        : {
            reason: 'a sampled verify cannot close a rollback: it retires the new key, and values outside the sample may still need it',
            hint: 'run `keyctl verify` without --sample',
          },
  },
  fullVerifyPassed: {
    describe: 'the latest verify since the last write pass was full and passed (a sampled one needs `--force --reason`)',
    forceable: true,
    check: (s) => {
      const r = rotationOf(s);
      if (r.verifyOutcome === 'passed' && r.verifyScope === 'full') return null;
      return {
        reason:
          r.verifyOutcome === 'passed'
            ? `the latest verify of rotation #${r.id} was a sample (${r.verifiedAt ? formatTime(r.verifiedAt) : '?'}); a mislabelled or corrupt value outside the sample would be lost with ${r.oldVersion}`
            : `rotation #${r.id} has no passed verify since its last write pass`,
        hint: 'run a full `keyctl verify` (no --sample) first; only if you accept the risk, `keyctl promote --force --reason "…"`',
      };
    },
  },
  latestVerifyNotFailed: {
    describe: 'the latest verify of the rotation did not fail (not bypassed by `--force`)',
    forceable: false,
    check: (s) => {
      const r = rotationOf(s);
      if (r.verifyOutcome !== 'failed') return null;
      return {
        reason: `the latest verify of rotation #${r.id} (${r.verifiedAt ? formatTime(r.verifiedAt) : '?'}) failed; retiring ${r.oldVersion} could make the values it flagged unreadable`,
        hint: 'run `keyctl verify` to see the values; repair them or roll back with `keyctl rollback --reason "…"`',
      };
    },
  },
  rollbackWindowElapsed: {
    describe: 'the rollback window (`rollbackWindowDays` after promote) has passed (emergency: no window)',
    forceable: true,
    check: (s) => {
      const r = rotationOf(s);
      const deadline = r.rollbackDeadline?.getTime() ?? 0;
      if (r.emergency || s.now.getTime() >= deadline) return null;
      return {
        reason: `the rollback window of rotation #${r.id} ends ${formatTime(new Date(deadline))} (${secondsLeft(deadline - s.now.getTime())} from now)`,
        hint: `stop here until ${new Date(deadline).toISOString().slice(0, 10)}, or retire now with \`keyctl retire --force --reason "…"\` if rollback will not be needed`,
        details: { until: new Date(deadline).toISOString() },
      };
    },
  },
  noValueUnderOldVersion: {
    describe: 'a fresh database count finds no value under the old version (not bypassed by `--force`)',
    forceable: false,
    check: (s) => {
      const r = rotationOf(s);
      const old = countsOf(s).byVersion[r.oldVersion] ?? 0;
      if (old === 0) return null;
      return {
        reason: `${old} value(s) are still under ${r.oldVersion}; destroying it now would make them unreadable`,
        hint: 'roll back with `keyctl rollback` (restores the old key), or find the writer still using it',
        details: { byVersion: countsOf(s).byVersion },
      };
    },
  },
  remainingKeysReadEverything: {
    describe: 'when material is destroyed: a full decryption scan with the keys that remain reads every value (not bypassed by `--force`)',
    forceable: false,
    check: (_s, input) => {
      if (input.destructionScan === null) return null;
      if (!input.destructionScan)
        return { reason: 'no decryption scan was run before destroying key material', hint: 'this is a bug in keyctl; please report it' };
      if (input.destructionScan.failures === 0) return null;
      return {
        reason: `${input.destructionScan.failures} value(s) do not decrypt without the key that would be destroyed`,
        hint: 'run `keyctl verify` to list them; repair them, or roll back with `keyctl rollback --reason "…"`',
        details: { scanFailures: input.destructionScan.failures },
      };
    },
  },
  emergencyNotAbandoned: {
    describe: 'an emergency rotation is not abandoned (its compromised key would stay primary)',
    forceable: true,
    check: (s) => {
      const r = rotationOf(s);
      if (!r.emergency) return null;
      return {
        reason: `rotation #${r.id} is an emergency rotation: abandoning it leaves the compromised ${r.compromisedVersion ?? r.oldVersion} primary`,
        hint: `finish it instead (next: ${nextStep(r.phase)}); only if you must, \`keyctl rollback --force --reason "…"\``,
      };
    },
  },
  oldKeyNotCompromised: {
    describe: 'the old key is not marked compromised (it would become primary again)',
    forceable: true,
    check: (s) => {
      const r = rotationOf(s);
      const old = s.versions.find((v) => v.version === r.oldVersion);
      if (!old?.compromised) return null;
      return {
        reason: `${r.oldVersion} is marked compromised${r.reason ? ` (${r.reason})` : ''}; rolling back would make it primary again`,
        hint: 'finish the rotation instead; only if you must, `keyctl rollback --force --reason "…"`',
      };
    },
  },
  rollbackPropagated: {
    describe: '`minPropagationSeconds` since the rollback, so no writer still uses the new key (emergencies too)',
    forceable: false,
    check: (s) => {
      const r = rotationOf(s);
      const since = r.phaseChangedAt.getTime();
      const left = since + s.policy.minPropagationSeconds * 1000 - s.now.getTime();
      // Not skipped for emergencies: closing a rollback destroys the new key, and nothing is urgent then.
      if (left <= 0) return null;
      return {
        reason: `the rollback is only ${Math.floor((s.now.getTime() - since) / 1000)} s old; writers may still use ${r.newVersion} until they reload the keyring (policy.minPropagationSeconds = ${s.policy.minPropagationSeconds})`,
        hint: `wait ${Math.ceil(left / 1000)} s, run \`keyctl reencrypt\` once more, then \`keyctl verify\``,
      };
    },
  },
} satisfies Record<string, GuardSpec>;
export type GuardName = keyof typeof GUARDS;

// ── rules ──────────────────────────────────────────────────────────────────────────────────────

/** The audit action (and, but for `escalate` and the verify outcomes, the command) of a move. */
export type MachineAction = 'generate' | 'escalate' | 'dual-key' | 'reencrypt-start' | 'reencrypt' | 'verify' | 'promote' | 'retire' | 'rollback';

/** The keyctl commands that move the machine. */
export const MACHINE_COMMANDS = ['generate', 'generate --emergency', 'dual-key', 'reencrypt', 'verify', 'promote', 'retire', 'rollback'] as const;
export type MachineCommand = (typeof MACHINE_COMMANDS)[number];

export function isMachineCommand(v: string): v is MachineCommand {
  return (MACHINE_COMMANDS as readonly string[]).includes(v);
}

/** Whether the operator can start `command` from `phase` (some non-internal rule of it starts there). */
export function commandApplies(command: MachineCommand, phase: PhaseOrNone): boolean {
  return RULES.some((r) => r.command === command && !r.internal && r.from.includes(phase));
}

/** A move from `from` to `to` goes back along the procedure (a failed verify, a new write pass after verify). */
export function movesBack(from: Phase, to: Phase): boolean {
  return PHASE_INFO[to].rank < PHASE_INFO[from].rank;
}

export interface Rule {
  /** Unique name of the move. */
  id: string;
  action: MachineAction;
  /** The keyctl command that makes this move. */
  command: MachineCommand;
  from: readonly PhaseOrNone[];
  /** `same`: the phase does not change (the move records evidence or a flag). */
  to: Phase | 'same';
  guards: readonly GuardName[];
  /** Counts the guards need (a database scan). */
  needsCounts?: boolean;
  /** What changes besides the phase (registry, keystore, rotation row), for docs/rotation.md. */
  effects: string;
  /** Operators do not start this move by itself (a command makes it on the way). */
  internal?: boolean;
  /** The move starts the command's work without finishing it (a write pass beginning). */
  startsOnly?: boolean;
}

export const RULES: readonly Rule[] = [
  {
    id: 'open',
    action: 'generate',
    command: 'generate',
    from: ['none'],
    to: 'generating',
    guards: ['keystoreWritable', 'compromisedIsPrimary', 'approvalsSigned'],
    effects: 'claims the keyring (unique `open_keyring`); with `--emergency` the rotation is an emergency one',
  },
  {
    id: 'generate',
    action: 'generate',
    command: 'generate',
    from: ['generating'],
    to: 'generated',
    guards: ['keystoreWritable', 'approvalsSigned'],
    effects: 'new key added to the published keyring as decrypt-only, then registered `decrypt-only`; emergency: the compromised key is flagged',
  },
  {
    id: 'escalate',
    action: 'escalate',
    command: 'generate --emergency',
    from: ['generated', 'dual_key', 'reencrypting', 'reencrypted', 'verified', 'promoted'],
    to: 'same',
    guards: ['notAlreadyEmergency', 'compromisedIsOldKey', 'approvalsSigned'],
    effects:
      'the open routine rotation becomes an emergency rotation: its old key is flagged compromised, waits and the rollback window are skipped, rollback to it is refused',
  },
  {
    id: 'dual-key',
    action: 'dual-key',
    command: 'dual-key',
    from: ['generated'],
    to: 'dual_key',
    guards: ['propagationElapsed', 'backupHoldsNewKey'],
    effects: 'new key primary, old key decrypt-only (both published)',
  },
  {
    id: 'reencrypt-start',
    action: 'reencrypt-start',
    command: 'reencrypt',
    from: ['dual_key', 'reencrypted', 'verified'],
    to: 'reencrypting',
    guards: [],
    effects: 'clears the verify evidence: a write pass invalidates it (a pass with nothing to rewrite does not start)',
    startsOnly: true,
  },
  {
    id: 'reencrypt-done',
    action: 'reencrypt',
    command: 'reencrypt',
    from: ['reencrypting'],
    to: 'reencrypted',
    guards: ['passLeftNothing'],
    effects: 'none',
  },
  {
    id: 'reencrypt-back',
    action: 'reencrypt',
    command: 'reencrypt',
    from: ['rolling_back'],
    to: 'same',
    guards: [],
    effects: 'values move back under the old key (the primary again); the phase changes when verify closes the rollback',
  },
  {
    id: 'verify-passed',
    action: 'verify',
    command: 'verify',
    from: ['reencrypted', 'verified'],
    to: 'verified',
    guards: ['verifyPassed'],
    effects: 'records the verify scope (full or sample) and result',
  },
  {
    id: 'verify-failed',
    action: 'verify',
    command: 'verify',
    from: ['reencrypted', 'verified'],
    to: 'reencrypted',
    guards: [],
    effects: 'records the failure; promote is locked until a full verify passes',
    internal: true,
  },
  {
    id: 'verify-after-promote',
    action: 'verify',
    command: 'verify',
    from: ['promoted'],
    to: 'same',
    guards: [],
    effects: 'records the scope and result; a failed one locks retire until a verify passes',
  },
  {
    id: 'verify-rollback-failed',
    action: 'verify',
    command: 'verify',
    from: ['rolling_back'],
    to: 'same',
    guards: [],
    effects: 'records the failure',
    internal: true,
  },
  {
    id: 'finish-rollback',
    action: 'verify',
    command: 'verify',
    from: ['rolling_back'],
    to: 'rolled_back',
    guards: ['verifyPassed', 'verifyWasFull', 'rollbackPropagated'],
    effects: 'new key retired (material per `retiredKeys`); the full verify that closes it is the decryption scan before destruction',
  },
  {
    id: 'promote',
    action: 'promote',
    command: 'promote',
    from: ['verified'],
    to: 'promoted',
    guards: ['fullVerifyPassed', 'nothingLeftUnderOtherVersions', 'approvalsSigned'],
    needsCounts: true,
    effects: 'old key leaves the published keyring, archived; `rollback_deadline` = now + `rollbackWindowDays` (emergency: now)',
  },
  {
    id: 'retire',
    action: 'retire',
    command: 'retire',
    from: ['promoted'],
    to: 'retired',
    guards: ['rollbackWindowElapsed', 'latestVerifyNotFailed', 'noValueUnderOldVersion', 'approvalsSigned', 'remainingKeysReadEverything'],
    needsCounts: true,
    effects:
      'old key retired: kept as `retired` in the archive for `retiredKeyRetentionDays` (then `keyctl purge`), or destroyed at once with retention 0 — after the decryption scan; kept for good under `retiredKeys: archive`',
  },
  {
    id: 'abandon',
    action: 'rollback',
    command: 'rollback',
    from: ['generated'],
    to: 'rolled_back',
    guards: ['emergencyNotAbandoned', 'approvalsSigned', 'remainingKeysReadEverything'],
    effects: 'new key retired at once (nothing should have been written with it; the decryption scan checks)',
  },
  {
    id: 'rollback',
    action: 'rollback',
    command: 'rollback',
    from: ['dual_key', 'reencrypting', 'reencrypted', 'verified', 'promoted'],
    to: 'rolling_back',
    guards: ['oldKeyNotCompromised', 'approvalsSigned'],
    effects: 'old key primary again (back out of the archive after promote), new key decrypt-only',
  },
];

export function rule(id: string): Rule {
  const r = RULES.find((x) => x.id === id);
  if (!r) throw new Error(`machine: no rule ${id}`);
  return r;
}

/** Whether `phase` may move by `r` to `to` (what transition() enforces). */
export function allows(r: Rule, from: PhaseOrNone, to: Phase): boolean {
  return r.from.includes(from) && (r.to === 'same' ? to === from : r.to === to);
}

export function targetPhase(r: Rule, from: Phase): Phase {
  return r.to === 'same' ? from : r.to;
}

/** The rules of `action` an operator can start from `phase` (internal rules excluded). */
export function rulesFrom(phase: PhaseOrNone, action?: MachineAction): Rule[] {
  return RULES.filter((r) => !r.internal && r.from.includes(phase) && (action === undefined || r.action === action));
}

/** The verify move a result makes from `phase`: the rule guarded by `verifyPassed` on a pass, the other on a failure. */
export function verifyRuleFor(phase: Phase, passed: boolean): Rule {
  const candidates = RULES.filter((r) => r.action === 'verify' && r.from.includes(phase));
  const pick = candidates.find((r) => r.guards.includes('verifyPassed') === passed) ?? candidates.find((r) => r.to === 'same');
  if (!pick) throw new Error(`machine: no verify move from ${phase}`);
  return pick;
}

/** The phases a command accepts: those some rule of it starts from (refusals name them). */
export function phasesFor(command: MachineCommand): PhaseOrNone[] {
  return [...new Set(RULES.filter((r) => r.command === command).flatMap((r) => r.from))];
}

/** The audit actions that record `command` finished (not merely started). */
export function finishingActions(command: MachineCommand): MachineAction[] {
  return [...new Set(RULES.filter((r) => r.command === command && !r.startsOnly).map((r) => r.action))];
}

/** The audit action a command's refusals are recorded under. */
export function actionOf(command: MachineCommand): MachineAction {
  return RULES.find((r) => r.command === command)!.action;
}

/** The first guard of `r` that refuses, skipping forceable ones when the operator forced. */
export function evaluate(r: Rule, s: Snapshot, input: GuardInput = {}, skip: readonly GuardName[] = []): { refusal: Refusal | null; forced: GuardName[] } {
  const forced: GuardName[] = [];
  for (const name of r.guards) {
    if (skip.includes(name)) continue;
    const g: GuardSpec = GUARDS[name];
    const no = g.check(s, input);
    if (!no) continue;
    if (g.forceable && input.force && input.reason?.trim()) {
      forced.push(name);
      continue;
    }
    return { refusal: { guard: name, ...no }, forced };
  }
  return { refusal: null, forced };
}

/**
 * What would happen to `command` right now: the rule it would take and the guard that would refuse
 * it, if any (for runbook plans and status). Guards needing counts are evaluated only when the
 * snapshot has counts.
 */
export function preview(command: MachineCommand, s: Snapshot, input: GuardInput = {}): { rule: Rule | null; refusal: Refusal | null } {
  const phase: PhaseOrNone = s.rotation?.phase ?? 'none';
  const candidates = RULES.filter((r) => r.command === command && r.from.includes(phase) && !r.internal);
  if (candidates.length === 0) {
    return {
      rule: null,
      refusal: { guard: 'phase', reason: `${command} needs phase ${phasesFor(command).join(' or ')}, not ${phase}`, hint: `next: ${nextStep(phase)}` },
    };
  }
  const r = candidates[0]!;
  if (r.needsCounts && !s.counts) return { rule: r, refusal: null };
  // Guards over evidence gathered by the command itself (a scan, the backup check, the verify it
  // runs, the pass it makes, the signatures it checks) are not previewed; runbooks show approvals as their own step.
  return {
    rule: r,
    refusal: evaluate(r, s, input, ['remainingKeysReadEverything', 'backupHoldsNewKey', 'verifyPassed', 'verifyWasFull', 'passLeftNothing', 'approvalsSigned'])
      .refusal,
  };
}

export { DAY_MS, OPEN_PHASES };

// ── docs ───────────────────────────────────────────────────────────────────────────────────────

/** The transition table of docs/rotation.md, generated from RULES (a test keeps the doc equal). */
export function rulesMarkdown(): string {
  const lines = ['| move | command | from | to | guards (refusal → exit 3) | effects |', '|---|---|---|---|---|---|'];
  for (const r of RULES) {
    const guards = r.guards.map((g) => `\`${g}\`: ${GUARDS[g].describe}${GUARDS[g].forceable ? ' *(forceable)*' : ''}`).join('; ') || '—';
    lines.push(
      `| \`${r.id}\`${r.internal ? ' (internal)' : ''} | \`keyctl ${r.command}\` | ${r.from.map((p) => `\`${p}\``).join(', ')} | ${r.to === 'same' ? '(unchanged)' : `\`${r.to}\``} | ${guards} | ${r.effects} |`,
    );
  }
  return lines.join('\n');
}

export function phasesMarkdown(): string {
  const lines = ['| phase | rank | open | meaning | next |', '|---|---|---|---|---|'];
  for (const p of PHASES)
    lines.push(`| \`${p}\` | ${PHASE_INFO[p].rank} | ${PHASE_INFO[p].closed ? 'closed' : 'open'} | ${PHASE_INFO[p].meaning} | ${PHASE_INFO[p].next} |`);
  return lines.join('\n');
}
