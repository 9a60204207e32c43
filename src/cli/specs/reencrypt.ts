/** `keyctl reencrypt`: flags, their parsers and help; the handler is ../commands/reencrypt.ts. */
import { Option, type Command } from '@commander-js/extra-typings';
import { ExitCode } from '../../base/exit-codes.js';
import { parseInteger, parsePositive, parseSeconds, parseShard, shownAsBefore } from '../parse.js';
import { defineCommand, type OptionsOf } from '../spec.js';

/** --chunk-time when not given: the resume line leaves it out then. */
export const DEFAULT_CHUNK_TIME = 0.5;

const options = (cmd: Command) =>
  cmd
    .option('--dry-run', 'decrypt and re-encrypt in memory only: report what would be rewritten and what fails')
    .option('--batch-size <n>', 'a fixed number of rows per batch (default: sized to --chunk-time)', parsePositive('--batch-size'))
    .addOption(
      new Option('--chunk-time <seconds>', 'target time per batch; batch size adapts to it')
        .argParser(parseSeconds('--chunk-time', 60))
        .default(DEFAULT_CHUNK_TIME, shownAsBefore(DEFAULT_CHUNK_TIME)),
    )
    .option('--max-rate <rows>', 'at most this many rows per second', parsePositive('--max-rate'))
    .option('--sleep <ms>', 'pause this long after every batch', parseInteger('--sleep', { min: 0 }))
    .option('--pause-file <path>', 'pause while this file exists (touch it to pause, remove it to resume)')
    .option(
      '--max-load <n>',
      'wait while the database is busier than this (PostgreSQL: other active backends; MySQL: Threads_running)',
      parsePositive('--max-load'),
    )
    .option('--table <name>', 'only this target table')
    .option('--shard <I/N>', 'only shard I of N (integer primary keys); run N processes, e.g. a Kubernetes Indexed Job', parseShard('--shard'))
    .option(
      '--crypto-workers <n>',
      'worker threads for decrypt/encrypt, overlapping the database work (0: none; default: one per CPU, at most 4)',
      parseInteger('--crypto-workers', { min: 0 }),
    );

export type ReencryptOptions = OptionsOf<typeof options>;

export const reencrypt = defineCommand({
  name: 'reencrypt',
  description: 'rewrite every value not under the primary version; resumes where it stopped',
  options,
  notes: `Ctrl-C (or SIGTERM) finishes the current batch, saves the cursor and exits ${ExitCode.INTERRUPTED}; run the same command to resume.`,
  handler: async () => (await import('../commands/reencrypt.js')).run,
});
