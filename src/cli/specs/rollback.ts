/** `keyctl rollback`: flags and help; the handler is ../commands/rollback.ts. */
import type { Command } from '@commander-js/extra-typings';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd.option('--reason <text>', 'why (recorded in the audit)').option('--force', 'allow restoring a key marked compromised (needs --reason)');

export type RollbackOptions = OptionsOf<typeof options>;

export const rollback = defineCommand({
  name: 'rollback',
  description: 'make the old version primary again; values under the new one are re-encrypted back',
  options,
  handler: async () => (await import('../commands/rollback.js')).run,
});
