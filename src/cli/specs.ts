/**
 * Every keyctl command's spec, in the order `keyctl --help` lists them: name, description, flags
 * with their parsers (./parse.ts), examples and the handler in ./commands/, imported only when
 * its command runs. Each handler's options type is exported here (`InitOptions`, …), derived from
 * the flags declared, and defineCommand checks the handler takes exactly that.
 *
 * One module for all of them: `keyctl --version` and `--help` load it at every start, and each
 * module costs about a millisecond to load. It imports nothing but ./parse.js, ./spec.js and the
 * exit codes (commander's types only), so start-up loads no Knex, driver, keystore or crypto code.
 */
import type { Command, OptionValues } from '@commander-js/extra-typings';
import { UsageError } from '../base/errors.js';
import { ExitCode } from '../base/exit-codes.js';
import { collect, parseInteger, parsePositive, parseSeconds, parseShard, shownAsBefore } from './parse.js';
import { type CommandSpec, defineCommand, type OptionsOf } from './spec.js';

/**
 * --tenant and --all-tenants, on every command that acts on one keyring (docs/tenants.md). main reads
 * them (allTenants is always present, so main can tell these commands apart) and scopes the run.
 */
function tenantOptions<A extends unknown[], O extends OptionValues>(cmd: Command<A, O>) {
  return cmd
    .optionsGroup('Tenants (with tenancy: in keyctl.yaml):')
    .option('--tenant <id>', "act on this tenant's keyring and rows")
    .option('--all-tenants', 'every tenant that is not shredded, one after the other', false);
}

// ---- keyctl init --------------------------------------------------------------------------------------
const initFlags = (cmd: Command) =>
  cmd
    .option('--demo', 'also create a customers table of encrypted sample data, declared as a target')
    .addOption(
      cmd
        .createOption('--rows <n>', 'rows of demo data (with --demo)')
        .argParser(parseInteger('--rows', { hint: 'e.g. keyctl init --demo --rows 1000' }))
        .default(1000, shownAsBefore(1000)),
    )
    .option(
      '--tenants <n>',
      'with --demo: per-tenant keyrings (tenancy: in keyctl.yaml), N tenants t001, t002, … with the rows spread over them',
      parseInteger('--tenants', { hint: 'e.g. keyctl init --demo --tenants 3 --rows 3000' }),
    )
    .option('--key-from-env <VAR>', 'adopt the existing base64 key in environment variable VAR as v1 instead of generating one')
    .option(
      '--database <url-or-path>',
      'database.connection to write: a SQLite file (default ./keyctl.db) or a postgres:// or mysql:// URL; ' +
        "a URL with a password is written as ${DATABASE_URL}; pass '${VAR}' (single quotes) to keep the password out of ps and shell history",
    )
    .option('--keyring <name>', 'keyring name (default: default)')
    .option('-f, --force', 'overwrite an existing keyctl.yaml (keys are never overwritten); with --demo, recreate the customers table')
    .option(
      '--existing-config',
      'keep the keyctl.yaml already there (e.g. written for an AWS or Vault keystore): create or adopt the keyring in its keystore and prepare its database',
    );

export type InitOptions = OptionsOf<typeof initFlags>;

const init = defineCommand({
  name: 'init',
  description: 'write a working keyctl.yaml (SQLite, or PostgreSQL/MySQL/MariaDB with --database; file keystore) and create key v1',
  options: initFlags,
  examples: [
    'keyctl init --demo --rows 1000',
    "KEY=$(cat old.key) keyctl init --key-from-env KEY --database '${DATABASE_URL}'",
    'keyctl init --existing-config          # keyctl.yaml names a vault or aws-secrets-manager keystore',
  ],
  notes:
    'Passwords never go into keyctl.yaml: a --database URL with a password is written as ${DATABASE_URL} (export it\n' +
    'before the next command). A password typed on the command line is visible to other users in ps and stays in\n' +
    "shell history: export DATABASE_URL first (e.g. from a secret manager) and pass --database '${DATABASE_URL}'.",
  handler: async () => (await import('./commands/init.js')).run,
});

// ---- keyctl status ------------------------------------------------------------------------------------
const statusFlags = (cmd: Command) =>
  tenantOptions(
    cmd.option(
      '--check',
      `exit ${ExitCode.PROBLEMS_FOUND} when any problem is found (for monitoring): overdue or stalled rotation, unreadable values, keystore/registry drift, a compromised key in use, stale backups or recovery tests, tampered evidence`,
    ),
  );

export type StatusOptions = OptionsOf<typeof statusFlags>;

const status = defineCommand({
  name: 'status',
  description: 'show key versions, the open rotation, and how many values each key version protects',
  options: statusFlags,
  examples: ['keyctl status', 'keyctl status --check          # monitoring: exit 4 on any problem', 'keyctl status --json | jq .rotation'],
  handler: async () => (await import('./commands/status.js')).run,
});

// ---- keyctl metrics -----------------------------------------------------------------------------------
const metricsFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--out <file.prom>', "write the metrics to this file (atomically) for node_exporter's textfile collector, instead of stdout")
      .option('--no-counts', 'do not count the values of the target tables (no per-version, NULL, unparseable or plaintext gauges; for huge tables)')
      .option('--listen <host:port>', 'serve GET /metrics on this address until stopped (e.g. 127.0.0.1:9469)')
      .option('--cache-seconds <n>', 'with --listen: collect anew (in the background) when the cached metrics are older than this', '30'),
  );

export type MetricsOptions = OptionsOf<typeof metricsFlags>;

const metrics = defineCommand({
  name: 'metrics',
  description: 'print Prometheus metrics: key age, rotation phase and progress, values per version, backups, evidence, status --check problems',
  options: metricsFlags,
  examples: [
    'keyctl metrics --out /var/lib/node_exporter/textfile/keyctl.prom   # from cron, every 5 minutes',
    'keyctl metrics --no-counts --out keyctl.prom                       # no table scans',
    'keyctl metrics --listen 127.0.0.1:9469                              # scrape endpoint, cached 30 s',
  ],
  notes:
    'Read-only apart from what every command may do (adopt a keystore into an empty registry). A keystore that does not\n' +
    'answer is reported (keyctl_keystore_up 0), not an error. Alert rules and a Grafana dashboard: docs/monitoring/.',
  handler: async () => (await import('./commands/metrics.js')).run,
});

// ---- keyctl generate ----------------------------------------------------------------------------------
const generateFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--emergency', 'a key is compromised: mark it so, skip the waiting periods and the rollback window')
      .option('--compromised <version>', 'with --emergency: the compromised key (default: the current primary)')
      .option('--reason <text>', 'why (required with --emergency; recorded in the audit)')
      .option(
        '--break-glass',
        'emergency only, when approvals.breakGlass allows it: act before the required approvals, which are collected afterwards (needs --reason)',
      ),
  );

export type GenerateOptions = OptionsOf<typeof generateFlags>;

const generate = defineCommand({
  name: 'generate',
  description: 'open a rotation: create the next key version and publish it decrypt-only',
  options: generateFlags,
  examples: [
    'keyctl generate',
    'keyctl generate --emergency --compromised v3 --reason "INC-1234: key in a log"',
    'keyctl generate --emergency --break-glass --reason "INC-1234: approvers unreachable"   # approvals afterwards',
  ],
  notes:
    'With a routine rotation open, --emergency naming its old key turns that rotation into an emergency one;\n' +
    'naming its new key is refused with the way forward (docs/rotation.md, "Emergency rotations").',
  handler: async () => (await import('./commands/generate.js')).run,
});

// ---- keyctl dual-key ----------------------------------------------------------------------------------
const dualKeyFlags = (cmd: Command) =>
  tenantOptions(cmd.option('--wait', 'wait out the propagation delay (policy.minPropagationSeconds) with a countdown instead of refusing'));

export type DualKeyOptions = OptionsOf<typeof dualKeyFlags>;

const dualKey = defineCommand({
  name: 'dual-key',
  description: 'make the new version primary (new writes use it); the old one stays for decryption',
  options: dualKeyFlags,
  examples: ['keyctl dual-key   # once every reader has the key generate published'],
  handler: async () => (await import('./commands/dual-key.js')).run,
});

// ---- keyctl reencrypt ---------------------------------------------------------------------------------
/** --chunk-time when not given: the resume line leaves it out then. */
export const DEFAULT_CHUNK_TIME = 0.5;

const reencryptFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--dry-run', 'decrypt and re-encrypt in memory only: report what would be rewritten and what fails')
      .optionsGroup('Pace:')
      .option(
        '--batch-size <n>',
        'a fixed number of rows per batch (default: sized to --chunk-time); at most 1 MiB of values either way',
        parsePositive('--batch-size'),
      )
      .addOption(
        cmd
          .createOption('--chunk-time <seconds>', 'target time per batch; batch size adapts to it')
          .argParser(parseSeconds('--chunk-time', 60))
          .default(DEFAULT_CHUNK_TIME, shownAsBefore(DEFAULT_CHUNK_TIME)),
      )
      .option('--max-rate <rows>', 'at most this many rows per second', parsePositive('--max-rate'))
      .option('--sleep <ms>', 'pause this long after every batch', parseInteger('--sleep', { min: 0 }))
      .option('--pause-file <path>', 'pause while this file exists (touch it to pause, remove it to resume)')
      .option(
        '--max-load <n>',
        'wait while the database is busier than this (PostgreSQL: other active backends; MySQL/MariaDB: Threads_running)',
        parsePositive('--max-load'),
      )
      .option(
        '--critical-load <n>',
        'stop (cursor saved, exit 7, resumable) when the database is busier than this; above --max-load',
        parsePositive('--critical-load'),
      )
      .optionsGroup('What to rewrite:')
      .option('--table <name>', 'only this target table')
      .option('--shard <I/N>', 'only shard I of N (integer primary keys); run N processes, e.g. a Kubernetes Indexed Job', parseShard('--shard'))
      .optionsGroup('Pace:')
      .option(
        '--crypto-workers <n>',
        'worker threads for decrypt/encrypt, overlapping the database work (0: none; default: one per CPU, at most 4)',
        parseInteger('--crypto-workers', { min: 0 }),
      )
      .optionsGroup('A reencrypt already running (from another terminal):')
      .option('--status', 'show who runs it (host, pid, since), how far and how fast, its limits, or where a killed one stopped; then exit')
      .option(
        '--set <key=value>',
        'change its limits live and exit: max-rate=N|none, batch-size=N|auto, chunk-time=S, max-load=N|none, paused=true|false; repeat for several',
        collect,
        [],
      ),
  );

export type ReencryptOptions = OptionsOf<typeof reencryptFlags>;

const reencrypt = defineCommand({
  name: 'reencrypt',
  description: 'rewrite every value not under the primary version; resumes where it stopped',
  options: reencryptFlags,
  examples: [
    'keyctl reencrypt --dry-run',
    'keyctl reencrypt --max-rate 500 --max-load 20 --pause-file /tmp/keyctl.pause',
    'keyctl reencrypt --set max-rate=200 && keyctl reencrypt --status   # from another terminal, while one runs',
  ],
  notes: `Ctrl-C (or SIGTERM) finishes the current batch, saves the cursor and exits ${ExitCode.INTERRUPTED}; run the same command to resume.`,
  handler: async () => (await import('./commands/reencrypt.js')).run,
});

// ---- keyctl verify ------------------------------------------------------------------------------------
const verifyFlags = (cmd: Command) =>
  tenantOptions(
    cmd.option('--sample <n>', 'decrypt N random rows per target instead of all (the database still counts every value)', parsePositive('--sample')),
  );

export type VerifyOptions = OptionsOf<typeof verifyFlags>;

const verify = defineCommand({
  name: 'verify',
  description: 'check that every value decrypts and is under the primary version; a pass moves the rotation on',
  options: verifyFlags,
  examples: ['keyctl verify', 'keyctl verify --sample 1000   # quick; promote then needs --force --reason'],
  handler: async () => (await import('./commands/verify.js')).run,
});

// ---- keyctl backup ------------------------------------------------------------------------------------
const backupFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--out <dir>', 'backup directory (default: backup.dir in keyctl.yaml, .keyctl/backups)')
      .option('--recipient <file>', 'armored OpenPGP public key to encrypt to; repeat for several (default: backup.recipients)', collect, [])
      .option('--if-configured', 'exit 0 without a backup when backup.recipients is empty (runbooks, shared scripts)')
      .option('--prune-tenant <id>', 'make no backup: delete the key backups of this shredded tenant from the backup directory (docs/tenants.md)'),
  );

export type BackupOptions = OptionsOf<typeof backupFlags>;

const backup = defineCommand({
  name: 'backup',
  description: 'write an OpenPGP-encrypted backup of every non-retired key version, then prune old backups (cron-safe)',
  options: backupFlags,
  examples: ['keyctl backup --recipient ops.pub.asc --recipient vault.pub.asc', 'keyctl backup --if-configured   # from cron; see docs/backup.md'],
  notes: 'See docs/backup.md for the backup format, retention, a crontab line and a systemd timer.',
  handler: async () => (await import('./commands/backup.js')).run,
});

// ---- keyctl recover-test ------------------------------------------------------------------------------
const recoverTestFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--backup <file>', 'the backup to test (default: the newest in backup.dir)')
      .option('--identity <file>', 'armored OpenPGP secret key of a recipient (gpg --armor --export-secret-keys)')
      .option('--passphrase-env <var>', "environment variable holding the identity's passphrase")
      .addOption(
        cmd
          .createOption('--sample <n>', 'rows per target decrypted with the recovered keys')
          .argParser(parsePositive('--sample'))
          .default(20, shownAsBefore(20)),
      ),
  );

export type RecoverTestOptions = OptionsOf<typeof recoverTestFlags>;

const recoverTest = defineCommand({
  name: 'recover-test',
  description: 'prove a backup restores access: decrypt it, check every key and version in use, decrypt sample rows with it',
  options: recoverTestFlags,
  examples: [
    'keyctl recover-test --identity /secure/recovery.sec.asc',
    'keyctl recover-test --identity /secure/recovery.sec.asc --passphrase-env RECOVERY_PASSPHRASE --sample 100',
  ],
  handler: async () => (await import('./commands/recover-test.js')).run,
});

// ---- keyctl restore -----------------------------------------------------------------------------------
const restoreFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--backup <file>', 'the backup file')
      .option('--identity <file>', 'armored OpenPGP secret key of a recipient')
      .option('--passphrase-env <var>', "environment variable holding the identity's passphrase")
      .option('-y, --yes', 'do not ask for confirmation (needed without a terminal)')
      .option('--allow-unknown', 'also restore key versions the database registry does not know (needs --reason; audited)')
      .option('--reason <text>', 'why (recorded in the audit)'),
  );

export type RestoreOptions = OptionsOf<typeof restoreFlags>;

const restore = defineCommand({
  name: 'restore',
  description: 'put key versions from a backup back into the keystore (never overwrites a different key)',
  options: restoreFlags,
  examples: [
    'keyctl restore --backup .keyctl/backups/keyctl-backup-default-20261203T144804123Z.gpg --identity /secure/recovery.sec.asc',
    'keyctl restore --backup keyctl-backup-default-20261203T144804123Z.gpg --identity /secure/recovery.sec.asc --allow-unknown --reason "INC-1234: keystore lost"',
  ],
  handler: async () => (await import('./commands/restore.js')).run,
});

// ---- keyctl promote -----------------------------------------------------------------------------------
const promoteFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--force', 'promote after a sampled verify (needs --reason)')
      .option('--reason <text>', 'why (recorded in the audit)')
      .option(
        '--break-glass',
        'emergency only, when approvals.breakGlass allows it: act before the required approvals, which are collected afterwards (needs --reason)',
      ),
  );

export type PromoteOptions = OptionsOf<typeof promoteFlags>;

const promote = defineCommand({
  name: 'promote',
  description: 'remove the old version from the published keyring (kept archived for rollback); needs a full verify that passed',
  options: promoteFlags,
  examples: ['keyctl promote', 'keyctl promote --force --reason "CHG-1234: sampled verify accepted"'],
  handler: async () => (await import('./commands/promote.js')).run,
});

// ---- keyctl retire ------------------------------------------------------------------------------------
const retireFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--force', 'retire before the rollback window has passed (needs --reason)')
      .option('--reason <text>', 'why (recorded in the audit)')
      .option(
        '--break-glass',
        'emergency only, when approvals.breakGlass allows it: act before the required approvals, which are collected afterwards (needs --reason)',
      ),
  );

export type RetireOptions = OptionsOf<typeof retireFlags>;

const retire = defineCommand({
  name: 'retire',
  description: "after the rollback window: destroy (or archive) the old version's key and close the rotation",
  options: retireFlags,
  examples: ['keyctl retire', 'keyctl retire --force --reason "CHG-1234: rollback window shortened"'],
  handler: async () => (await import('./commands/retire.js')).run,
});

// ---- keyctl rollback ----------------------------------------------------------------------------------
const rollbackFlags = (cmd: Command) =>
  tenantOptions(cmd.option('--reason <text>', 'why (recorded in the audit)').option('--force', 'allow restoring a key marked compromised (needs --reason)'));

export type RollbackOptions = OptionsOf<typeof rollbackFlags>;

const rollback = defineCommand({
  name: 'rollback',
  description: 'make the old version primary again; values under the new one are re-encrypted back',
  options: rollbackFlags,
  examples: ['keyctl rollback --reason "CHG-1234: app errors after dual-key"'],
  handler: async () => (await import('./commands/rollback.js')).run,
});

// ---- keyctl purge -------------------------------------------------------------------------------------
const purgeFlags = (cmd: Command) => tenantOptions(cmd.option('--dry-run', 'say what would be destroyed, destroy nothing'));

export type PurgeOptions = OptionsOf<typeof purgeFlags>;

const purge = defineCommand({
  name: 'purge',
  description: 'destroy retired keys whose retention (policy.retiredKeyRetentionDays) has passed, after checking every value decrypts without them',
  options: purgeFlags,
  examples: ['keyctl purge --dry-run', 'keyctl purge          # e.g. monthly from cron; see docs/rotation.md, "Destroying key material"'],
  handler: async () => (await import('./commands/purge.js')).run,
});

// ---- keyctl rewrap ------------------------------------------------------------------------------------
const rewrapFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .option('--to <key-id>', 'aws-kms: re-wrap under this KMS key (id, ARN or alias) instead of keystore.keyId; then set keystore.keyId to it')
      .option('--dry-run', 'list the wrapped keys that would be re-wrapped, change nothing'),
  );

export type RewrapOptions = OptionsOf<typeof rewrapFlags>;

const rewrap = defineCommand({
  name: 'rewrap',
  description:
    'rotate the key-encryption key: re-wrap every wrapped data key (aws-kms, vault-transit keystores) under the new KMS key or Transit key version; no data row is touched',
  options: rewrapFlags,
  examples: [
    'keyctl rewrap --dry-run                    # after moving the KMS alias, or `vault write -f transit/keys/<key>/rotate`',
    'keyctl rewrap --all-tenants',
    'keyctl rewrap --to alias/keyctl-2027       # aws-kms: another KMS key',
  ],
  notes:
    'Each blob is replaced only after the new one was unwrapped back to the same key, and only if it is still the blob read\n' +
    '(compare-and-set); interrupted, run it again: what is done is skipped. Audited (action rewrap). docs/keystores.md, "Envelope encryption".',
  handler: async () => (await import('./commands/rewrap.js')).run,
});

// ---- keyctl audit -------------------------------------------------------------------------------------
const FORMATS: readonly ['table', 'json', 'markdown'] = ['table', 'json', 'markdown'];

const auditFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .optionsGroup('What to show:')
      .option('--rotation <id>', 'this rotation (default: the open one, else the latest)', parseInteger('--rotation', { expects: 'a rotation id (a number)' }))
      .option('--all', "the keyring's whole history")
      .addOption(cmd.createOption('--format <format>', 'output format').choices(FORMATS).default('table'))
      .optionsGroup('Evidence checks:')
      .option(
        '--verify',
        `check the hash chain and its anchor in the keystore: exit ${ExitCode.PROBLEMS_FOUND} if a row was edited, deleted or inserted outside keyctl`,
      )
      .option('--expect-head <seq:hash>', 'with --verify: also check a head kept elsewhere (from an earlier --export or --verify)', parseExpectHead)
      .option('--anchor', "anchor the keyring's current audit head in the keystore now (keyctl does this after every audited change)")
      .option(
        '--reset',
        'with --anchor: re-anchor at the database head although it does not extend the old anchor (after restoring a database backup); needs --reason, audited',
      )
      .option('--reason <text>', 'with --anchor --reset: why, for the audit record')
      .option('--export', "print the keyring's audit rows and head, with the anchor's MAC, as JSON lines (for write-once storage or a SIEM)"),
  );

/** `--expect-head SEQ:HASH`, as `audit --verify` prints the head. */
function parseExpectHead(value: string): { seq: number; hash: string } {
  const m = /^(\d+):([0-9a-f]{64})$/.exec(value);
  if (!m || !Number.isSafeInteger(Number(m[1]))) {
    throw new UsageError(
      `--expect-head expects SEQ:HASH (a seq and a 64-digit hex hash), found "${value}"`,
      'copy it from `keyctl audit --verify` or the last line of `keyctl audit --export`',
    );
  }
  return { seq: Number(m[1]), hash: m[2]! };
}

export type AuditOptions = OptionsOf<typeof auditFlags>;

const audit = defineCommand({
  name: 'audit',
  description: 'print the history of a rotation as evidence, or check the audit chain',
  options: auditFlags,
  examples: ['keyctl audit --format markdown > rotation-evidence.md', 'keyctl audit --verify', 'keyctl audit --export >> /secure/keyctl-audit.jsonl'],
  handler: async () => (await import('./commands/audit.js')).run,
});

// ---- keyctl runbook -----------------------------------------------------------------------------------
const runbookListFlags = (cmd: Command) => cmd.option('--file <path>', 'also a runbook file of your own');

const runbookRunFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .argument('<name>', 'runbook name (see `keyctl runbook list`)')
      .option('--file <path>', 'run this runbook file instead of one found by name')
      .option('--dry-run', 'print the plan (done, next and pending steps) without doing anything')
      .option('-y, --yes', 'run check, command and wait steps without asking (for scripts); confirm steps still need a terminal')
      .option('--set <name=value>', 'a runbook input, e.g. --set incident=INC-1234 (asked for when missing); repeat for several', collect, [])
      .option('--summary', "print the runbook's closing summary (incident timeline, evidence line) of the latest rotation, and nothing else")
      .addOption(
        cmd
          .createOption('--format <format>', 'how the incident summary prints (markdown: to paste into a ticket)')
          .choices(['text', 'markdown'] as const)
          .default('text'),
      ),
  );

export type RunbookListOptions = OptionsOf<typeof runbookListFlags>;
export type RunbookRunOptions = OptionsOf<typeof runbookRunFlags>;

const runbook = defineCommand({
  name: 'runbook',
  description: 'follow a rotation step by step: checks, commands and confirmations from runbooks/*.yaml, resumable by anyone',
  options: (cmd) => cmd,
  examples: [
    'keyctl runbook list',
    'keyctl runbook run routine-rotation',
    'keyctl runbook run key-recovery-test --yes --set identity=/secure/recovery.asc   # from cron',
  ],
  subcommands: [
    defineCommand({
      name: 'list',
      description: "the runbooks shipped with keyctl and those of the config's runbooks: directory",
      options: runbookListFlags,
      examples: ['keyctl runbook list', 'keyctl runbook list --file ./our-rotation.yaml'],
      handler: async () => (await import('./commands/runbook.js')).list,
    }),
    defineCommand({
      name: 'run',
      description: 'run a runbook from the first step not yet done for the current rotation',
      options: runbookRunFlags,
      examples: [
        'keyctl runbook run routine-rotation --dry-run',
        'keyctl runbook run routine-rotation',
        'keyctl runbook run emergency-rotation --set incident=INC-1234',
      ],
      handler: async () => (await import('./commands/runbook.js')).run,
    }),
  ],
});

// ---- keyctl approval ----------------------------------------------------------------------------------
const parseRequestId = parseInteger('ID', { hint: 'a request number from `keyctl approval list`' });

const approvalRequestFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .addArgument(cmd.createArgument('<action>', 'the guarded action: generate, promote, retire or rollback'))
      .option('--reason <text>', 'why (one line; part of the text the approvers sign)')
      .option('--emergency', 'with generate: for `keyctl generate --emergency` (the approvers sign that the primary is compromised)'),
  );
const approvalShowFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .addArgument(cmd.createArgument('<id>', 'request number').argParser(parseRequestId))
      .option('--canonical', 'print exactly the bytes to sign, nothing else'),
  );
const approvalSignFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .addArgument(cmd.createArgument('<id>', 'request number').argParser(parseRequestId))
      .requiredOption('--key <file>', "the approver's armored OpenPGP secret key (`gpg --armor --export-secret-keys ID > FILE`)")
      .option('--passphrase-env <VAR>', "environment variable holding the secret key's passphrase"),
  );
const approvalAddFlags = (cmd: Command) =>
  tenantOptions(
    cmd
      .addArgument(cmd.createArgument('<id>', 'request number').argParser(parseRequestId))
      .requiredOption('--signature <file>', 'a detached OpenPGP signature of the canonical text (armored or binary)'),
  );
const approvalListFlags = (cmd: Command) => tenantOptions(cmd.option('--all', 'every request of the keyring (default: the newest 100, in every state)'));

export type ApprovalRequestOptions = OptionsOf<typeof approvalRequestFlags>;
export type ApprovalShowOptions = OptionsOf<typeof approvalShowFlags>;
export type ApprovalSignOptions = OptionsOf<typeof approvalSignFlags>;
export type ApprovalAddOptions = OptionsOf<typeof approvalAddFlags>;
export type ApprovalListOptions = OptionsOf<typeof approvalListFlags>;

const approval = defineCommand({
  name: 'approval',
  description: 'the two-person rule: request, sign and inspect approvals for generate, promote, retire and rollback',
  options: (cmd) => cmd,
  examples: [
    'keyctl approval request promote --reason "CHG-1234"',
    'keyctl approval show 12 --canonical > request-12.txt',
    'keyctl approval add 12 --signature sig.asc',
  ],
  notes:
    'Each approver signs request-12.txt on their own machine (gpg --detach-sign --armor request-12.txt) and sends back\n' +
    'the .asc file; no secret key needs to reach this host. docs/approvals.md: approvers, the workflow, what auditors see.',
  subcommands: [
    defineCommand({
      name: 'request',
      description: 'create a request bound to the action, the rotation and its key versions; prints its id and the text to sign',
      options: approvalRequestFlags,
      examples: ['keyctl approval request promote --reason "CHG-1234"', 'keyctl approval request generate --json | jq -r .request.canonical'],
      handler: async () => (await import('./commands/approval.js')).request,
    }),
    defineCommand({
      name: 'show',
      description: 'a request, its signatures and who still has to sign',
      options: approvalShowFlags,
      examples: ['keyctl approval show 12', 'keyctl approval show 12 --canonical > request-12.txt'],
      handler: async () => (await import('./commands/approval.js')).show,
    }),
    defineCommand({
      name: 'sign',
      description: "sign a request with an approver's OpenPGP secret key file",
      options: approvalSignFlags,
      examples: ['keyctl approval sign 12 --key ~/secure/me.sec.asc --passphrase-env MY_PASSPHRASE'],
      handler: async () => (await import('./commands/approval.js')).sign,
    }),
    defineCommand({
      name: 'add',
      description: "add a detached signature made elsewhere (gpg --detach-sign on the approver's machine)",
      options: approvalAddFlags,
      examples: ['keyctl approval add 12 --signature sig.asc'],
      handler: async () => (await import('./commands/approval.js')).add,
    }),
    defineCommand({
      name: 'list',
      description: 'approval requests of the keyring, newest first, with their state',
      options: approvalListFlags,
      examples: ['keyctl approval list', 'keyctl approval list --json'],
      handler: async () => (await import('./commands/approval.js')).list,
    }),
  ],
});

// ---- keyctl migrate -----------------------------------------------------------------------------------
const migrateFlags = (cmd: Command) =>
  cmd.option('--unlock', 'first release a migration lock left by a keyctl that died while migrating (only when no other keyctl runs)');

export type MigrateOptions = OptionsOf<typeof migrateFlags>;

const migrate = defineCommand({
  name: 'migrate',
  description: "create or upgrade keyctl's own tables (other commands do this automatically)",
  options: migrateFlags,
  examples: ['keyctl migrate', 'keyctl migrate --unlock   # only when no other keyctl runs'],
  handler: async () => (await import('./commands/migrate.js')).run,
});

// ---- keyctl completion -------------------------------------------------------------------------------
const SHELLS: readonly ['bash', 'zsh', 'fish'] = ['bash', 'zsh', 'fish'];

const completionFlags = (cmd: Command) =>
  cmd
    .addArgument(cmd.createArgument('[shell]', 'the shell to complete in').choices(SHELLS))
    // What the script asks for as you type (runbook names, --table targets): not for people.
    .addOption(
      cmd
        .createOption('--list <what>')
        .choices(['runbooks', 'tables'] as const)
        .hideHelp(),
    );

export type CompletionOptions = OptionsOf<typeof completionFlags>;

const completion = defineCommand({
  name: 'completion',
  description: 'print a shell completion script: commands, flags, runbook names and --table targets from keyctl.yaml',
  options: completionFlags,
  examples: [
    'keyctl completion bash > /etc/bash_completion.d/keyctl   # or in ~/.bashrc: source <(keyctl completion bash)',
    'keyctl completion zsh > "${fpath[1]}/_keyctl"',
    'keyctl completion fish > ~/.config/fish/completions/keyctl.fish',
  ],
  handler: async () => (await import('./commands/completion.js')).run,
});

// ---- keyctl tenant / shred ---------------------------------------------------------------------------
const tenantListFlags = (cmd: Command) => cmd.option('--no-counts', "skip counting each tenant's values (one grouped scan of every target table)");
export type TenantListOptions = OptionsOf<typeof tenantListFlags>;
const tenantAddFlags = (cmd: Command) => cmd.argument('<id>', 'the tenant id: its value in the tenancy column');
export type TenantAddOptions = OptionsOf<typeof tenantAddFlags>;

const tenant = defineCommand({
  name: 'tenant',
  description: 'per-tenant keyrings (tenancy: in keyctl.yaml): list the tenants, add one',
  options: (cmd) => cmd,
  examples: ['keyctl tenant list', 'keyctl tenant add acme'],
  notes: 'Every lifecycle command acts on one tenant with --tenant ID, or on each in turn with --all-tenants. docs/tenants.md.',
  subcommands: [
    defineCommand({
      name: 'list',
      description: 'every tenant: primary, versions, open rotation, next rotation due, values per version; and tenant values with no keyring',
      options: tenantListFlags,
      examples: ['keyctl tenant list', 'keyctl tenant list --no-counts --json'],
      handler: async () => (await import('./commands/tenant.js')).list,
    }),
    defineCommand({
      name: 'add',
      description: "create a tenant's keyring with its first key, v1",
      options: tenantAddFlags,
      examples: ['keyctl tenant add acme'],
      handler: async () => (await import('./commands/tenant.js')).add,
    }),
  ],
});

const shredFlags = (cmd: Command) =>
  cmd
    .requiredOption('--tenant <id>', 'the tenant whose keys are destroyed')
    .option('--reason <text>', 'why, e.g. the erasure request (recorded in the audit)')
    .option('-y, --yes', 'do not ask to type the tenant id (needed without a terminal)');
export type ShredOptions = OptionsOf<typeof shredFlags>;

const shred = defineCommand({
  name: 'shred',
  description: "crypto-shred a tenant: destroy every key version of its keyring, so its values (and every database backup's copy) cannot be read",
  options: shredFlags,
  examples: ['keyctl shred --tenant acme --reason "GDPR erasure request #4411"'],
  notes:
    'Irreversible. Asks you to type the tenant id; needs the approvals of approvals.require.shred when set. Key backups made\n' +
    'before still hold the keys until they are pruned: keyctl tenant list says which (docs/tenants.md, "Shredding").',
  handler: async () => (await import('./commands/tenant.js')).shred,
});

export const COMMANDS: readonly CommandSpec[] = [
  init,
  status,
  metrics,
  generate,
  dualKey,
  reencrypt,
  verify,
  backup,
  recoverTest,
  restore,
  promote,
  retire,
  rollback,
  purge,
  rewrap,
  audit,
  approval,
  tenant,
  shred,
  runbook,
  migrate,
  completion,
];
