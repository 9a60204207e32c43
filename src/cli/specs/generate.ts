/** `keyctl generate`: flags and help; the handler is ../commands/generate.ts. */
import type { Command } from '@commander-js/extra-typings';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd
    .option('--emergency', 'a key is compromised: mark it so, skip the waiting periods and the rollback window')
    .option('--compromised <version>', 'with --emergency: the compromised key (default: the current primary)')
    .option('--reason <text>', 'why (required with --emergency; recorded in the audit)');

export type GenerateOptions = OptionsOf<typeof options>;

export const generate = defineCommand({
  name: 'generate',
  description: 'open a rotation: create the next key version and publish it decrypt-only',
  options,
  examples: ['keyctl generate', 'keyctl generate --emergency --compromised v3 --reason "INC-1234: key in a log"'],
  notes:
    'With a routine rotation open, --emergency naming its old key turns that rotation into an emergency one;\n' +
    'naming its new key is refused with the way forward (docs/rotation.md, "Emergency rotations").',
  handler: async () => (await import('../commands/generate.js')).run,
});
