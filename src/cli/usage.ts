/**
 * commander's own usage errors (unknown command or option, missing argument, bad choice, too many
 * arguments) in keyctl's format: `keyctl: error: …` then `keyctl: hint: …` lines, and with --json
 * one JSON object like any other error. commander prints nothing itself (main silences it); main
 * imports this module only when such an error happens.
 */
import { UsageError } from '../base/errors.js';

/** Words people type for a command keyctl does not have, and where to go instead. */
const NOT_COMMANDS: Readonly<Record<string, string>> = {
  rotate:
    'a rotation is several steps: start one with `keyctl generate` (then dual-key, reencrypt, verify, promote, retire), or let `keyctl runbook run routine-rotation` walk you through them',
};

/** A command as far as this module needs it (commander's Command). */
export interface CommandTree {
  name(): string;
  readonly commands: readonly CommandTree[];
}

/** keyctl's global options that take a value (their value is not a command name). */
const GLOBAL_WITH_VALUE = new Set(['-c', '--config', '--actor']);

/** The subcommand names in `args` (argv after the script), as far as they name commands. */
export function commandPath(program: CommandTree, args: readonly string[]): string[] {
  const path: string[] = [];
  let at = program;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') break;
    if (arg.startsWith('-')) {
      if (at === program && GLOBAL_WITH_VALUE.has(arg)) i++;
      continue;
    }
    const sub = at.commands.find((c) => c.name() === arg);
    if (!sub) break;
    path.push(arg);
    at = sub;
  }
  return path;
}

/** Whether `--json` was asked for (commander may not have parsed it yet when the error came). */
export function asksForJson(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).includes('--json');
}

/** No command given (commander has shown the help on stderr). */
export function noCommandError(path: readonly string[]): UsageError {
  return new UsageError('no command given', `run \`${['keyctl', ...path].join(' ')} --help\` for the commands`);
}

/** commander's message (`error: unknown option '--x'\n(Did you mean --y?)`) as a UsageError with hints. */
export function usageErrorFrom(code: string, commanderMessage: string, path: readonly string[]): UsageError {
  const [first = '', ...rest] = commanderMessage.split('\n');
  const message = first.replace(/^error: /, '');
  const similar = /^\(Did you mean (?:one of )?(.*)\?\)$/.exec(rest.join(' ').trim())?.[1]?.split(', ') ?? [];
  const here = ['keyctl', ...path].join(' ');
  const hints: string[] = [];
  if (code === 'commander.unknownCommand') {
    const name = /'(.*)'/.exec(message)?.[1] ?? '';
    const instead = path.length === 0 ? NOT_COMMANDS[name] : undefined;
    if (instead) hints.push(instead);
    else if (similar.length) hints.push(`did you mean ${similar.map((s) => `\`${here} ${s}\``).join(' or ')}?`);
    hints.push(`run \`${here} --help\` for the commands`);
  } else {
    if (similar.length) hints.push(`did you mean ${similar.join(' or ')}?`);
    hints.push(`run \`${here} --help\` for ${path.length ? 'its options' : 'usage'}`);
  }
  return new UsageError(message, hints.join('\n'));
}
