/** What the dialect classes share: identifier quoting, URL endpoints, error codes. */
import { UsageError } from '../../base/errors.js';
import { codeOf, isRetryable as isTransientNetworkFailure } from '../../base/retry.js';
import type { DatabaseConfig } from '../../config/schema.js';
import { redactUrl } from '../redact.js';
import type { Dialect, DbEndpoint, PkValue, RawCondition } from './types.js';

/** Knex's identifier quoting: each dotted part wrapped in `quote`, the quote itself doubled. */
export function quoteWith(quote: string, name: string): string {
  return name
    .split('.')
    .map((part) => (part === '*' ? part : `${quote}${part.split(quote).join(quote + quote)}${quote}`))
    .join('.');
}

export function driverCode(err: unknown): string {
  return String((err as { code?: unknown } | null)?.code ?? '');
}

/** A driver code (looking through keyctl's wrapper at its cause) in `codes`, or a network failure. */
export function retryableWith(codes: ReadonlySet<string>, err: unknown): boolean {
  return codes.has(codeOf(err)) || isTransientNetworkFailure(err);
}

/** Endpoint of a server dialect from its URL, refusing a value that is not one or has another scheme. */
export function serverEndpoint(
  cfg: DatabaseConfig,
  o: { dialect: Dialect; label: string; schemes: readonly string[]; defaultPort: number; urlExample: string },
): DbEndpoint {
  let url: URL;
  try {
    url = new URL(cfg.connection);
  } catch {
    throw new UsageError(
      `database.connection for client "${cfg.client}" must be a URL, found a value that is not one`,
      `use ${o.urlExample}, e.g. connection: \${DATABASE_URL};\npercent-encode @ # / ? % : in the user name or password (e.g. encodeURIComponent)`,
    );
  }
  // The drivers decode these parts; a stray % would otherwise end in an internal error.
  for (const [part, value] of [
    ['user name', url.username],
    ['password', url.password],
    ['database name', url.pathname],
  ] as const) {
    try {
      decodeURIComponent(value);
    } catch {
      throw new UsageError(
        `database.connection: the ${part} in the URL holds a malformed percent-encoding (a % not followed by two hex digits, %XX)`,
        'write a literal % as %25 (percent-encode the part, e.g. with encodeURIComponent)',
      );
    }
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (!o.schemes.includes(scheme)) {
    throw new UsageError(
      `database.connection has scheme "${scheme}" but database.client is "${cfg.client}"`,
      `use a ${o.schemes[0]}:// URL, or set database.client to match the URL`,
    );
  }
  const host = url.hostname || 'localhost';
  const port = url.port ? Number(url.port) : o.defaultPort;
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || undefined;
  return {
    dialect: o.dialect,
    description: `${o.label} at ${host}:${port}${database ? `, database ${database}` : ''} (${redactUrl(cfg.connection)})`,
    host,
    port,
    ...(database ? { database } : {}),
  };
}

/** `(a, b) > (?, ?)`: a row-value comparison, for dialects whose planner walks an index with it. */
export function rowValueAfter(columns: readonly string[], after: readonly PkValue[]): RawCondition {
  const marks = (mark: string) => columns.map(() => mark).join(', ');
  return { sql: `(${marks('??')}) > (${marks('?')})`, bindings: [...columns, ...after] };
}

/**
 * `a > ? OR (a = ? AND b > ?)`: the same order without row values, for planners that take a
 * row-value comparison for a full index scan (MariaDB 10.11 does: EXPLAIN shows type `index`
 * for `(a, b) > (?, ?)` and `range` for this form).
 */
export function expandedAfter(columns: readonly string[], after: readonly PkValue[]): RawCondition {
  const terms: string[] = [];
  const bindings: Array<string | number | bigint> = [];
  for (let k = 0; k < columns.length; k++) {
    const parts: string[] = [];
    for (let e = 0; e < k; e++) {
      parts.push('?? = ?');
      bindings.push(columns[e]!, after[e]!);
    }
    parts.push('?? > ?');
    bindings.push(columns[k]!, after[k]!);
    terms.push(parts.length === 1 ? parts[0]! : `(${parts.join(' AND ')})`);
  }
  return { sql: `(${terms.join(' OR ')})`, bindings };
}

/** The key columns of a compare-and-set request, in key order. */
export function keyColumnsOf(pk: string | readonly string[]): readonly string[] {
  return typeof pk === 'string' ? [pk] : pk;
}
