/**
 * Which columns of a table hold bytes (PostgreSQL `bytea`, SQLite `BLOB`, MySQL/MariaDB
 * `BINARY`/`VARBINARY`/`*BLOB`): their values are keyctl's binary layout (docs/format.md, "Binary
 * values"), counted and compared as bytes. Read from the schema once per table and process.
 */
import type { Db } from './connect.js';
import { translateDbError } from './errors.js';

const BINARY_TYPE = /^(bytea|blob|tinyblob|mediumblob|longblob|binary|varbinary)\b/i;
const cache = new WeakMap<Db, Map<string, Promise<Set<string>>>>();

export function binaryColumns(db: Db, table: string): Promise<Set<string>> {
  let byTable = cache.get(db);
  if (!byTable) {
    byTable = new Map();
    cache.set(db, byTable);
  }
  let found = byTable.get(table);
  if (!found) {
    const dot = table.indexOf('.');
    const q = dot < 0 ? db.knex(table) : db.knex(table.slice(dot + 1)).withSchema(table.slice(0, dot));
    found = q.columnInfo().then(
      (info) => new Set(Object.entries(info).flatMap(([name, c]) => (BINARY_TYPE.test(String((c as { type?: unknown }).type ?? '')) ? [name] : []))),
      (err: unknown) => {
        byTable!.delete(table);
        throw translateDbError(err, db.endpoint, `inspect table ${table} in`);
      },
    );
    byTable.set(table, found);
  }
  return found;
}
