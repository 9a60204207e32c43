/** `keyctl recover-test`: flags and help; the handler is ../commands/recover-test.ts. */
import { Option, type Command } from '@commander-js/extra-typings';
import { parsePositive, shownAsBefore } from '../parse.js';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd
    .option('--backup <file>', 'the backup to test (default: the newest in backup.dir)')
    .option('--identity <file>', 'armored OpenPGP secret key of a recipient (gpg --armor --export-secret-keys)')
    .option('--passphrase-env <var>', "environment variable holding the identity's passphrase")
    .addOption(
      new Option('--sample <n>', 'rows per target decrypted with the recovered keys').argParser(parsePositive('--sample')).default(20, shownAsBefore(20)),
    );

export type RecoverTestOptions = OptionsOf<typeof options>;

export const recoverTest = defineCommand({
  name: 'recover-test',
  description: 'prove a backup restores access: decrypt it, check every key and version in use, decrypt sample rows with it',
  options,
  handler: async () => (await import('../commands/recover-test.js')).run,
});
