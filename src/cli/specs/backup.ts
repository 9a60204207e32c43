/** `keyctl backup`: flags and help; the handler is ../commands/backup.ts. */
import type { Command } from '@commander-js/extra-typings';
import { collect } from '../parse.js';
import { defineCommand, type OptionsOf } from '../spec.js';

const options = (cmd: Command) =>
  cmd
    .option('--out <dir>', 'backup directory (default: backup.dir in keyctl.yaml, .keyctl/backups)')
    .option('--recipient <file>', 'armored OpenPGP public key to encrypt to; repeat for several (default: backup.recipients)', collect, [])
    .option('--if-configured', 'exit 0 without a backup when backup.recipients is empty (runbooks, shared scripts)');

export type BackupOptions = OptionsOf<typeof options>;

export const backup = defineCommand({
  name: 'backup',
  description: 'write an OpenPGP-encrypted backup of every non-retired key version, then prune old backups (cron-safe)',
  options,
  notes: 'See docs/backup.md for the backup format, retention, a crontab line and a systemd timer.',
  handler: async () => (await import('../commands/backup.js')).run,
});
