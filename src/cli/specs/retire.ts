/** `keyctl retire`: flags and help; the handler is ../commands/retire.ts. */
import type { Command } from '@commander-js/extra-typings';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd.option('--force', 'retire before the rollback window has passed (needs --reason)').option('--reason <text>', 'why (recorded in the audit)');

export type RetireOptions = OptionsOf<typeof options>;

export const retire = defineCommand({
  name: 'retire',
  description: "after the rollback window: destroy (or archive) the old version's key and close the rotation",
  options,
  handler: async () => (await import('../commands/retire.js')).run,
});
