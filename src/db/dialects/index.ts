/** The dialects keyctl supports, by config name and by connection URL. */
import { UsageError } from '../../base/errors.js';
import { MysqlDialect } from './mysql.js';
import { PgDialect } from './pg.js';
import { SqliteDialect } from './sqlite.js';
import type { Dialect, SqlDialect } from './types.js';

export type { CasBatch, CasPlan, CasRequest, DbEndpoint, DbErrorKind, Dialect, PkValue, RawCondition, RowKey, SqlDialect } from './types.js';
export { MysqlDialect, PgDialect, SqliteDialect };

const DIALECTS: Record<Dialect, SqlDialect> = {
  sqlite: new SqliteDialect(),
  pg: new PgDialect(),
  mysql: new MysqlDialect(),
};

export function dialectFor(name: Dialect): SqlDialect {
  return DIALECTS[name];
}

/** The dialect a connection string selects: a URL by its scheme, anything else is a SQLite file path. */
export function dialectForConnection(connection: string): SqlDialect {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(connection)?.[1];
  if (scheme === undefined) return DIALECTS.sqlite;
  const match = Object.values(DIALECTS).find((d) => d.urlSchemes.includes(scheme.toLowerCase()));
  if (!match) {
    const known = Object.values(DIALECTS).flatMap((d) => d.urlSchemes.slice(0, 1).map((s) => `${s}://`));
    throw new UsageError(`unsupported database URL scheme in "${scheme}://…"`, `use ${known.join(', ')} or a SQLite file path`);
  }
  return match;
}
