/** `keyctl dual-key`: no flags of its own; the handler is ../commands/dual-key.ts. */
import { defineCommand } from '../spec.js';

export const dualKey = defineCommand({
  name: 'dual-key',
  description: 'make the new version primary (new writes use it); the old one stays for decryption',
  options: (cmd) => cmd,
  handler: async () => (await import('../commands/dual-key.js')).run,
});
