/** `keyctl verify`: flags and help; the handler is ../commands/verify.ts. */
import type { Command } from '@commander-js/extra-typings';
import { parsePositive } from '../parse.js';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd.option('--sample <n>', 'decrypt N random rows per target instead of all (the database still counts every value)', parsePositive('--sample'));

export type VerifyOptions = OptionsOf<typeof options>;

export const verify = defineCommand({
  name: 'verify',
  description: 'check that every value decrypts and is under the primary version; a pass moves the rotation on',
  options,
  handler: async () => (await import('../commands/verify.js')).run,
});
