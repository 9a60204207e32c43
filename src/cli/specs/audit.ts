/** `keyctl audit`: flags and help; the handler is ../commands/audit.ts. */
import { Option, type Command } from '@commander-js/extra-typings';
import { ExitCode } from '../../base/exit-codes.js';
import { parseInteger } from '../parse.js';
import { defineCommand, type OptionsOf } from '../spec.js';

const FORMATS: readonly ['table', 'json', 'markdown'] = ['table', 'json', 'markdown'];

const options = (cmd: Command) =>
  cmd
    .option('--rotation <id>', 'this rotation (default: the open one, else the latest)', parseInteger('--rotation', { expects: 'a rotation id (a number)' }))
    .option('--all', "the keyring's whole history")
    .addOption(new Option('--format <format>', 'output format').choices(FORMATS).default('table'))
    .option('--verify', `check the hash chain: exit ${ExitCode.PROBLEMS_FOUND} if a row was edited, deleted or inserted outside keyctl`);

export type AuditOptions = OptionsOf<typeof options>;

export const audit = defineCommand({
  name: 'audit',
  description: 'print the history of a rotation as evidence, or check the audit chain',
  options,
  handler: async () => (await import('../commands/audit.js')).run,
});
