/**
 * MySQL and MariaDB (mysql2): the compare-and-set joins the table to a derived table of
 * `SELECT … UNION ALL SELECT …`, and compares as BINARY because the default collations ignore
 * case and trailing spaces; REGEXP likewise follows the collation, so the pattern turns case
 * sensitivity back on. The compare-and-set reads t by the batch's keys alone, and where it can,
 * first rewrites whole rows in place (see compareAndSetPlan).
 * The statement runs as a server-side prepared statement (binary protocol):
 * the server parses each batch size once per connection instead of a new text of every batch
 * (docs/performance.md, "What bounds MariaDB").
 */
import type { Knex } from 'knex';
import type { DatabaseConfig } from '../../config/schema.js';
import { driverCode, expandedAfter, keyColumnsOf, quoteWith, retryableWith, serverEndpoint } from './common.js';
import {
  binaryBucketCase,
  bucketCase,
  casMatch,
  casOld,
  ownColumns,
  type BucketPatterns,
  type CasBatch,
  type CasPlan,
  type CasRequest,
  type DbEndpoint,
  type DbErrorKind,
  type PkValue,
  type RawCondition,
  type SqlDialect,
} from './types.js';
import { groupKeyColumns } from './unique-keys.js';

/**
 * The codec's shape pattern as MySQL (ICU) and MariaDB (PCRE) must read it to match what the
 * decoder accepts: case-sensitive whatever the collation, and anchored at the very end — both
 * engines let `$` match before a final line terminator, so `'v1:…=\n'` would count as v1 while the
 * decoder rejects it. `\z` is the end of the string in both.
 */
export function mysqlShapeRegex(shapePattern: string): string {
  const strictEnd = shapePattern.endsWith('$') && !shapePattern.endsWith('\\$') ? `${shapePattern.slice(0, -1)}\\z` : shapePattern;
  return `(?-i)${strictEnd}`;
}

/**
 * Row slots of a batch's derived table: at least 64, then whole multiples of 256 (a batch of at
 * most 10,000 rows needs at most 40 statements per table and connection; mysql2 keeps them in its
 * per-connection statement cache and the server closes them with the connection).
 */
export function paddedRows(n: number): number {
  return n <= 64 ? 64 : Math.ceil(n / 256) * 256;
}

/**
 * Whether a batch may travel as a prepared statement's parameters. MariaDB 10.11 materialises the
 * derived table of a prepared statement whose parameters hold values of tens of KB in an Aria
 * temporary table that it then reports as corrupted (error 127; 100 rows of 53 KB fail, 100 rows
 * of 16 KB pass); the text protocol's literals do not fail. A batch with a row of more than 8 KB
 * of old and new values (UTF-8 bytes) goes as text; so does one that would pass the limit of
 * 65,535 placeholders once padded.
 */
function rowsFitPrepared(batch: CasBatch, width: number): boolean {
  for (let at = 0; at < batch.read.length; at += width) {
    let bytes = 0;
    for (let c = at; c < at + width; c++) bytes += byteSize(batch.read[c]) + byteSize(batch.next[c] ?? batch.read[c]);
    if (bytes > PREPARED_MAX_ROW_BYTES) return false;
  }
  return true;
}
const byteSize = (v: unknown): number => (typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v instanceof Uint8Array ? v.byteLength : 8);
const PREPARED_MAX_ROW_BYTES = 8192;
const MAX_PLACEHOLDERS = 65_535;
/** MariaDB's error 127 above: mysql2 reports errno 127, code HA_ERR_WRONG_IN_RECORD. */
const HA_ERR_WRONG_IN_RECORD = 127;

/** The parts of mysql2's (callback) connection and prepared statement keyctl uses. */
interface Mysql2Statement {
  parameters: unknown[];
  execute(values: unknown[], cb: (err: Error | null, result: unknown) => void): void;
}
interface Mysql2Connection {
  prepare(sql: string, cb: (err: Error | null, statement: Mysql2Statement) => void): void;
}
const NO_DESCRIPTIONS: unknown[] = [];

/**
 * Run `sql` as a prepared statement on the transaction's own connection (Knex sends text queries
 * only): mysql2 prepares it once per connection and statement text, then sends only the values,
 * in the binary protocol. Returns the rows the server reports (matched rows: mysql2 connects with
 * FOUND_ROWS, as for text queries).
 *
 * mysql2 keeps the server's description of every parameter with the statement it caches (a
 * batch of 2 MiB of values has some 30,000 parameters; with 2 MiB batches they held about 40 MB
 * of the main thread's heap on MariaDB at 1,000,000 rows). It reads them only to send a JS number
 * as an integer where the description says integer; MariaDB describes these parameters as NULL
 * (untyped), and a key that arrives as a JS number is below 2^53, which a double holds exactly.
 * So the descriptions are dropped once the statement is prepared.
 */
async function executePrepared(trx: Knex.Transaction, sql: string, values: unknown[]): Promise<number> {
  const conn = (await (trx as unknown as { client: { acquireConnection(): Promise<Mysql2Connection> } }).client.acquireConnection()) as Mysql2Connection;
  return new Promise((resolve, reject) =>
    conn.prepare(sql, (err, statement) => {
      if (err) return reject(err);
      statement.parameters = NO_DESCRIPTIONS;
      statement.execute(values, (e, result) => (e ? reject(e) : resolve(Number((result as { affectedRows?: number }).affectedRows ?? 0))));
    }),
  );
}

const RETRYABLE = new Set(['ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', 'PROTOCOL_CONNECTION_LOST', 'ER_CON_COUNT_ERROR']);

export class MysqlDialect implements SqlDialect {
  readonly dialect = 'mysql' as const;
  // The same driver and dialect serve both servers; the label says so rather than guess which one answers.
  readonly label = 'MySQL/MariaDB';
  readonly knexClient = 'mysql2';
  readonly embedded = false;
  readonly locksSelectedRows = true;
  readonly timestampsAsText = false;
  readonly casNeedsKeyType = false;
  readonly urlSchemes: readonly string[] = ['mysql', 'mariadb'];
  readonly randomOrder = 'RAND()';

  quoteIdentifier(name: string): string {
    return quoteWith('`', name);
  }

  describeEndpoint(cfg: DatabaseConfig): DbEndpoint {
    return serverEndpoint(cfg, {
      dialect: 'mysql',
      label: this.label,
      schemes: this.urlSchemes,
      defaultPort: 3306,
      urlExample: 'mysql://USER[:PASSWORD]@HOST:PORT/DATABASE',
    });
  }

  knexConfig(cfg: DatabaseConfig, ep: DbEndpoint): Knex.Config {
    const timeoutMs = Math.round(cfg.connectTimeoutSeconds * 1000);
    const url = new URL(cfg.connection);
    const ssl = url.searchParams.get('ssl');
    return {
      client: this.knexClient,
      connection: {
        host: ep.host,
        port: ep.port,
        user: decodeURIComponent(url.username),
        password: decodeURIComponent(url.password),
        database: ep.database,
        timezone: 'Z',
        charset: 'utf8mb4',
        connectTimeout: timeoutMs,
        supportBigNumbers: true,
        // keyctl prepares only its compare-and-set (a few slot counts per table): a small cache
        // closes the least recently used ones, so the server-wide max_prepared_stmt_count, shared
        // with the application, holds at most this many per keyctl connection.
        maxPreparedStatements: 8,
        ...(ssl === 'true' || ssl === 'required' ? { ssl: {} } : {}),
      },
      pool: { min: cfg.pool?.min ?? 0, max: cfg.pool?.max ?? 4 },
      acquireConnectionTimeout: timeoutMs + 2000,
    };
  }

  binaryVersionBucket(knex: Knex, column: string, magic: number, minBytes: number, plaintext: boolean): Knex.Raw {
    return binaryBucketCase(knex, column, magic, minBytes, plaintext, 'LOWER(HEX(SUBSTRING(??, 2, 2)))');
  }

  versionBucket(knex: Knex, column: string, patterns: BucketPatterns): Knex.Raw {
    const c = bucketCase(column, patterns, (pattern) => ({ sql: '?? REGEXP ?', bindings: [column, mysqlShapeRegex(pattern)] }), {
      sql: `SUBSTRING_INDEX(??, ':', 1)`,
      bindings: [column],
    });
    return knex.raw(c.sql, c.bindings as Knex.RawBinding[]);
  }

  notPrefixed(knex: Knex, column: string, prefix: string, claimsPattern?: string): Knex.Raw {
    const claims = claimsPattern ? ' OR NOT (?? REGEXP ?)' : '';
    return knex.raw(`CASE WHEN ?? IS NOT NULL AND (CAST(SUBSTRING(??, 1, ?) AS BINARY) <> CAST(? AS BINARY)${claims}) THEN 1 ELSE 0 END`, [
      column,
      column,
      prefix.length,
      prefix,
      ...(claimsPattern ? [column, mysqlShapeRegex(claimsPattern)] : []),
    ]);
  }

  toDbTime(d: Date): Date {
    return d;
  }

  /** Threads_running, less our own statement. */
  loadProbe(knex: Knex): () => Promise<number> {
    return async () => {
      const [rows] = (await knex.raw(`SHOW GLOBAL STATUS LIKE 'Threads_running'`)) as [Array<{ Value: unknown }>];
      return Math.max(0, Number(rows[0]?.Value ?? 0) - 1);
    };
  }

  async primaryKeyType(): Promise<undefined> {
    return undefined;
  }

  /** information_schema.STATISTICS: NON_UNIQUE = 0 covers PRIMARY and UNIQUE; a functional key part has no COLUMN_NAME. */
  uniqueKeys(knex: Knex, table: string): Promise<string[][]> {
    return this.keysOf(knex, table, true);
  }

  indexKeys(knex: Knex, table: string): Promise<string[][]> {
    return this.keysOf(knex, table, false);
  }

  private async keysOf(knex: Knex, table: string, uniqueOnly: boolean): Promise<string[][]> {
    const dot = table.indexOf('.');
    const [schema, name] = dot < 0 ? [null, table] : [table.slice(0, dot), table.slice(dot + 1)];
    const [rows] = (await knex.raw(
      `SELECT INDEX_NAME AS ix, SEQ_IN_INDEX AS ord, COLUMN_NAME AS col FROM information_schema.STATISTICS
        WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND (NON_UNIQUE = 0 OR NOT ?) ORDER BY 1, 2`,
      [schema, name, uniqueOnly],
    )) as [Array<{ ix: string; col: string | null }>];
    return groupKeyColumns(rows.map((x) => [x.ix, x.col]));
  }

  /**
   * The compare-and-set per column, as on the other databases, in one or two statements.
   *
   * Integer keys (all JS numbers; mysql2 gives a BIGINT beyond 2^53 as text), in a batch that goes
   * as a prepared statement, first get a statement per row that MariaDB runs in place:
   *   UPDATE t STRAIGHT_JOIN (SELECT … UNION ALL SELECT …) AS v ON t.pk = v.pk SET t.c = v.n, …
   *   WHERE t.pk IN (…) AND CAST(t.c AS BINARY) <=> CAST(v.o AS BINARY) AND …
   * It rewrites the rows whose every column still holds the value read (`read`; a column not
   * rewritten gets its value back). Its SET reads nothing of t and t comes first, so MariaDB updates
   * each row as it reads it; a multiple-table UPDATE whose SET reads t (as the per-column CASE must)
   * first copies every row to update into a temporary table and reads each again by position
   * (docs/performance.md, "MariaDB: a row-level compare-and-set"). t is read by the batch's keys
   * (one equality range per key of the unique key: checkKeysUnique), and each row finds its row of
   * the batch through an index the server builds on the derived table. Only where it left rows (the
   * application changed one of their columns meanwhile) does the per-column statement run as well.
   *
   * Other keys, and every batch that goes as text, get the per-column statement alone, with the
   * batch driving the join:
   *   UPDATE (SELECT …) AS v STRAIGHT_JOIN t ON t.pk = v.pk SET t.c = CASE WHEN … THEN v.n ELSE t.c END, …
   *   WHERE t.pk BETWEEN ? AND ? AND (<any column matches>)
   * The server could not index the derived table on a key of another character set or a number sent
   * as text (`EXPLAIN`: `<derived>` ALL under t, a quadratic join), and as text the IN list's keys
   * would be literals, which MariaDB turns into a join with a table of them from 1,000 on
   * (`in_predicate_conversion_threshold`), leaving the derived table unindexed again.
   *
   * Either way the statements read t by the batch's keys alone, so the transaction locks the batch's
   * rows and no others; left to itself the optimizer read t by a range scan over the batch's keys,
   * which under REPEATABLE READ locks every row in that range and the gaps between them until the
   * batch commits. A composite key joins on each column (`v.k0`, `v.k1`, …).
   */
  compareAndSetPlan(req: CasRequest): CasPlan {
    const { batch } = req;
    const fits = rowsFitPrepared(batch, req.columns.length);
    const perColumn = (): CasPlan => {
      const plan = this.casStatement(req, false);
      return { ...plan, prepared: fits && plan.executions[0]!.length <= MAX_PLACEHOLDERS };
    };
    if (fits && batch.pks.every((v) => typeof v === 'number')) {
      const inPlace = this.casStatement(req, true);
      const rows = batch.pks.length / keyColumnsOf(req.pk).length;
      if (inPlace.executions[0]!.length <= MAX_PLACEHOLDERS) return { ...inPlace, prepared: true, asText: perColumn, leftovers: { rows, plan: perColumn } };
    }
    return perColumn();
  }

  /** One of the two statements of compareAndSetPlan: per row in place (`inPlace`), or per column with the batch driving the join. */
  private casStatement(req: CasRequest, inPlace: boolean): Pick<CasPlan, 'sql' | 'executions'> {
    const { table, pk, columns, batch } = req;
    const q = (name: string) => this.quoteIdentifier(name);
    const keys = keyColumnsOf(pk);
    const kw = keys.length;
    const n = batch.pks.length / kw;
    const width = columns.length;
    const vkeys = kw === 1 ? ['pk'] : keys.map((_, k) => `k${k}`);
    const vcols = [...vkeys];
    for (let i = 0; i < width; i++) vcols.push(`o${i}`, `n${i}`);
    // The derived table has a whole number of row slots (paddedRows): the server keeps one prepared
    // statement per slot count, not one per batch size. Spare slots are NULL rows, which join nothing.
    const slots = paddedRows(n);
    const bindings = new Array<unknown>(slots * vcols.length + (inPlace ? slots * kw : 2)).fill(null);
    let at = 0;
    for (let r = 0; r < n; r++) {
      for (let k = 0; k < kw; k++) bindings[at++] = batch.pks[r * kw + k] ?? null;
      for (let c = r * width; c < (r + 1) * width; c++) {
        // Per row: every value read, and a column not rewritten gets it back. Per column: NULL there.
        const was = inPlace ? (batch.read[c] ?? null) : casOld(batch, c);
        bindings[at++] = was;
        bindings[at++] = batch.next[c] ?? was;
      }
    }
    const first = `SELECT ${vcols.map((c) => `? AS ${c}`).join(', ')}`;
    const rest = ` UNION ALL SELECT ${vcols.map(() => '?').join(', ')}`;
    const derived = `(${first + rest.repeat(slots - 1)}) AS v`;
    const on = keys.map((c, k) => `t.${q(c)} = v.${vkeys[k]}`).join(' AND ');
    const target = `${q(table)} AS t`;
    const bin = (sql: string) => `CAST(${sql} AS BINARY)`;
    if (inPlace) {
      at = slots * vcols.length;
      for (let i = 0; i < n * kw; i++) bindings[at++] = batch.pks[i];
      const tuple = kw === 1 ? '?' : `(${keys.map(() => '?').join(', ')})`;
      const key = kw === 1 ? `t.${q(keys[0]!)}` : `(${keys.map((c) => `t.${q(c)}`).join(', ')})`;
      const inList = `${key} IN (${Array.from({ length: slots }, () => tuple).join(', ')})`;
      const sets = columns.map((c, i) => `t.${q(c)} = v.n${i}`).join(', ');
      const unchanged = columns.map((c, i) => `${bin(`t.${q(c)}`)} <=> ${bin(`v.o${i}`)}`).join(' AND ');
      return { sql: `UPDATE ${target} STRAIGHT_JOIN ${derived} ON ${on} SET ${sets} WHERE ${inList} AND ${unchanged}`, executions: [bindings] };
    }
    const matches = (i: number) =>
      casMatch(
        req,
        i,
        (c) => bin(`t.${q(columns[c]!)}`),
        (c) => bin(`v.o${c}`),
        (c) => `v.n${c}`,
        (c) => bin(`v.n${c}`),
      );
    // A multi-table UPDATE may assign in any order: a guarded column's (a blind index's) guard
    // accepts its source's new value as well as its old one, so the order does not matter.
    const sets = columns.map((c, i) => `t.${q(c)} = CASE WHEN ${matches(i)} THEN v.n${i} ELSE t.${q(c)} END`).join(', ');
    const anyMatch = `t.${q(keys[0]!)} BETWEEN ? AND ? AND (${ownColumns(req)
      .map((i) => `(${matches(i)})`)
      .join(' OR ')})`;
    bindings[slots * vcols.length] = batch.pks[0];
    bindings[slots * vcols.length + 1] = batch.pks[(n - 1) * kw];
    return { sql: `UPDATE ${derived} STRAIGHT_JOIN ${target} ON ${on} SET ${sets} WHERE ${anyMatch}`, executions: [bindings] };
  }

  /** Expanded: MariaDB scans the whole index for `(a, b) > (?, ?)` but ranges over this form (see expandedAfter). */
  keyAfter(columns: readonly string[], after: readonly PkValue[]): RawCondition {
    return expandedAfter(columns, after);
  }

  async runCompareAndSet(trx: Knex.Transaction, plan: CasPlan): Promise<number> {
    let updated = 0;
    let perColumnAsText = false;
    for (const [i, bindings] of plan.executions.entries()) {
      let text = { sql: plan.sql, bindings };
      if (plan.prepared) {
        try {
          updated += await executePrepared(trx, plan.sql, bindings);
          continue;
        } catch (err) {
          // A storage-engine error on the derived table (see rowsFitPrepared) fails this statement
          // only, not the transaction: the same compare-and-set as text does not hit it.
          if ((err as { errno?: number }).errno !== HA_ERR_WRONG_IN_RECORD) throw err;
          const alt = plan.asText?.();
          if (alt) {
            text = { sql: alt.sql, bindings: alt.executions[i]! };
            perColumnAsText = true;
          }
        }
      }
      const res: unknown = await trx.raw(text.sql, text.bindings as Knex.RawBinding[]);
      updated += Number((res as Array<{ affectedRows?: number }>)[0]?.affectedRows ?? 0);
    }
    // Rows the per-row statement left (changed meanwhile in some column): per column, in the same
    // transaction. A row it rewrote no longer holds its old values, so none is counted twice. Where
    // the per-row statement failed and went as text, the text was the per-column one already.
    if (plan.leftovers && !perColumnAsText && updated < plan.leftovers.rows) updated += await this.runCompareAndSet(trx, plan.leftovers.plan());
    return updated;
  }

  isUniqueViolation(err: unknown): boolean {
    return driverCode(err) === 'ER_DUP_ENTRY';
  }

  isRetryable(err: unknown): boolean {
    return retryableWith(RETRYABLE, err);
  }

  /** Knex's own migration lock reports contention by name and message (see migrations.ts). */
  isLockContention(): boolean {
    return false;
  }

  errorKind(code: string): DbErrorKind | undefined {
    if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_DBACCESS_DENIED_ERROR') return 'login-refused';
    if (code === 'ER_BAD_DB_ERROR') return 'no-such-database';
    return undefined;
  }

  serverCheckHint(ep: DbEndpoint): string {
    return `check that MySQL/MariaDB is running and reachable: mysqladmin -h ${ep.host} -P ${ep.port} ping`;
  }

  createDatabaseHint(ep: DbEndpoint): string {
    return `create it (CREATE DATABASE ${ep.database ?? ''})`;
  }
}
