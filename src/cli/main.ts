/**
 * keyctl's command-line entry: registers the command specs (src/cli/specs.ts) and runs the one asked
 * for. Spec modules import no handler, so `keyctl --version` and `--help` never load Knex,
 * database drivers or crypto code; the handler is imported when its command runs.
 *
 * Everything from the process comes in through MainIO (argv, env, cwd, streams, stdin, signals,
 * an immediate exit), so tests run keyctl in-process. This is the only module that decides exit
 * statuses; bin/keyctl.js sets process.exitCode.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, type Option } from '@commander-js/extra-typings';
import { KeyctlError } from '../base/errors.js';
import { EXIT_CODE_DESCRIPTIONS, ExitCode } from '../base/exit-codes.js';
import type { Output, TextStream } from '../ui/output.js';
import type { CliRuntime, GlobalFlags, Signal } from './runtime.js';
import type { RunAction } from './spec.js';
import { COMMANDS } from './specs.js';

export interface MainIO {
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The result goes here. `isTTY` and `columns` are read from the streams as a terminal reports them. */
  stdout: TextStream;
  /** Messages, progress and prompts go here. */
  stderr: TextStream;
  stdin: NodeJS.ReadableStream;
  stdinIsTTY: boolean;
  /** Call `handler` on each `signal` until the returned function is called. */
  onSignal(signal: Signal, handler: (signal: Signal) => void): () => void;
  /** End the process now with `status` (a second Ctrl-C that cannot wait for the command). */
  exitNow(status: number): void;
}

export type { Signal };

/** Commands whose --all-tenants is their own (a summary over every tenant), not one run per tenant. */
const HANDLES_ALL_TENANTS = new Set(['status', 'reencrypt', 'metrics']);
/** Commands that still show a shredded tenant (its state and history). */
const SHOWS_SHREDDED = new Set(['status', 'audit']);

function packageVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

const EXIT_HELP = `
Exit codes:
${EXIT_CODE_DESCRIPTIONS.map(([name, text]) => `  ${String(ExitCode[name]).padStart(2)}  ${text}`).join('\n')}

Configuration: ./keyctl.yaml, or --config PATH, or KEYCTL_CONFIG=PATH.
Start here: keyctl init --demo   then   keyctl status`;

/**
 * An option's help: its description, then choices and default in one parenthesis, without
 * commander's quotes; no default when the description already names one or there is none to show
 * (an empty list, a flag). Subcommands inherit this from the program.
 */
function optionDescription(option: Option): string {
  const extra: string[] = [];
  if (option.argChoices) extra.push(`choices: ${option.argChoices.join(', ')}`);
  const d: unknown = option.defaultValue;
  const shown =
    option.defaultValueDescription ??
    (d === undefined || typeof d === 'boolean' || (Array.isArray(d) && d.length === 0) ? undefined : Array.isArray(d) ? d.join(', ') : String(d));
  if (shown !== undefined && !/\bdefault\b/.test(option.description)) extra.push(`default: ${shown}`);
  return extra.length ? `${option.description} (${extra.join(', ')})` : option.description;
}

/** The width commander wraps help to: the terminal's, else its default (80). */
function helpWidth(stream: TextStream): number {
  return (stream.isTTY && stream.columns) || 80;
}

export async function main(io: MainIO): Promise<number> {
  let status: number = ExitCode.OK;
  const program = new Command('keyctl')
    .description('Rotate the encryption keys that protect fields in SQL databases.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .option('-c, --config <path>', 'config file (default: ./keyctl.yaml or $KEYCTL_CONFIG)')
    .option('--json', 'print one JSON object on stdout; human messages go to stderr')
    .option('--no-color', 'no colour in output (also when NO_COLOR is set or output is not a terminal)')
    .option('--actor <name>', 'who is acting, recorded in rotation_audit (default: $KEYCTL_ACTOR, else user@host)')
    .option(
      '--log-timestamps',
      'start every human line with the UTC time, for logs (on by itself under cron; KEYCTL_LOG_TIMESTAMPS=1 or 0 forces it on or off)',
    )
    .addHelpText('after', EXIT_HELP)
    .configureHelp({ optionDescription })
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      getOutHelpWidth: () => helpWidth(io.stdout),
      getErrHelpWidth: () => helpWidth(io.stderr),
      // commander's help has no colours of its own; it need not look at the process's streams.
      getOutHasColors: () => false,
      getErrHasColors: () => false,
      // Usage errors are printed by main, in keyctl's format (and as JSON with --json): see ./usage.ts.
      outputError: () => undefined,
    })
    .exitOverride();

  /** The global flags as parsed so far (all of them once a command runs). */
  const globalFlags = (): GlobalFlags => {
    const g = program.opts();
    return { json: Boolean(g.json), color: g.color, ...(g.config ? { config: g.config } : {}), ...(g.actor ? { actor: g.actor } : {}) };
  };

  // Imported when a command runs (or an option is refused): `--version` and `--help` need no chalk.
  const outputFor = async (flags: GlobalFlags, stdout: TextStream = io.stdout): Promise<Output> =>
    new (await import('../ui/output.js')).Output({
      json: flags.json,
      color: flags.color,
      env: io.env,
      stdout,
      stderr: io.stderr,
      timestamps: Boolean(program.opts().logTimestamps) || io.argv.includes('--log-timestamps'),
      ...(io.stderr.isTTY ? { terminal: { stream: io.stderr, columns: () => io.stderr.columns ?? 0 } } : {}),
    });

  const runtime = async (tenancy?: GlobalFlags['tenancy']): Promise<CliRuntime> => {
    const flags: GlobalFlags = { ...globalFlags(), ...(tenancy ? { tenancy } : {}) };
    return {
      flags,
      output: await outputFor(flags),
      env: io.env,
      cwd: io.cwd,
      stdinIsTTY: io.stdinIsTTY,
      columns: () => (io.stderr.isTTY ? (io.stderr.columns ?? 0) : 0),
      ask: async (question) => {
        const { createInterface } = await import('node:readline/promises');
        const rl = createInterface({ input: io.stdin, output: io.stderr });
        try {
          return await rl.question(question);
        } finally {
          rl.close();
        }
      },
      onSignal: (signal, handler) => io.onSignal(signal, handler),
      exitNow: (code) => io.exitNow(code),
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
            ...(program.opts().logTimestamps ? ['--log-timestamps'] : []),
            ...args,
            // A runbook run for one tenant runs its steps for that tenant.
            ...(flags.tenancy?.tenant !== undefined && !args.includes('--tenant') ? ['--tenant', flags.tenancy.tenant] : []),
          ],
        }),
    };
  };

  /** Run a lazily imported handler; turn any error into a message and an exit status. */
  const run: RunAction = (command, load) => async () => {
    const o = command.opts() as Record<string, unknown>;
    // Commands on one keyring declare --tenant/--all-tenants (tenantOptions in specs.ts).
    const tenancy =
      'allTenants' in o
        ? { ...(typeof o.tenant === 'string' ? { tenant: o.tenant } : {}), all: o.allTenants === true, allowShredded: SHOWS_SHREDDED.has(command.name()) }
        : undefined;
    const rt = await runtime(tenancy);
    try {
      const handler = await load();
      if (tenancy?.all && tenancy.tenant !== undefined) {
        const { UsageError } = await import('../base/errors.js');
        throw new UsageError('--tenant and --all-tenants: give one of them', 'one tenant: --tenant ID; every tenant: --all-tenants');
      }
      if (tenancy?.all && !HANDLES_ALL_TENANTS.has(command.name())) {
        const capture = async () => {
          let text = '';
          const write = (chunk: unknown, _enc: BufferEncoding, cb: () => void) => {
            text += String(chunk);
            cb();
          };
          const stream = Object.assign(new (await import('node:stream')).Writable({ write }), { isTTY: false });
          return { output: await outputFor(rt.flags, stream), text: () => text };
        };
        status = await (await import('./all-tenants.js')).runForAllTenants(rt, capture, (r) => handler(r, command.opts(), command.args));
      } else status = await handler(rt, command.opts(), command.args);
    } catch (err) {
      status = rt.output.error(err);
    }
  };

  for (const spec of COMMANDS) spec.register(program, run);

  try {
    await program.parseAsync(io.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return ExitCode.OK;
      if (err.code === 'commander.help' && err.exitCode === 0) return ExitCode.OK;
      if (err.code === 'commander.executeSubCommandAsync') return err.exitCode;
      const { asksForJson, commandPath, noCommandError, usageErrorFrom } = await import('./usage.js');
      const args = io.argv.slice(2);
      const flags = globalFlags();
      const json = flags.json || asksForJson(args);
      if (err.code === 'commander.help') {
        // Help shown because no command was given: a usage error, so scripts notice; --json still gets its object.
        return json ? (await outputFor({ ...flags, json })).error(noCommandError(commandPath(program, args))) : ExitCode.USAGE;
      }
      return (await outputFor({ ...flags, json })).error(usageErrorFrom(err.code, err.message, commandPath(program, args)));
    }
    // A bad option value, from a spec's parser: reported like a handler's error (as JSON with --json).
    if (err instanceof KeyctlError) return (await outputFor(globalFlags())).error(err);
    throw err;
  }
  return status;
}
