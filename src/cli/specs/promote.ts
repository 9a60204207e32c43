/** `keyctl promote`: flags and help; the handler is ../commands/promote.ts. */
import type { Command } from '@commander-js/extra-typings';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd.option('--force', 'promote after a sampled verify (needs --reason)').option('--reason <text>', 'why (recorded in the audit)');

export type PromoteOptions = OptionsOf<typeof options>;

export const promote = defineCommand({
  name: 'promote',
  description: 'remove the old version from the published keyring (kept archived for rollback); needs a full verify that passed',
  options,
  handler: async () => (await import('../commands/promote.js')).run,
});
