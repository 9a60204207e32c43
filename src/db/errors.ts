/**
 * Turns driver errors into DatabaseErrors that name the client, host and port and say what to
 * check. Connection strings are shown with the password removed.
 */
import { DatabaseError, KeyctlError } from '../base/errors.js';
import { dialectFor, type DbEndpoint } from './dialects/index.js';

export type { DbEndpoint } from './dialects/index.js';
import { redactText } from './redact.js';

export { redactUrl } from './redact.js';

interface DriverError {
  code?: string;
  errno?: number;
  message?: string;
  name?: string;
}

export function translateDbError(err: unknown, ep: DbEndpoint, doing = 'connect to'): KeyctlError {
  if (err instanceof KeyctlError) return err;
  const translated = describeDbError(err, ep, doing);
  // Keep the driver's error for callers that decide on its code (retries); it is never printed.
  Object.defineProperty(translated, 'cause', { value: err, enumerable: false });
  return translated;
}

function describeDbError(err: unknown, ep: DbEndpoint, doing: string): KeyctlError {
  const e = (err ?? {}) as DriverError;
  const code = e.code ?? '';
  const where = ep.description;
  const dialect = dialectFor(ep.dialect);
  const checkServer = dialect.serverCheckHint(ep);
  const fixConfig = 'and database.connection in keyctl.yaml (or the environment variable it references)';
  switch (code) {
    case 'ECONNREFUSED':
      return new DatabaseError(`cannot ${doing} ${where}: connection refused`, `${checkServer},\n${fixConfig}`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new DatabaseError(`cannot ${doing} ${where}: host "${ep.host}" not found`, `check the host name ${fixConfig}`);
    case 'ETIMEDOUT':
    case 'ECONNRESET':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new DatabaseError(`cannot ${doing} ${where}: ${code}`, `${checkServer}; a firewall may be dropping the connection`);
  }
  switch (dialect.errorKind(code)) {
    case 'login-refused':
      return new DatabaseError(`${where} refused the login: ${firstLine(e.message)}`, `check the user and password ${fixConfig}`);
    case 'no-such-database':
      return new DatabaseError(
        `${where}: the database "${ep.database ?? '?'}" does not exist`,
        `${dialect.createDatabaseHint(ep)} or fix the name ${fixConfig}`,
      );
    case 'cannot-open':
      return new DatabaseError(`cannot open ${where}: ${firstLine(e.message)}`, 'check that the directory exists and is writable');
    case undefined:
      break;
  }
  if (e.name === 'KnexTimeoutError') {
    return new DatabaseError(`cannot ${doing} ${where}: timed out waiting for a connection`, `${checkServer},\n${fixConfig}`);
  }
  if (/Cannot open database because the directory does not exist/i.test(e.message ?? '')) {
    return new DatabaseError(`cannot open ${where}: its directory does not exist`, 'create the directory, or fix database.connection in keyctl.yaml');
  }
  return new DatabaseError(`${where}: ${firstLine(e.message ?? String(err))}`, code ? `driver error code ${code}` : undefined);
}

/** The driver message's first line, with any connection string in it masked. */
function firstLine(s: string | undefined): string {
  return redactText((s ?? '').split('\n')[0] ?? '');
}
