/**
 * Checks that the configured targets exist in the database before anything scans them, so a
 * typo in keyctl.yaml is reported as such rather than as a SQL error.
 */
import type { LoadedConfig } from '../config/load.js';
import type { Db } from '../db/connect.js';
import { translateDbError } from '../db/errors.js';
import { ConfigError } from '../base/errors.js';
import { keyColumns } from '../reencrypt/scan.js';
import { templateColumns } from '../crypto/context.js';
import { binaryColumns } from '../db/columns.js';

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
    if (typeof t.primaryKey === 'string') {
      if (!cols.has(t.primaryKey)) problems.push(`${file}: targets[${i}].primaryKey: table "${t.table}" has no column "${t.primaryKey}"`);
    } else {
      for (const [j, k] of t.primaryKey.entries()) {
        if (!cols.has(k)) problems.push(`${file}: targets[${i}].primaryKey[${j}]: table "${t.table}" has no column "${k}"`);
      }
    }
    for (const [j, c] of t.columns.entries()) {
      if (!cols.has(c)) problems.push(`${file}: targets[${i}].columns[${j}]: table "${t.table}" has no column "${c}"`);
    }
    if (config.tenancy && !cols.has(config.tenancy.column))
      problems.push(
        `${file}: tenancy.column: table "${t.table}" (targets[${i}]) has no column "${config.tenancy.column}"; every target table needs it to tell its tenants apart`,
      );
    // Binary columns take the binary layout alone: not Fernet, row context or a blind index (yet).
    const binary = await binaryColumns(db, t.table);
    for (const [j, c] of t.columns.entries()) {
      if (!binary.has(c)) continue;
      const why = t.codec === 'fernet' || t.from?.codec === 'fernet' ? 'Fernet' : t.aad !== undefined || t.derive ? 'aad/derive' : null;
      if (why) problems.push(`${file}: targets[${i}].columns[${j}]: "${c}" is a binary column, which does not take ${why}; make it its own target without it`);
    }
    for (const [j, b] of t.blindIndexes.entries()) {
      if (binary.has(b.source))
        problems.push(`${file}: targets[${i}].blindIndexes[${j}].source: "${b.source}" is a binary column; blind indexes are for text columns`);
    }
    for (const [key, template] of [
      ['aad', t.aad],
      ['derive.info', t.derive?.info],
    ] as const) {
      if (template === undefined) continue;
      for (const c of templateColumns(template)) {
        if (!cols.has(c)) problems.push(`${file}: targets[${i}].${key}: the template reads {${c}}, but table "${t.table}" has no column "${c}"`);
      }
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

/**
 * Every target's primaryKey must be unique (the primary key, or a unique index of that one column):
 * keyset pagination walks it and the compare-and-set addresses rows by it. On a column that repeats,
 * one value's compare-and-set would hit its twins, the batch count would disagree, and reencrypt
 * would blame the application on every pass without end. Checked before reencrypt writes anything.
 * A composite key is unique when the table's primary key or a unique index lies within its columns
 * (`[tenant_id, id]` on a table keyed by `(tenant_id, id)`, or by `id` alone).
 */
export async function checkKeysUnique(db: Db, config: LoadedConfig, targets: LoadedConfig['targets']): Promise<void> {
  const problems: string[] = [];
  for (const t of targets) {
    let keys: string[][];
    try {
      keys = await db.adapter.uniqueKeys(db.knex, t.table);
    } catch (err) {
      throw translateDbError(err, db.endpoint, `read the keys of table ${t.table} in`);
    }
    const wanted = keyColumns(t.primaryKey);
    if (keys.some((k) => k.length > 0 && k.every((c) => wanted.includes(c)))) continue;
    const i = config.targets.indexOf(t);
    if (typeof t.primaryKey === 'string') {
      const others = keys.filter((k) => k.length === 1).map((k) => k[0]);
      problems.push(
        `${config.file}: targets[${i}].primaryKey: column "${t.primaryKey}" of table "${t.table}" is neither its primary key nor under a unique index` +
          (others.length > 0 ? ` (unique columns: ${others.join(', ')})` : ''),
      );
    } else {
      problems.push(
        `${config.file}: targets[${i}].primaryKey: columns (${wanted.join(', ')}) of table "${t.table}" hold neither its primary key nor a unique index` +
          (keys.length > 0 ? ` (unique keys: ${[...new Set(keys.map((k) => `(${k.join(', ')})`))].join(', ')})` : ''),
      );
    }
  }
  if (problems.length > 0) {
    throw new ConfigError(
      'reencrypt needs a unique primaryKey for every target: it walks the table by it and rewrites each row by it',
      problems,
      "set primaryKey to the table's primary key (a column, or a list of columns such as [tenant_id, id]) or to a unique index's columns, or add one: CREATE UNIQUE INDEX … ON <table> (<columns>)",
    );
  }
}
