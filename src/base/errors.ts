/**
 * Typed errors. Core code throws these; the CLI layer turns them into a message, a hint and
 * the exit code named here. Messages never contain key material or plaintext of encrypted fields.
 */
import { ExitCode, type ExitCodeName } from './exit-codes.js';

/** The stable, machine-readable kinds of error (`--json` output's `error.kind`). */
export type ErrorKind =
  | 'usage'
  | 'config'
  | 'refused'
  | 'keystore'
  | 'keystore-read-only'
  | 'database'
  | 'problems-found'
  | 'backup'
  | 'locked'
  | 'pgp-key'
  | 'io'
  | 'internal';

export class KeyctlError extends Error {
  readonly exitCode: ExitCodeName;
  /** One or more lines saying what to do about it. */
  readonly hint: string | undefined;
  /** A stable machine-readable kind for --json output. */
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, exitCode: ExitCodeName, message: string, hint?: string) {
    super(message);
    this.name = new.target.name;
    this.kind = kind;
    this.exitCode = exitCode;
    this.hint = hint;
  }

  get exitStatus(): number {
    return ExitCode[this.exitCode];
  }
}

export class UsageError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('usage', 'USAGE', message, hint);
  }
}

export class ConfigError extends KeyctlError {
  /** Individual problems, each already naming file and key path. */
  readonly problems: string[];
  constructor(message: string, problems: string[] = [], hint?: string) {
    super('config', 'USAGE', message, hint);
    this.problems = problems;
  }
}

export class RefusedError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('refused', 'REFUSED', message, hint);
  }
}

export class KeystoreError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('keystore', 'KEYSTORE', message, hint);
  }
}

/** A check-and-set write lost: someone else changed the document since keyctl read it (read again and retry). */
export class KeystoreConflictError extends KeystoreError {}

/** The keystore is read-only (e.g. environment variables) and a command needed to write keys. */
export class KeystoreReadOnlyError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('keystore-read-only', 'REFUSED', message, hint);
  }
}

export class DatabaseError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('database', 'DATABASE', message, hint);
  }
}

export class ProblemsFoundError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('problems-found', 'PROBLEMS_FOUND', message, hint);
  }
}

/** A backup could not be written, read or trusted (not writable, missing, corrupted, too old). */
export class BackupError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('backup', 'BACKUP', message, hint);
  }
}

/** Another run holds a lock keyctl needs. */
export class LockedError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('locked', 'LOCKED', message, hint);
  }
}

/** An OpenPGP key given to keyctl cannot be used (recipient or identity). */
export class PgpKeyError extends KeyctlError {
  constructor(message: string, hint?: string) {
    super('pgp-key', 'PGP_KEY', message, hint);
  }
}
