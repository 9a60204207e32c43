/** `keyctl purge`: flags and help; the handler is ../commands/purge.ts. */
import type { Command } from '@commander-js/extra-typings';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) => cmd.option('--dry-run', 'say what would be destroyed, destroy nothing');

export type PurgeOptions = OptionsOf<typeof options>;

export const purge = defineCommand({
  name: 'purge',
  description: 'destroy retired keys whose retention (policy.retiredKeyRetentionDays) has passed, after checking every value decrypts without them',
  options,
  examples: ['keyctl purge --dry-run', 'keyctl purge          # e.g. monthly from cron; see docs/rotation.md, "Destroying key material"'],
  handler: async () => (await import('../commands/purge.js')).run,
});
