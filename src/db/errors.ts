/**
 * Turns driver errors into DatabaseErrors that name the client, host and port and say what to
 * check. Connection strings are shown with the password removed.
 */
import { DatabaseError, KeyctlError } from '../base/errors.js';
import type { Dialect } from './adapter.js';

export interface DbEndpoint {
  dialect: Dialect;
  /** e.g. "PostgreSQL at 127.0.0.1:5432, database test" or "SQLite file /x/keyctl.db" */
  description: string;
  host?: string;
  port?: number;
  database?: string;
}

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
  const checkServer =
    ep.dialect === 'pg'
      ? `check that PostgreSQL is running and reachable: pg_isready -h ${ep.host} -p ${ep.port}`
      : ep.dialect === 'mysql'
        ? `check that MySQL/MariaDB is running and reachable: mysqladmin -h ${ep.host} -P ${ep.port} ping`
        : 'check the path in database.connection';
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
    case '28P01':
    case '28000':
    case 'ER_ACCESS_DENIED_ERROR':
    case 'ER_DBACCESS_DENIED_ERROR':
      return new DatabaseError(`${where} refused the login: ${firstLine(e.message)}`, `check the user and password ${fixConfig}`);
    case '3D000':
    case 'ER_BAD_DB_ERROR':
      return new DatabaseError(
        `${where}: the database "${ep.database ?? '?'}" does not exist`,
        ep.dialect === 'pg' ? `create it (createdb -h ${ep.host} ${ep.database ?? ''}) or fix the name ${fixConfig}` : `create it (CREATE DATABASE ${ep.database ?? ''}) or fix the name ${fixConfig}`,
      );
    case 'SQLITE_CANTOPEN':
      return new DatabaseError(`cannot open ${where}: ${firstLine(e.message)}`, 'check that the directory exists and is writable');
  }
  if (e.name === 'KnexTimeoutError') {
    return new DatabaseError(`cannot ${doing} ${where}: timed out waiting for a connection`, `${checkServer},\n${fixConfig}`);
  }
  if (/Cannot open database because the directory does not exist/i.test(e.message ?? '')) {
    return new DatabaseError(`cannot open ${where}: its directory does not exist`, 'create the directory, or fix database.connection in keyctl.yaml');
  }
  return new DatabaseError(`${where}: ${firstLine(e.message ?? String(err))}`, code ? `driver error code ${code}` : undefined);
}

function firstLine(s: string | undefined): string {
  return (s ?? '').split('\n')[0] ?? '';
}

/** Remove a password from a URL for display. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '****';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:****@');
  }
}
