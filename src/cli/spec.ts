/**
 * A command's spec: its name, help, options (with typed parsers), examples and where its handler
 * lives, in one place. The handler's options type comes from the commander calls that declare the
 * options (`OptionsOf`), and `defineCommand` checks that the handler accepts exactly that, so no
 * handler re-declares or casts its flags.
 *
 * Spec modules (src/cli/specs/) import only ./parse.js and types: `keyctl --help` and `--version`
 * load no Knex, driver, keystore or crypto code. The handler is imported when its command runs.
 * They take commander's types from `@commander-js/extra-typings` and make options with
 * `cmd.createOption`, so they load no module of their own but ./parse.js.
 */
import type { Command, CommandUnknownOpts, OptionValues } from '@commander-js/extra-typings';
import type { CliRuntime } from './runtime.js';

/** A command's handler: the exit status it returns is the process's. */
export type Handler<O> = (rt: CliRuntime, opts: O, args: string[]) => Promise<number>;

/** The options a spec's `options` function declares, as the handler receives them. */
export type OptionsOf<F extends (cmd: Command) => Command<unknown[], OptionValues>> = ReturnType<ReturnType<F>['opts']>;

/**
 * How main runs a handler: builds the runtime from the global flags, imports the handler, turns
 * a thrown error into a message and an exit status.
 */
export type RunAction = <O>(command: { opts(): O; readonly args: string[]; name(): string }, load: () => Promise<Handler<O>>) => () => Promise<void>;

export interface CommandSpec {
  readonly name: string;
  /** Add this command (and its subcommands) to `parent`. */
  register(parent: CommandUnknownOpts, run: RunAction): void;
}

export interface CommandDefinition<A extends unknown[], O extends OptionValues> {
  name: string;
  description: string;
  /** Arguments and options, as commander calls (`cmd => cmd.option(…)`); `cmd => cmd` for none. */
  options: (cmd: Command) => Command<A, O>;
  /** 1–3 command lines shown under "Examples:", the end of the command's help (a test runs their flags against the help). */
  examples?: string[];
  /** A paragraph after the options, before the examples. */
  notes?: string;
  /** The handler, imported only when the command runs. None for a group of subcommands. */
  handler?: () => Promise<Handler<NoInfer<O>>>;
  subcommands?: CommandSpec[];
}

/** Help text after the options: the notes, then the examples (so help ends with what to type). */
export function helpAfter(examples: string[] | undefined, notes: string | undefined): string {
  const parts = [notes ?? '', examples?.length ? `Examples:\n${examples.map((e) => `  ${e}`).join('\n')}` : ''].filter(Boolean);
  return parts.length ? `\n${parts.join('\n\n')}` : '';
}

export function defineCommand<A extends unknown[], O extends OptionValues>(d: CommandDefinition<A, O>): CommandSpec {
  return {
    name: d.name,
    register(parent, run) {
      // What parent.command(name) does, with a command whose options start empty (so their types can be inferred).
      const cmd = d.options(parent.createCommand(d.name).copyInheritedSettings(parent).description(d.description));
      const after = helpAfter(d.examples, d.notes);
      if (after) cmd.addHelpText('after', after);
      for (const sub of d.subcommands ?? []) sub.register(cmd, run);
      if (d.handler) cmd.action(run(cmd, d.handler));
      parent.addCommand(cmd);
    },
  };
}
