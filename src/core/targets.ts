/**
 * Checks that the configured targets exist in the database before anything scans them, so a
 * typo in keyctl.yaml is reported as such rather than as a SQL error.
 */
import type { LoadedConfig } from '../config/load.js';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import { ConfigError } from '../base/errors.js';

function splitTable(name: string): { schema?: string; table: string } {
  const dot = name.indexOf('.');
  return dot < 0 ? { table: name } : { schema: name.slice(0, dot), table: name.slice(dot + 1) };
}

async function columnsOf(db: Db, tableName: string): Promise<Set<string> | null> {
  const { schema, table } = splitTable(tableName);
  const builder = schema ? db.knex.schema.withSchema(schema) : db.knex.schema;
  if (!(await builder.hasTable(table))) return null;
  const q = schema ? db.knex(table).withSchema(schema) : db.knex(table);
  const info = await q.columnInfo();
  return new Set(Object.keys(info));
}

export async function checkTargets(db: Db, config: LoadedConfig): Promise<void> {
  const problems: string[] = [];
  const file = config.file;
  for (const [i, t] of config.targets.entries()) {
    let cols: Set<string> | null;
    try {
      cols = await columnsOf(db, t.table);
    } catch (err) {
      throw translateDbError(err, db.endpoint, `inspect table ${t.table} in`);
    }
    if (!cols) {
      problems.push(`${file}: targets[${i}].table: table "${t.table}" does not exist in ${db.endpoint.description}`);
      continue;
    }
    if (!cols.has(t.primaryKey)) {
      problems.push(`${file}: targets[${i}].primaryKey: table "${t.table}" has no column "${t.primaryKey}"`);
    }
    for (const [j, c] of t.columns.entries()) {
      if (!cols.has(c)) problems.push(`${file}: targets[${i}].columns[${j}]: table "${t.table}" has no column "${c}"`);
    }
  }
  if (problems.length > 0) {
    throw new ConfigError(
      `the targets in ${file} do not match the database`,
      problems,
      'fix the table and column names under targets:, or check that keyctl points at the right database',
    );
  }
}
