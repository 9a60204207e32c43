/**
 * `keyctl runbook list | run NAME`: flags and help. The handlers are `list` and `run` in
 * ../commands/runbook.ts.
 */
import type { Command } from '@commander-js/extra-typings';
import { defineCommand, type OptionsOf } from '../spec.js';

const listOptions = (cmd: Command) => cmd.option('--file <path>', 'also a runbook file of your own');

const runOptions = (cmd: Command) =>
  cmd
    .argument('<name>', 'runbook name (see `keyctl runbook list`)')
    .option('--file <path>', 'run this runbook file instead of one found by name')
    .option('--dry-run', 'print the plan (done, next and pending steps) without doing anything')
    .option('-y, --yes', 'run check, command and wait steps without asking (for scripts); confirm steps still need a terminal')
    .option('--set <name=value...>', 'a runbook input, e.g. --set incident=INC-1234 (asked for when missing)');

export type RunbookListOptions = OptionsOf<typeof listOptions>;
export type RunbookRunOptions = OptionsOf<typeof runOptions>;

export const runbook = defineCommand({
  name: 'runbook',
  description: 'follow a rotation step by step: checks, commands and confirmations from runbooks/*.yaml, resumable by anyone',
  options: (cmd) => cmd,
  examples: [
    'keyctl runbook list',
    'keyctl runbook run routine-rotation --dry-run',
    'keyctl runbook run routine-rotation',
    'keyctl runbook run key-recovery-test --yes --set identity=/secure/recovery.asc   # from cron',
  ],
  subcommands: [
    defineCommand({
      name: 'list',
      description: "the runbooks shipped with keyctl and those of the config's runbooks: directory",
      options: listOptions,
      handler: async () => (await import('../commands/runbook.js')).list,
    }),
    defineCommand({
      name: 'run',
      description: 'run a runbook from the first step not yet done for the current rotation',
      options: runOptions,
      handler: async () => (await import('../commands/runbook.js')).run,
    }),
  ],
});
