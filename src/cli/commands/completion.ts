/**
 * `keyctl completion bash|zsh|fish`: a shell completion script for commands, their flags and the
 * choices of a flag. Commands and flags are written into the script from the specs, so it matches
 * the keyctl that printed it; runbook names and `--table` targets depend on the directory's
 * keyctl.yaml, so the script asks `keyctl completion --list runbooks|tables` for them as you type
 * (quietly: nothing when there is no config).
 */
import { existsSync } from 'node:fs';
import { Command, type CommandUnknownOpts } from '@commander-js/extra-typings';
import { UsageError } from '../../base/errors.js';
import type { CliRuntime } from '../runtime.js';
import type { CompletionOptions } from '../specs.js';

interface CommandFlags {
  /** `runbook run`, or '' for keyctl itself. */
  path: string;
  /** Every flag, long and short. */
  flags: string[];
  /** Flags that take a value. */
  valued: string[];
  /** Flags whose value is one of these. */
  choices: Array<[string, readonly string[]]>;
  subcommands: string[];
}

/** Flags whose value is a file or directory (the shell completes paths). */
const PATH_FLAGS = ['-c', '--config', '--out', '--recipient', '--backup', '--identity', '--file', '--pause-file'];

/** keyctl's commands and flags as the specs declare them (the global flags as main declares them). */
async function commandTree(): Promise<CommandFlags[]> {
  const { COMMANDS } = await import('../specs.js');
  const program = new Command('keyctl')
    .option('-c, --config <path>')
    .option('--json')
    .option('--no-color')
    .option('--actor <name>')
    .option('--log-timestamps')
    .option('-V, --version')
    .option('-h, --help');
  for (const spec of COMMANDS) spec.register(program, () => async () => undefined);
  const out: CommandFlags[] = [];
  const walk = (cmd: CommandUnknownOpts, path: string[]) => {
    const options = cmd.options.filter((o) => !o.hidden);
    const flags = options.flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f)));
    if (path.length > 0) flags.push('-h', '--help');
    out.push({
      path: path.join(' '),
      flags,
      valued: options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f))),
      choices: options.filter((o) => o.argChoices && o.long).map((o) => [o.long!, o.argChoices!]),
      subcommands: cmd.commands.map((c) => c.name()),
    });
    for (const sub of cmd.commands) walk(sub, [...path, sub.name()]);
  };
  walk(program, []);
  return out;
}

const q = (words: readonly string[]) => words.join(' ');

function bash(tree: CommandFlags[]): string {
  const valued = [...new Set(tree.flatMap((c) => c.valued))];
  const choices = tree.flatMap((c) => c.choices.map(([flag, values]) => `    ${flag}) COMPREPLY=($(compgen -W "${q(values)}" -- "$cur")); return ;;`));
  return `# keyctl completion for bash (and zsh through bashcompinit). Install:
#   keyctl completion bash > /etc/bash_completion.d/keyctl     (or: source <(keyctl completion bash) in ~/.bashrc)
_keyctl_list() {
  keyctl \${_keyctl_config:+--config "$_keyctl_config"} completion --list "$1" 2>/dev/null
}
_keyctl() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local kpath="" args=0 i word _keyctl_config=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in
      -c|--config) _keyctl_config="\${COMP_WORDS[i+1]}"; ((i++)); continue ;;
      ${valued.filter((f) => f !== '-c' && f !== '--config').join('|')}) ((i++)); continue ;;
      -*) continue ;;
    esac
    case "$kpath" in
${tree
  .filter((c) => c.subcommands.length > 0)
  .map((c) => `      "${c.path}") case "$word" in ${c.subcommands.join('|')}) kpath="\${kpath:+$kpath }$word"; continue ;; esac ;;`)
  .join('\n')}
    esac
    ((args++))
  done
  case "$prev" in
    ${PATH_FLAGS.join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --table) COMPREPLY=($(compgen -W "$(_keyctl_list tables)" -- "$cur")); return ;;
${[...new Set(choices)].join('\n')}
    ${valued.filter((f) => !PATH_FLAGS.includes(f) && f !== '--table' && !tree.some((c) => c.choices.some(([x]) => x === f))).join('|')}) return ;;
  esac
  local flags="" subcommands=""
  case "$kpath" in
${tree.map((c) => `    "${c.path}") flags="${q(c.flags)}"; subcommands="${q(c.subcommands)}" ;;`).join('\n')}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags ${q(tree[0]!.flags)}" -- "$cur"))
  elif [[ -n "$subcommands" ]]; then
    COMPREPLY=($(compgen -W "$subcommands" -- "$cur"))
  elif [[ "$kpath" == "runbook run" && $args -eq 0 ]]; then
    COMPREPLY=($(compgen -W "$(_keyctl_list runbooks)" -- "$cur"))
  elif [[ "$kpath" == "completion" && $args -eq 0 ]]; then
    COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"))
  fi
}
complete -o default -F _keyctl keyctl
`;
}

function zsh(tree: CommandFlags[]): string {
  return `#compdef keyctl
# keyctl completion for zsh. Install: keyctl completion zsh > "\${fpath[1]}/_keyctl" (or: source <(keyctl completion zsh) in ~/.zshrc)
autoload -U +X bashcompinit && bashcompinit
${bash(tree).replace(/^# .*\n# .*\n/, '')}`;
}

function fish(tree: CommandFlags[]): string {
  const lines = ['# keyctl completion for fish. Install: keyctl completion fish > ~/.config/fish/completions/keyctl.fish', 'complete -c keyctl -f'];
  const top = tree[0]!;
  for (const flag of top.flags) lines.push(`complete -c keyctl ${fishFlag(flag)}${top.valued.includes(flag) ? ' -r' : ''}`);
  for (const name of top.subcommands) lines.push(`complete -c keyctl -n __fish_use_subcommand -a ${name}`);
  for (const c of tree.slice(1)) {
    const words = c.path.split(' ');
    const cond = `__fish_seen_subcommand_from ${words.at(-1)}`;
    const noSub = c.subcommands.length ? `; and not __fish_seen_subcommand_from ${c.subcommands.join(' ')}` : '';
    for (const name of c.subcommands) lines.push(`complete -c keyctl -n '${cond}${noSub}' -a ${name}`);
    for (const flag of c.flags) {
      const choice = c.choices.find(([f]) => f === flag);
      const values =
        flag === '--table'
          ? ` -x -a '(keyctl completion --list tables 2>/dev/null)'`
          : choice
            ? ` -x -a '${q(choice[1])}'`
            : PATH_FLAGS.includes(flag)
              ? ' -r -F'
              : c.valued.includes(flag)
                ? ' -x'
                : '';
      lines.push(`complete -c keyctl -n '${cond}' ${fishFlag(flag)}${values}`);
    }
  }
  lines.push(`complete -c keyctl -n '__fish_seen_subcommand_from run' -a '(keyctl completion --list runbooks 2>/dev/null)'`);
  lines.push(`complete -c keyctl -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'`);
  return `${lines.join('\n')}\n`;
}

function fishFlag(flag: string): string {
  return flag.startsWith('--') ? `-l ${flag.slice(2)}` : `-s ${flag.slice(1)}`;
}

/** The names the script asks for as you type: runbooks, or the config's target tables. */
async function list(rt: CliRuntime, what: string): Promise<string[]> {
  const { locateConfig, loadConfig, resolveConfigPath } = await import('../../config/load.js');
  const { file } = locateConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd });
  const config = existsSync(file) ? loadConfig({ explicitPath: rt.flags.config, env: rt.env, cwd: rt.cwd }) : undefined;
  if (what === 'tables') return [...new Set((config?.targets ?? []).map((t) => t.table))];
  const { listRunbooks } = await import('../../runbook/load.js');
  return listRunbooks({ teamDir: config?.runbooks ? resolveConfigPath(config, config.runbooks) : undefined }).map((r) => r.name);
}

export async function run(rt: CliRuntime, opts: CompletionOptions, args: string[]): Promise<number> {
  if (opts.list) {
    let names: string[] = [];
    try {
      names = await list(rt, opts.list);
    } catch {
      // Completion must stay quiet: no config, or a broken one, completes nothing.
    }
    rt.output.text(names.map((n) => `${n}\n`).join(''));
    return 0;
  }
  const shell = args[0];
  const tree = await commandTree();
  const script = shell === 'bash' ? bash(tree) : shell === 'zsh' ? zsh(tree) : shell === 'fish' ? fish(tree) : undefined;
  if (script === undefined) throw new UsageError('keyctl completion needs a shell: bash, zsh or fish', 'e.g. source <(keyctl completion bash)');
  rt.output.text(script);
  return 0;
}
