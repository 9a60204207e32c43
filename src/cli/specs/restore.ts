/** `keyctl restore`: flags and help; the handler is ../commands/restore.ts. */
import type { Command } from '@commander-js/extra-typings';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd
    .option('--backup <file>', 'the backup file')
    .option('--identity <file>', 'armored OpenPGP secret key of a recipient')
    .option('--passphrase-env <var>', "environment variable holding the identity's passphrase")
    .option('-y, --yes', 'do not ask for confirmation (needed without a terminal)')
    .option('--allow-unknown', 'also restore key versions the database registry does not know (needs --reason; audited)')
    .option('--reason <text>', 'why (recorded in the audit)');

export type RestoreOptions = OptionsOf<typeof options>;

export const restore = defineCommand({
  name: 'restore',
  description: 'put key versions from a backup back into the keystore (never overwrites a different key)',
  options,
  handler: async () => (await import('../commands/restore.js')).run,
});
