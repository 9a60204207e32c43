/** `keyctl init`: flags and help; the handler is ../commands/init.ts. */
import { Option, type Command } from '@commander-js/extra-typings';
import { parseInteger, shownAsBefore } from '../parse.js';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd
    .option('--demo', 'also create a customers table of encrypted sample data, declared as a target')
    .addOption(
      new Option('--rows <n>', 'rows of demo data (with --demo)')
        .argParser(parseInteger('--rows', { hint: 'e.g. keyctl init --demo --rows 1000' }))
        .default(1000, shownAsBefore(1000)),
    )
    .option('--key-from-env <VAR>', 'adopt the existing base64 key in environment variable VAR as v1 instead of generating one')
    .option(
      '--database <url-or-path>',
      "database.connection to write: a SQLite file (default ./keyctl.db) or a postgres:// or mysql:// URL; use '${VAR}' to keep secrets out of the file",
    )
    .option('--keyring <name>', 'keyring name (default: default)')
    .option('-f, --force', 'overwrite an existing keyctl.yaml (keys are never overwritten); with --demo, recreate the customers table')
    .option(
      '--existing-config',
      'keep the keyctl.yaml already there (e.g. written for an AWS or Vault keystore): create or adopt the keyring in its keystore and prepare its database',
    );

export type InitOptions = OptionsOf<typeof options>;

export const init = defineCommand({
  name: 'init',
  description: 'write a working keyctl.yaml (SQLite + file keystore) and create key v1',
  options,
  examples: [
    'keyctl init --demo --rows 1000',
    "KEY=$(cat old.key) keyctl init --key-from-env KEY --database '${DATABASE_URL}'",
    'keyctl init --existing-config          # keyctl.yaml names a vault or aws-secrets-manager keystore',
  ],
  handler: async () => (await import('../commands/init.js')).run,
});
