/**
 * The one table of keyctl's exit codes. Scripts and cron jobs depend on these numbers:
 * never renumber an entry, only add new ones. README.md lists them (a test keeps it in step).
 */
export const ExitCode = {
  /** The command did what was asked. */
  OK: 0,
  /** A bug in keyctl: an unexpected error. */
  INTERNAL: 1,
  /** Bad command line or bad/missing configuration. */
  USAGE: 2,
  /** A guard refused the step (wrong phase, delay not elapsed, read-only keystore, …). */
  REFUSED: 3,
  /** A check found problems: verify failed, or `status --check` found an unsafe state (README: problem codes). */
  PROBLEMS_FOUND: 4,
  /** The keystore could not be read or written, or holds invalid keys. */
  KEYSTORE: 5,
  /** The database could not be reached or refused a statement. */
  DATABASE: 6,
  /** Stopped by a signal after saving progress; running the same command again resumes. */
  INTERRUPTED: 7,
  /** A backup could not be written, or a backup or recovery test failed. */
  BACKUP: 8,
  /** Another `keyctl backup` holds the lock on the backup directory. */
  LOCKED: 9,
  /** An OpenPGP key is unusable: invalid recipient, wrong identity or passphrase. */
  PGP_KEY: 10,
} as const;

export type ExitCodeName = keyof typeof ExitCode;

/** Human descriptions, in table order, for help text and docs. */
export const EXIT_CODE_DESCRIPTIONS: ReadonlyArray<[ExitCodeName, string]> = [
  ['OK', 'success'],
  ['INTERNAL', 'internal error (a bug in keyctl; please report it)'],
  ['USAGE', 'usage or configuration error'],
  ['REFUSED', 'refused by a guard (phase, delay, read-only keystore, existing file)'],
  ['PROBLEMS_FOUND', 'problems found (verification failed; status --check: any problem, see "Monitoring")'],
  ['KEYSTORE', 'keystore unreachable, unwritable or holding invalid keys'],
  ['DATABASE', 'database unreachable or a statement failed'],
  ['INTERRUPTED', 'interrupted after saving progress; run the same command again to resume'],
  ['BACKUP', 'backup failed (output not writable) or a backup or recovery test failed'],
  ['LOCKED', 'another backup run holds the lock (overlapping cron runs)'],
  ['PGP_KEY', 'unusable OpenPGP key: invalid recipient, wrong identity or passphrase'],
];
