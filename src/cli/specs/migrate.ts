/** `keyctl migrate`: flags and help; the handler is ../commands/migrate.ts. */
import type { Command } from '@commander-js/extra-typings';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd.option('--unlock', 'first release a migration lock left by a keyctl that died while migrating (only when no other keyctl runs)');

export type MigrateOptions = OptionsOf<typeof options>;

export const migrate = defineCommand({
  name: 'migrate',
  description: "create or upgrade keyctl's own tables (other commands do this automatically)",
  options,
  handler: async () => (await import('../commands/migrate.js')).run,
});
