/**
 * PostgreSQL (node-postgres): the compare-and-set joins the table to one array per column
 * (`unnest`), so the statement has the same size and plan for any batch size. The value arrays
 * travel in PostgreSQL's binary array format (pgBinaryArray), the key arrays as array literals.
 */
import type { Knex } from 'knex';
import type { DatabaseConfig } from '../../config/schema.js';
import { driverCode, quoteWith, retryableWith, rowValueAfter, serverEndpoint } from './common.js';
import {
  binaryBucketCase,
  bucketCase,
  casMatch,
  casOld,
  ownColumns,
  type BucketPatterns,
  type CasPlan,
  type CasRequest,
  type DbEndpoint,
  type DbErrorKind,
  type PkValue,
  type RawCondition,
  type SqlDialect,
} from './types.js';
import { groupKeyColumns } from './unique-keys.js';

const RETRYABLE = new Set([
  // deadlock, serialization failure, lock not available, connection failures, admin shutdown
  '40P01',
  '40001',
  '55P03',
  '08000',
  '08003',
  '08006',
  '57P01',
  '57P02',
  '57P03',
]);

export class PgDialect implements SqlDialect {
  readonly dialect = 'pg' as const;
  readonly label = 'PostgreSQL';
  readonly knexClient = 'pg';
  readonly embedded = false;
  readonly locksSelectedRows = true;
  readonly timestampsAsText = false;
  readonly casNeedsKeyType = true;
  readonly urlSchemes: readonly string[] = ['postgres', 'postgresql'];
  readonly randomOrder = 'random()';

  quoteIdentifier(name: string): string {
    return quoteWith('"', name);
  }

  describeEndpoint(cfg: DatabaseConfig): DbEndpoint {
    return serverEndpoint(cfg, {
      dialect: 'pg',
      label: this.label,
      schemes: this.urlSchemes,
      defaultPort: 5432,
      urlExample: 'postgres://USER[:PASSWORD]@HOST:PORT/DATABASE',
    });
  }

  knexConfig(cfg: DatabaseConfig): Knex.Config {
    const timeoutMs = Math.round(cfg.connectTimeoutSeconds * 1000);
    return {
      client: this.knexClient,
      connection: { connectionString: cfg.connection, connectionTimeoutMillis: timeoutMs, application_name: 'keyctl' },
      pool: { min: cfg.pool?.min ?? 0, max: cfg.pool?.max ?? 4 },
      acquireConnectionTimeout: timeoutMs + 2000,
    };
  }

  binaryVersionBucket(knex: Knex, column: string, magic: number, minBytes: number, plaintext: boolean): Knex.Raw {
    return binaryBucketCase(knex, column, magic, minBytes, plaintext, "encode(substr(??, 2, 2), 'hex')");
  }

  versionBucket(knex: Knex, column: string, patterns: BucketPatterns): Knex.Raw {
    const c = bucketCase(column, patterns, (pattern) => ({ sql: '?? ~ ?', bindings: [column, pattern] }), {
      sql: `split_part(??, ':', 1)`,
      bindings: [column],
    });
    return knex.raw(c.sql, c.bindings as Knex.RawBinding[]);
  }

  notPrefixed(knex: Knex, column: string, prefix: string, claimsPattern?: string): Knex.Raw {
    if (claimsPattern)
      return knex.raw(`CASE WHEN ?? IS NOT NULL AND (substr(??, 1, ?) <> ? OR NOT (?? ~ ?)) THEN 1 ELSE 0 END`, [
        column,
        column,
        prefix.length,
        prefix,
        column,
        claimsPattern,
      ]);
    return knex.raw(`CASE WHEN ?? IS NOT NULL AND substr(??, 1, ?) <> ? THEN 1 ELSE 0 END`, [column, column, prefix.length, prefix]);
  }

  toDbTime(d: Date): Date {
    return d;
  }

  /** Other active backends (pg_stat_activity). */
  loadProbe(knex: Knex): () => Promise<number> {
    return async () => {
      const r = await knex.raw(`SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()`);
      return Number((r.rows as Array<{ n: unknown }>)[0]?.n ?? 0);
    };
  }

  /** Parameters arrive as text: the compare-and-set casts the key arrays to the key's own type. */
  async primaryKeyType(knex: Knex, table: string, column: string): Promise<string> {
    const r = await knex.raw(`SELECT format_type(a.atttypid, a.atttypmod) AS t FROM pg_attribute a WHERE a.attrelid = ?::regclass AND a.attname = ?`, [
      table,
      column,
    ]);
    const t = (r.rows as Array<{ t: string }>)[0]?.t;
    if (!t) throw new Error(`cannot read the type of ${table}.${column}`);
    return t;
  }

  /** Valid, non-partial unique indexes (the primary key's included), key columns only (no INCLUDE), none on an expression. */
  uniqueKeys(knex: Knex, table: string): Promise<string[][]> {
    return this.keysOf(knex, table, true);
  }

  indexKeys(knex: Knex, table: string): Promise<string[][]> {
    return this.keysOf(knex, table, false);
  }

  private async keysOf(knex: Knex, table: string, uniqueOnly: boolean): Promise<string[][]> {
    const r = await knex.raw(
      `SELECT i.indexrelid::text AS ix, k.ord, a.attname AS col
         FROM pg_index i
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
         LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
        WHERE i.indrelid = ?::regclass AND (i.indisunique OR NOT ?) AND i.indisvalid AND i.indpred IS NULL AND k.ord <= i.indnkeyatts
        ORDER BY 1, 2`,
      [table, uniqueOnly],
    );
    return groupKeyColumns((r.rows as Array<{ ix: string; col: string | null }>).map((x) => [x.ix, x.col]));
  }

  /**
   * UPDATE t SET c = CASE … END FROM unnest(pk[], o0[], n0[], …) AS v(…) WHERE t.pk = v.pk AND …
   * One array per column instead of a VALUES list: a constant-size statement that PostgreSQL
   * parses and plans in the same time for any batch size, and 2k+3 parameters.
   */
  compareAndSetPlan(req: CasRequest): CasPlan {
    const { table, pk, columns, batch, pkType = 'text' } = req;
    if (typeof pk !== 'string') return this.compositeCompareAndSetPlan({ ...req, pk, pkType });
    const q = (name: string) => this.quoteIdentifier(name);
    const n = batch.pks.length;
    const width = columns.length;
    const keyType = typeof pkType === 'string' ? pkType : (pkType[0] ?? 'text');
    const vcols = ['pk'];
    for (let i = 0; i < width; i++) vcols.push(`o${i}`, `n${i}`);
    const matches = (i: number) =>
      casMatch(
        req,
        i,
        (c) => `t.${q(columns[c]!)}`,
        (c) => `v.o${c}`,
        (c) => `v.n${c}`,
      );
    const sets = columns.map((c, i) => `${q(c)} = CASE WHEN ${matches(i)} THEN v.n${i} ELSE t.${q(c)} END`).join(', ');
    const arrays: unknown[] = [pgArrayLiteral(n, (r) => batch.pks[r])];
    for (let c = 0; c < width; c++) {
      const oid = req.binary?.[c] ? BYTEA_OID : TEXT_OID;
      arrays.push(
        pgBinaryArray(oid, n, (r) => casOld(batch, r * width + c)),
        pgBinaryArray(oid, n, (r) => batch.next[r * width + c]),
      );
    }
    const types = vcols.map((_, c) => (c === 0 ? keyType : req.binary?.[Math.floor((c - 1) / 2)] ? 'bytea' : 'text'));
    const unnest = `unnest(${types.map((ty) => `CAST(? AS ${ty}[])`).join(', ')}) AS v(${vcols.join(', ')})`;
    // The batch's key range (rows arrive in key order): without it PostgreSQL hash-joins the
    // arrays against a sequential scan of the whole table, for every batch.
    const anyMatch = `t.${q(pk)} BETWEEN CAST(? AS ${keyType}) AND CAST(? AS ${keyType}) AND (${ownColumns(req)
      .map((i) => `(${matches(i)})`)
      .join(' OR ')})`;
    return {
      sql: `UPDATE ${q(table)} AS t SET ${sets} FROM ${unnest} WHERE t.${q(pk)} = v.pk AND ${anyMatch}`,
      executions: [[...arrays, batch.pks[0], batch.pks[n - 1]]],
    };
  }

  /**
   * The same statement on a composite key: one array per key column (`k0`, `k1`, …) joined column
   * by column, and the batch's range as row values, which PostgreSQL takes as an index condition.
   */
  private compositeCompareAndSetPlan(req: CasRequest & { pk: readonly string[] }): CasPlan {
    const { table, pk, columns, batch, pkType } = req;
    const q = (name: string) => this.quoteIdentifier(name);
    const kw = pk.length;
    const n = batch.pks.length / kw;
    const width = columns.length;
    const keyTypes = pk.map((_, k) => (typeof pkType === 'string' ? pkType : pkType?.[k]) ?? 'text');
    const vcols = pk.map((_, k) => `k${k}`);
    const types = [...keyTypes];
    for (let i = 0; i < width; i++) {
      vcols.push(`o${i}`, `n${i}`);
      const ty = req.binary?.[i] ? 'bytea' : 'text';
      types.push(ty, ty);
    }
    const matches = (i: number) =>
      casMatch(
        req,
        i,
        (c) => `t.${q(columns[c]!)}`,
        (c) => `v.o${c}`,
        (c) => `v.n${c}`,
      );
    const sets = columns.map((c, i) => `${q(c)} = CASE WHEN ${matches(i)} THEN v.n${i} ELSE t.${q(c)} END`).join(', ');
    const arrays: unknown[] = pk.map((_, k) => pgArrayLiteral(n, (r) => batch.pks[r * kw + k]));
    for (let c = 0; c < width; c++) {
      const oid = req.binary?.[c] ? BYTEA_OID : TEXT_OID;
      arrays.push(
        pgBinaryArray(oid, n, (r) => casOld(batch, r * width + c)),
        pgBinaryArray(oid, n, (r) => batch.next[r * width + c]),
      );
    }
    const unnest = `unnest(${types.map((ty) => `CAST(? AS ${ty}[])`).join(', ')}) AS v(${vcols.join(', ')})`;
    const tuple = `(${pk.map((c) => `t.${q(c)}`).join(', ')})`;
    const bound = `(${keyTypes.map((ty) => `CAST(? AS ${ty})`).join(', ')})`;
    const join = pk.map((c, k) => `t.${q(c)} = v.k${k}`).join(' AND ');
    const anyMatch = `${tuple} >= ${bound} AND ${tuple} <= ${bound} AND (${ownColumns(req)
      .map((i) => `(${matches(i)})`)
      .join(' OR ')})`;
    return {
      sql: `UPDATE ${q(table)} AS t SET ${sets} FROM ${unnest} WHERE ${join} AND ${anyMatch}`,
      executions: [[...arrays, ...batch.pks.slice(0, kw), ...batch.pks.slice((n - 1) * kw, n * kw)]],
    };
  }

  /** Row values: PostgreSQL takes `(a, b) > (?, ?)` as an index condition on a btree over (a, b). */
  keyAfter(columns: readonly string[], after: readonly PkValue[]): RawCondition {
    return rowValueAfter(columns, after);
  }

  async runCompareAndSet(trx: Knex.Transaction, plan: CasPlan): Promise<number> {
    let updated = 0;
    for (const bindings of plan.executions) {
      const res: unknown = await trx.raw(plan.sql, bindings as Knex.RawBinding[]);
      updated += Number((res as { rowCount?: number }).rowCount ?? 0);
    }
    return updated;
  }

  isUniqueViolation(err: unknown): boolean {
    return driverCode(err) === '23505';
  }

  isRetryable(err: unknown): boolean {
    return retryableWith(RETRYABLE, err);
  }

  /** Knex's own migration lock reports contention by name and message (see migrations.ts). */
  isLockContention(): boolean {
    return false;
  }

  errorKind(code: string): DbErrorKind | undefined {
    if (code === '28P01' || code === '28000') return 'login-refused';
    if (code === '3D000') return 'no-such-database';
    return undefined;
  }

  serverCheckHint(ep: DbEndpoint): string {
    return `check that PostgreSQL is running and reachable: pg_isready -h ${ep.host} -p ${ep.port}`;
  }

  createDatabaseHint(ep: DbEndpoint): string {
    return `create it (createdb -h ${ep.host} ${ep.database ?? ''})`;
  }
}

/** Element types of the value arrays (pg_type OIDs). */
const TEXT_OID = 25;
const BYTEA_OID = 17;

/**
 * A one-dimensional PostgreSQL array in the binary format the server reads with array_recv (what
 * array_send writes): dimensions, element type, then each element as a 4-byte length (-1 for NULL)
 * and its bytes — UTF-8 for text, the bytes themselves for bytea. node-postgres sends a Buffer
 * parameter in binary format, and `CAST($n AS text[])` gives the parameter its type. The server then
 * copies each element instead of parsing an array literal: on PostgreSQL 15 this halved the server's
 * time to bind a batch of 2,800 rows (docs/performance.md, "Binary arrays on PostgreSQL").
 * Values are taken as they are: nothing is quoted or escaped, so no text can change what is compared.
 */
export function pgBinaryArray(elementOid: number, length: number, at: (i: number) => unknown): Buffer {
  const sizes = new Int32Array(length);
  let total = length === 0 ? 12 : 20;
  let hasNull = 0;
  for (let i = 0; i < length; i++) {
    const v = at(i);
    const size = v === null || v === undefined ? -1 : v instanceof Uint8Array ? v.byteLength : Buffer.byteLength(String(v), 'utf8');
    sizes[i] = size;
    if (size < 0) hasNull = 1;
    total += 4 + Math.max(0, size);
  }
  const out = Buffer.allocUnsafe(total);
  let o = out.writeInt32BE(length === 0 ? 0 : 1, 0);
  o = out.writeInt32BE(hasNull, o);
  o = out.writeInt32BE(elementOid, o);
  if (length > 0) {
    o = out.writeInt32BE(length, o);
    o = out.writeInt32BE(1, o); // lower bound
  }
  for (let i = 0; i < length; i++) {
    const size = sizes[i]!;
    o = out.writeInt32BE(size, o);
    if (size <= 0) continue;
    const v = at(i);
    if (v instanceof Uint8Array) out.set(v, o);
    else out.write(String(v), o, size, 'utf8');
    o += size;
  }
  return out;
}

/**
 * A PostgreSQL array literal (`{"a","b",NULL}`), passed as one text parameter: the key arrays, whose
 * element type is the key column's own. Elements without a quote or backslash are copied as they
 * are, one test instead of node-postgres' two regex replaces per element; any other is escaped as
 * the array syntax requires.
 */
export function pgArrayLiteral(length: number, at: (i: number) => unknown): string {
  let out = '{';
  for (let i = 0; i < length; i++) {
    const v = at(i);
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    // Bytes as bytea's hex form (`\x…`), its backslash escaped for the array syntax.
    else if (v instanceof Uint8Array) out += `"\\\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}"`;
    else {
      // Every element quoted, a quote or backslash inside escaped: a text key is compared as it
      // is, whatever it holds ("NULL" and {braces} too).
      const str = String(v);
      out += NEEDS_ESCAPE.test(str) ? `"${str.replace(/[\\"]/g, '\\$&')}"` : `"${str}"`;
    }
  }
  return `${out}}`;
}
const NEEDS_ESCAPE = /[\\"]/;
