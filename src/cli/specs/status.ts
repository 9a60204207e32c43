/** `keyctl status`: flags and help; the handler is ../commands/status.ts. */
import type { Command } from '@commander-js/extra-typings';
import { ExitCode } from '../../base/exit-codes.js';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd.option('--check', `exit ${ExitCode.PROBLEMS_FOUND} when the rotation is overdue or unparseable values exist (for monitoring)`);

export type StatusOptions = OptionsOf<typeof options>;

export const status = defineCommand({
  name: 'status',
  description: 'show key versions, the open rotation, and how many values each key version protects',
  options,
  handler: async () => (await import('../commands/status.js')).run,
});
