/**
 * keyctl's command-line entry: registers commands and lazily imports each handler, so
 * `keyctl --version` and `--help` never load Knex, database drivers or crypto code.
 * This is the only module that decides exit statuses; bin/keyctl.js sets process.exitCode.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { EXIT_CODE_DESCRIPTIONS, ExitCode } from '../base/exit-codes.js';
import { Output, type Stream } from '../ui/output.js';
import type { CliRuntime, GlobalFlags } from './runtime.js';

export interface MainIO {
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout: Stream;
  stderr: Stream;
  stdinIsTTY: boolean;
}

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const EXIT_HELP = `
Exit codes:
${EXIT_CODE_DESCRIPTIONS.map(([name, text]) => `  ${String(ExitCode[name]).padStart(2)}  ${text}`).join('\n')}

Configuration: ./keyctl.yaml, or --config PATH, or KEYCTL_CONFIG=PATH.
Start here: keyctl init --demo   then   keyctl status`;

type Handler<O> = (rt: CliRuntime, opts: O, args: string[]) => Promise<number>;

export async function main(io: MainIO): Promise<number> {
  let status: number = ExitCode.OK;
  const program = new Command('keyctl');
  const writeOut = (s: string) => void io.stdout.write(s);
  const writeErr = (s: string) => void io.stderr.write(s);

  const runtimeFor = (cmd: Command): CliRuntime => {
    const g = cmd.optsWithGlobals() as Partial<GlobalFlags>;
    const flags: GlobalFlags = { json: Boolean(g.json), color: g.color !== false, ...(g.config ? { config: g.config } : {}), ...(g.actor ? { actor: g.actor } : {}) };
    return {
      flags,
      output: new Output({ json: flags.json, color: flags.color, env: io.env, stdout: io.stdout, stderr: io.stderr }),
      env: io.env,
      cwd: io.cwd,
      stdinIsTTY: io.stdinIsTTY,
      now: () => new Date(),
      invoke: (args) =>
        main({
          ...io,
          argv: [
            io.argv[0] ?? 'node',
            io.argv[1] ?? 'keyctl',
            ...(flags.config ? ['--config', flags.config] : []),
            ...(flags.actor ? ['--actor', flags.actor] : []),
            ...(flags.color ? [] : ['--no-color']),
            ...args,
          ],
        }),
    };
  };

  /** Wrap a lazily imported handler: run it, turn any error into a message and an exit status. */
  function action<O>(load: () => Promise<{ run: Handler<O> }>) {
    return async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      const rt = runtimeFor(cmd);
      try {
        const { run } = await load();
        status = await run(rt, cmd.opts() as O, cmd.args);
      } catch (err) {
        status = rt.output.error(err);
      }
    };
  }

  program
    .description('Rotate the encryption keys that protect fields in SQL databases.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .option('-c, --config <path>', 'config file (default: ./keyctl.yaml or $KEYCTL_CONFIG)')
    .option('--json', 'print one JSON object on stdout; human messages go to stderr')
    .option('--no-color', 'no colour in output (also when NO_COLOR is set or output is not a terminal)')
    .option('--actor <name>', 'who is acting, recorded in rotation_audit (default: $KEYCTL_ACTOR, else user@host)')
    .addHelpText('after', EXIT_HELP)
    .showHelpAfterError('(run `keyctl --help` for usage)')
    .configureOutput({ writeOut, writeErr })
    .exitOverride();

  program
    .command('init')
    .description('write a working keyctl.yaml (SQLite + file keystore) and create key v1')
    .option('--demo', 'also create a customers table of encrypted sample data, declared as a target')
    .addOption(new Option('--rows <n>', 'rows of demo data (with --demo)').default('1000'))
    .option('--key-from-env <VAR>', 'adopt the existing base64 key in environment variable VAR as v1 instead of generating one')
    .option('--database <url-or-path>', 'database.connection to write: a SQLite file (default ./keyctl.db) or a postgres:// or mysql:// URL; use \'${VAR}\' to keep secrets out of the file')
    .option('--keyring <name>', 'keyring name (default: default)')
    .option('-f, --force', 'overwrite an existing keyctl.yaml (keys are never overwritten); with --demo, recreate the customers table')
    .option('--existing-config', 'keep the keyctl.yaml already there (e.g. written for an AWS or Vault keystore): create or adopt the keyring in its keystore and prepare its database')
    .addHelpText(
      'after',
      '\nExamples:\n  keyctl init --demo --rows 1000\n  KEY=$(cat old.key) keyctl init --key-from-env KEY --database \'${DATABASE_URL}\'\n  keyctl init --existing-config          # keyctl.yaml names a vault or aws-secrets-manager keystore',
    )
    .action(action(() => import('./commands/init.js')));

  program
    .command('status')
    .description('show key versions, the open rotation, and how many values each key version protects')
    .option('--check', `exit ${ExitCode.PROBLEMS_FOUND} when the rotation is overdue or unparseable values exist (for monitoring)`)
    .action(action(() => import('./commands/status.js')));

  program
    .command('generate')
    .description('open a rotation: create the next key version and publish it decrypt-only')
    .option('--emergency', 'a key is compromised: mark it so, skip the waiting periods and the rollback window')
    .option('--compromised <version>', 'with --emergency: the compromised key (default: the current primary)')
    .option('--reason <text>', 'why (required with --emergency; recorded in the audit)')
    .addHelpText(
      'after',
      '\nExamples:\n  keyctl generate\n  keyctl generate --emergency --compromised v3 --reason "INC-1234: key in a log"\n\n' +
        'With a routine rotation open, --emergency naming its old key turns that rotation into an emergency one;\n' +
        'naming its new key is refused with the way forward (docs/rotation.md, "Emergency rotations").',
    )
    .action(action(() => import('./commands/generate.js')));

  program
    .command('dual-key')
    .description('make the new version primary (new writes use it); the old one stays for decryption')
    .action(action(() => import('./commands/dual-key.js')));

  program
    .command('reencrypt')
    .description('rewrite every value not under the primary version; resumes where it stopped')
    .option('--dry-run', 'decrypt and re-encrypt in memory only: report what would be rewritten and what fails')
    .option('--batch-size <n>', 'a fixed number of rows per batch (default: sized to --chunk-time)')
    .addOption(new Option('--chunk-time <seconds>', 'target time per batch; batch size adapts to it').default('0.5'))
    .option('--max-rate <rows>', 'at most this many rows per second')
    .option('--sleep <ms>', 'pause this long after every batch')
    .option('--pause-file <path>', 'pause while this file exists (touch it to pause, remove it to resume)')
    .option('--max-load <n>', 'wait while the database is busier than this (PostgreSQL: other active backends; MySQL: Threads_running)')
    .option('--table <name>', 'only this target table')
    .option('--shard <I/N>', 'only shard I of N (integer primary keys); run N processes, e.g. a Kubernetes Indexed Job')
    .option('--crypto-workers <n>', 'worker threads for decrypt/encrypt, overlapping the database work (0: none; default: one per CPU, at most 4)')
    .addHelpText('after', `\nCtrl-C (or SIGTERM) finishes the current batch, saves the cursor and exits ${ExitCode.INTERRUPTED}; run the same command to resume.`)
    .action(action(() => import('./commands/reencrypt.js')));

  program
    .command('verify')
    .description('check that every value decrypts and is under the primary version; a pass moves the rotation on')
    .option('--sample <n>', 'decrypt N random rows per target instead of all (the database still counts every value)')
    .action(action(() => import('./commands/verify.js')));

  const collect = (v: string, acc: string[]) => [...acc, v];
  program
    .command('backup')
    .description('write an OpenPGP-encrypted backup of every non-retired key version, then prune old backups (cron-safe)')
    .option('--out <dir>', 'backup directory (default: backup.dir in keyctl.yaml, .keyctl/backups)')
    .option('--recipient <file>', 'armored OpenPGP public key to encrypt to; repeat for several (default: backup.recipients)', collect, [])
    .option('--if-configured', 'exit 0 without a backup when backup.recipients is empty (runbooks, shared scripts)')
    .addHelpText('after', '\nSee docs/backup.md for the backup format, retention, a crontab line and a systemd timer.')
    .action(action(() => import('./commands/backup.js')));

  program
    .command('recover-test')
    .description('prove a backup restores access: decrypt it, check every key and version in use, decrypt sample rows with it')
    .option('--backup <file>', 'the backup to test (default: the newest in backup.dir)')
    .option('--identity <file>', 'armored OpenPGP secret key of a recipient (gpg --armor --export-secret-keys)')
    .option('--passphrase-env <var>', "environment variable holding the identity's passphrase")
    .option('--sample <n>', 'rows per target decrypted with the recovered keys', '20')
    .action(action(() => import('./commands/recover-test.js')));

  program
    .command('restore')
    .description('put key versions from a backup back into the keystore (never overwrites a different key)')
    .option('--backup <file>', 'the backup file')
    .option('--identity <file>', 'armored OpenPGP secret key of a recipient')
    .option('--passphrase-env <var>', "environment variable holding the identity's passphrase")
    .option('-y, --yes', 'do not ask for confirmation (needed without a terminal)')
    .option('--allow-unknown', 'also restore key versions the database registry does not know (needs --reason; audited)')
    .option('--reason <text>', 'why (recorded in the audit)')
    .action(action(() => import('./commands/restore.js')));

  program
    .command('promote')
    .description('remove the old version from the published keyring (kept archived for rollback); needs a full verify that passed')
    .option('--force', 'promote after a sampled verify (needs --reason)')
    .option('--reason <text>', 'why (recorded in the audit)')
    .action(action(() => import('./commands/promote.js')));

  program
    .command('retire')
    .description("after the rollback window: destroy (or archive) the old version's key and close the rotation")
    .option('--force', 'retire before the rollback window has passed (needs --reason)')
    .option('--reason <text>', 'why (recorded in the audit)')
    .action(action(() => import('./commands/retire.js')));

  program
    .command('rollback')
    .description('make the old version primary again; values under the new one are re-encrypted back')
    .option('--reason <text>', 'why (recorded in the audit)')
    .option('--force', 'allow restoring a key marked compromised (needs --reason)')
    .action(action(() => import('./commands/rollback.js')));

  program
    .command('purge')
    .description('destroy retired keys whose retention (policy.retiredKeyRetentionDays) has passed, after checking every value decrypts without them')
    .option('--dry-run', 'say what would be destroyed, destroy nothing')
    .addHelpText('after', '\nExamples:\n  keyctl purge --dry-run\n  keyctl purge          # e.g. monthly from cron; see docs/rotation.md, "Destroying key material"')
    .action(action(() => import('./commands/purge.js')));

  program
    .command('audit')
    .description('print the history of a rotation as evidence, or check the audit chain')
    .option('--rotation <id>', 'this rotation (default: the open one, else the latest)')
    .option('--all', "the keyring's whole history")
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'markdown']).default('table'))
    .option('--verify', `check the hash chain: exit ${ExitCode.PROBLEMS_FOUND} if a row was edited, deleted or inserted outside keyctl`)
    .action(action(() => import('./commands/audit.js')));

  const runbook = program
    .command('runbook')
    .description('follow a rotation step by step: checks, commands and confirmations from runbooks/*.yaml, resumable by anyone')
    .addHelpText('after', '\nExamples:\n  keyctl runbook list\n  keyctl runbook run routine-rotation --dry-run\n  keyctl runbook run routine-rotation\n  keyctl runbook run key-recovery-test --yes --set identity=/secure/recovery.asc   # from cron');
  runbook
    .command('list')
    .description('the runbooks shipped with keyctl and those of the config\'s runbooks: directory')
    .option('--file <path>', 'also a runbook file of your own')
    .action(action(async () => ({ run: (await import('./commands/runbook.js')).list })));
  runbook
    .command('run')
    .description('run a runbook from the first step not yet done for the current rotation')
    .argument('<name>', 'runbook name (see `keyctl runbook list`)')
    .option('--file <path>', 'run this runbook file instead of one found by name')
    .option('--dry-run', 'print the plan (done, next and pending steps) without doing anything')
    .option('-y, --yes', 'run check, command and wait steps without asking (for scripts); confirm steps still need a terminal')
    .option('--set <name=value...>', 'a runbook input, e.g. --set incident=INC-1234 (asked for when missing)')
    .action(action(async () => ({ run: (await import('./commands/runbook.js')).runRunbook })));

  program
    .command('migrate')
    .description("create or upgrade keyctl's own tables (other commands do this automatically)")
    .option('--unlock', 'first release a migration lock left by a keyctl that died while migrating (only when no other keyctl runs)')
    .action(action(() => import('./commands/migrate.js')));

  try {
    await program.parseAsync(io.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return ExitCode.OK;
      // Help shown because no command was given: a usage error, so scripts notice.
      if (err.code === 'commander.help') return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
      if (err.code === 'commander.executeSubCommandAsync') return err.exitCode;
      return ExitCode.USAGE;
    }
    throw err;
  }
  return status;
}
