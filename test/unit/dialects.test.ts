/**
 * Each dialect's SQL, asserted without a database (as Kysely's testSql does): the compare-and-set
 * statement and its parameters, identifier quoting against Knex's own, URL handling and error codes.
 */
import knexFactory from 'knex';
import type { Knex } from 'knex';
import { describe, expect, it } from 'vitest';
import { dialectFor, dialectForConnection, MysqlDialect, PgDialect, SqliteDialect, type CasBatch } from '../../src/db/dialects/index.js';
import { paddedRows } from '../../src/db/dialects/mysql.js';
import { pgArrayLiteral, pgBinaryArray } from '../../src/db/dialects/pg.js';
import type { DatabaseConfig } from '../../src/config/schema.js';

/** A one-dimensional array in PostgreSQL's binary format, read back: element type, NULL flag, values (text as UTF-8). */
function readPgBinaryArray(buf: Buffer): { oid: number; hasNull: number; values: Array<string | null> } {
  const ndim = buf.readInt32BE(0);
  const hasNull = buf.readInt32BE(4);
  const oid = buf.readInt32BE(8);
  const values: Array<string | null> = [];
  if (ndim === 0) return { oid, hasNull, values };
  expect(ndim).toBe(1);
  expect(buf.readInt32BE(16)).toBe(1);
  let o = 20;
  for (let i = 0; i < buf.readInt32BE(12); i++) {
    const size = buf.readInt32BE(o);
    o += 4;
    values.push(size < 0 ? null : buf.toString('utf8', o, o + size));
    o += Math.max(0, size);
  }
  expect(o).toBe(buf.length);
  return { oid, hasNull, values };
}

/** Two rows, two columns; row 2's column b is not written. */
const batch: CasBatch = {
  pks: [7, 9],
  read: ['v1:a7', 'v1:b7', 'v1:a9', null],
  next: ['v2:a7', 'v2:b7', 'v2:a9', null],
};
const req = { table: 'people', pk: 'id', columns: ['a', 'b'], batch };

describe('compare-and-set SQL per dialect', () => {
  it('PostgreSQL: one UPDATE … FROM unnest of one array per column, cast to the key type, bounded by the key range', () => {
    const plan = new PgDialect().compareAndSetPlan({ ...req, pkType: 'bigint' });
    expect(plan.sql).toBe(
      'UPDATE "people" AS t SET "a" = CASE WHEN v.n0 IS NOT NULL AND t."a" = v.o0 THEN v.n0 ELSE t."a" END, "b" = CASE WHEN v.n1 IS NOT NULL AND t."b" = v.o1 THEN v.n1 ELSE t."b" END ' +
        'FROM unnest(CAST(? AS bigint[]), CAST(? AS text[]), CAST(? AS text[]), CAST(? AS text[]), CAST(? AS text[])) AS v(pk, o0, n0, o1, n1) ' +
        'WHERE t."id" = v.pk AND t."id" BETWEEN CAST(? AS bigint) AND CAST(? AS bigint) AND ((v.n0 IS NOT NULL AND t."a" = v.o0) OR (v.n1 IS NOT NULL AND t."b" = v.o1))',
    );
    const [keys, ...rest] = plan.executions[0]!;
    expect(keys).toBe('{"7","9"}');
    // The value arrays go in PostgreSQL's binary array format, the key range as plain values.
    expect(rest.slice(0, 4).map((a) => readPgBinaryArray(a as Buffer))).toEqual([
      { oid: 25, hasNull: 0, values: ['v1:a7', 'v1:a9'] },
      { oid: 25, hasNull: 0, values: ['v2:a7', 'v2:a9'] },
      { oid: 25, hasNull: 1, values: ['v1:b7', null] },
      { oid: 25, hasNull: 1, values: ['v2:b7', null] },
    ]);
    expect(rest.slice(4)).toEqual([7, 9]);
  });

  it('PostgreSQL binary arrays: array_send layout, NULLs flagged, UTF-8 text, bytes as they are, an empty array without dimensions', () => {
    expect(readPgBinaryArray(pgBinaryArray(25, 3, (i) => ['ü ☕', '', '{"NULL"}'][i]))).toEqual({ oid: 25, hasNull: 0, values: ['ü ☕', '', '{"NULL"}'] });
    const bytes = pgBinaryArray(17, 2, (i) => [Uint8Array.from([0, 255]), null][i]);
    expect(bytes.subarray(0, 20)).toEqual(Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 17, 0, 0, 0, 2, 0, 0, 0, 1]));
    expect(bytes.subarray(20)).toEqual(Buffer.from([0, 0, 0, 2, 0, 255, 255, 255, 255, 255]));
    expect(pgBinaryArray(25, 0, () => null)).toEqual(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25]));
  });

  it('PostgreSQL: the key type defaults to text, and the statement size does not grow with the batch', () => {
    const small = new PgDialect().compareAndSetPlan(req);
    expect(small.sql).toContain('CAST(? AS text[])');
    const big = new PgDialect().compareAndSetPlan({ ...req, batch: { pks: [1, 2, 3, 4], read: Array(8).fill('v1:x'), next: Array(8).fill('v2:x') } });
    expect(big.sql).toBe(small.sql);
    expect(big.executions[0]).toHaveLength(7);
  });

  it('MySQL/MariaDB: integer keys: t read first by an IN list of the keys, joined to a UNION ALL derived table of whole row slots; per row, comparing as BINARY', () => {
    const plan = new MysqlDialect().compareAndSetPlan(req);
    const slot = ' UNION ALL SELECT ?, ?, ?, ?, ?';
    expect(plan.prepared).toBe(true);
    expect(plan.sql).toBe(
      `UPDATE \`people\` AS t STRAIGHT_JOIN (SELECT ? AS pk, ? AS o0, ? AS n0, ? AS o1, ? AS n1${slot.repeat(63)}) AS v ON t.\`id\` = v.pk ` +
        'SET t.`a` = v.n0, t.`b` = v.n1 ' +
        `WHERE t.\`id\` IN (?${', ?'.repeat(63)}) AND CAST(t.\`a\` AS BINARY) <=> CAST(v.o0 AS BINARY) AND CAST(t.\`b\` AS BINARY) <=> CAST(v.o1 AS BINARY)`,
    );
    // Two rows (row 9's column b, not rewritten, gets the value read back: here NULL), then 62 NULL
    // rows (they join nothing), then the keys and 62 NULLs.
    expect(plan.executions).toEqual([
      [7, 'v1:a7', 'v2:a7', 'v1:b7', 'v2:b7', 9, 'v1:a9', 'v2:a9', null, null, ...Array(62 * 5).fill(null), 7, 9, ...Array(62).fill(null)],
    ]);
  });

  it('MySQL/MariaDB: the per-row statement compares a column not rewritten with the value read and gives it back; the per-column one follows for rows it left', () => {
    const plan = new MysqlDialect().compareAndSetPlan({ ...req, batch: { ...batch, read: ['v1:a7', 'v1:b7', 'v1:a9', 'v1:b9'] } });
    expect(plan.executions[0]!.slice(0, 10)).toEqual([7, 'v1:a7', 'v2:a7', 'v1:b7', 'v2:b7', 9, 'v1:a9', 'v2:a9', 'v1:b9', 'v1:b9']);
    expect(plan.leftovers!.rows).toBe(2);
    const perColumn = plan.leftovers!.plan();
    expect(perColumn.sql).toContain('CASE WHEN v.n0 IS NOT NULL');
    // Per column, a column not rewritten is NULL on both sides: it matches nothing and keeps its value.
    expect(perColumn.executions[0]!.slice(0, 10)).toEqual([7, 'v1:a7', 'v2:a7', 'v1:b7', 'v2:b7', 9, 'v1:a9', 'v2:a9', null, null]);
  });

  it('MySQL/MariaDB: other keys (text, or a BIGINT past 2^53 as text): per column alone, the derived table driving the join, bounded by the key range', () => {
    const plan = new MysqlDialect().compareAndSetPlan({ ...req, batch: { ...batch, pks: ['9007199254740993', '9007199254740995'] } });
    expect(plan.sql).toMatch(/^UPDATE \(SELECT \? AS pk, .*\) AS v STRAIGHT_JOIN `people` AS t ON t\.`id` = v\.pk /);
    expect(plan.sql).toContain(
      'SET t.`a` = CASE WHEN v.n0 IS NOT NULL AND CAST(t.`a` AS BINARY) = CAST(v.o0 AS BINARY) THEN v.n0 ELSE t.`a` END, ' +
        't.`b` = CASE WHEN v.n1 IS NOT NULL AND CAST(t.`b` AS BINARY) = CAST(v.o1 AS BINARY) THEN v.n1 ELSE t.`b` END ' +
        'WHERE t.`id` BETWEEN ? AND ? AND ((v.n0 IS NOT NULL AND CAST(t.`a` AS BINARY) = CAST(v.o0 AS BINARY)) OR (v.n1 IS NOT NULL AND CAST(t.`b` AS BINARY) = CAST(v.o1 AS BINARY)))',
    );
    expect(plan.leftovers).toBeUndefined();
    expect(plan.executions[0]!.slice(-2)).toEqual(['9007199254740993', '9007199254740995']);
    expect(plan.executions[0]).toHaveLength(64 * 5 + 2);
  });

  it('MySQL/MariaDB: a composite integer key is read as an IN list of tuples', () => {
    const plan = new MysqlDialect().compareAndSetPlan({
      ...req,
      pk: ['org', 'id'],
      columns: ['a'],
      batch: { pks: [1, 7, 1, 9], read: ['v1:x', 'v1:y'], next: ['v2:x', 'v2:y'] },
    });
    expect(plan.sql).toContain('ON t.`org` = v.k0 AND t.`id` = v.k1 SET t.`a` = v.n0 WHERE (t.`org`, t.`id`) IN ((?, ?), (?, ?),');
    expect(plan.executions[0]!.slice(64 * 4, 64 * 4 + 5)).toEqual([1, 7, 1, 9, null]);
  });

  it('MySQL/MariaDB: batches of nearby sizes share one statement text', () => {
    const rows = (n: number) => ({
      ...req,
      batch: { pks: Array.from({ length: n }, (_, i) => i + 1), read: Array(2 * n).fill('v1:x'), next: Array(2 * n).fill('v2:x') },
    });
    const d = new MysqlDialect();
    expect(d.compareAndSetPlan(rows(300)).sql).toBe(d.compareAndSetPlan(rows(512)).sql);
    expect(d.compareAndSetPlan(rows(512)).sql).not.toBe(d.compareAndSetPlan(rows(513)).sql);
    expect([1, 64, 65, 256, 257, 6000].map(paddedRows)).toEqual([64, 64, 256, 256, 512, 6144]);
  });

  it('MySQL/MariaDB: a batch holding a value over 8 KB goes as text, not as a prepared statement, and never with the IN list', () => {
    const d = new MysqlDialect();
    const big = `v2:${'x'.repeat(9000)}`;
    for (const plan of [
      d.compareAndSetPlan({ ...req, batch: { ...batch, next: ['v2:a7', big, 'v2:a9', null] } }),
      d.compareAndSetPlan({ ...req, batch: { ...batch, read: [big, 'v1:b7', 'v1:a9', null] } }),
    ]) {
      expect(plan.prepared).toBe(false);
      // As text the keys would be literals, and MariaDB turns 1,000 of them into a join that leaves the batch unindexed.
      expect(plan.sql).not.toContain(' IN (');
      expect(plan.sql.startsWith('UPDATE (SELECT ? AS pk')).toBe(true);
      expect(plan.executions[0]!.slice(-2)).toEqual([7, 9]);
    }
    // A prepared IN-list statement the server fails (error 127) runs again as text in the driven form.
    const prepared = d.compareAndSetPlan(req);
    expect(prepared.sql).toContain(' IN (');
    const text = prepared.asText!();
    expect(text.sql.startsWith('UPDATE (SELECT ? AS pk')).toBe(true);
    expect(text.sql).not.toContain(' IN (');
    expect(text.executions[0]).toHaveLength(64 * 5 + 2);
  });

  it('MySQL/MariaDB: a per-row statement the server fails (error 127) runs as the per-column one, once', async () => {
    const d = new MysqlDialect();
    const plan = d.compareAndSetPlan(req);
    expect(plan.leftovers).toBeDefined();
    const raw: string[] = [];
    // A connection whose every prepared statement fails with error 127, and text statements that
    // match one row of the two (the other changed meanwhile).
    const conn = {
      prepare: (_sql: string, cb: (err: Error | null, st: unknown) => void) =>
        cb(null, { parameters: [], execute: (_v: unknown[], done: (e: Error | null) => void) => done(Object.assign(new Error('corrupted'), { errno: 127 })) }),
    };
    const trx = {
      client: { acquireConnection: async () => conn },
      raw: async (sql: string) => {
        raw.push(sql);
        return [{ affectedRows: 1 }];
      },
    } as unknown as Knex.Transaction;
    expect(await d.runCompareAndSet(trx, plan)).toBe(1);
    expect(raw).toHaveLength(1);
    expect(raw[0]!.startsWith('UPDATE (SELECT ? AS pk')).toBe(true);
  });

  it('SQLite: one prepared per-row statement, run once per row with that row’s old and new values', () => {
    const plan = new SqliteDialect().compareAndSetPlan(req);
    expect(plan.sql).toBe(
      'UPDATE `people` SET `a` = CASE WHEN `a` = ? THEN ? ELSE `a` END, `b` = CASE WHEN `b` = ? THEN ? ELSE `b` END WHERE `id` = ? AND (`a` = ? OR `b` = ?)',
    );
    expect(plan.executions).toEqual([
      ['v1:a7', 'v2:a7', 'v1:b7', 'v2:b7', 7, 'v1:a7', 'v1:b7'],
      ['v1:a9', 'v2:a9', null, null, 9, 'v1:a9', null],
    ]);
  });

  it('PostgreSQL array literals escape keys and refuse a ciphertext that could shift the elements', () => {
    expect(pgArrayLiteral(3, (i) => ['a"b', 'c\\d', null][i])).toBe('{"a\\"b","c\\\\d",NULL}');
    expect(pgArrayLiteral(2, (i) => ['v1:AAAA', null][i])).toBe('{"v1:AAAA",NULL}');
    // Plaintext being onboarded is compared as it is: a quote cannot shift the elements after it.
    expect(pgArrayLiteral(3, (i) => ['v1:A","B', 'NULL', '{x}'][i])).toBe('{"v1:A\\",\\"B","NULL","{x}"}');
  });
});

describe('identifiers are quoted exactly as Knex quotes them', () => {
  const names = ['people', 'public.people', 'we"ird', 'back`tick', 'MixedCase'];
  for (const [name, client] of [
    ['pg', 'pg'],
    ['mysql', 'mysql2'],
    ['sqlite', 'better-sqlite3'],
  ] as const) {
    it(name, async () => {
      const knex = knexFactory({ client, useNullAsDefault: true });
      try {
        for (const n of names) expect(dialectFor(name).quoteIdentifier(n)).toBe(knex.raw('??', [n]).toQuery());
      } finally {
        await knex.destroy();
      }
    });
  }
});

describe('connection strings and endpoints', () => {
  const cfg = (client: DatabaseConfig['client'], connection: string) => ({ client, connection, connectTimeoutSeconds: 5 }) as DatabaseConfig;

  it('a URL scheme selects the dialect; anything else is a SQLite path; an unknown scheme is refused with the choices', () => {
    expect(dialectForConnection('postgres://u@h/db').dialect).toBe('pg');
    expect(dialectForConnection('PostgreSQL://u@h/db').dialect).toBe('pg');
    expect(dialectForConnection('mariadb://u@h/db').dialect).toBe('mysql');
    expect(dialectForConnection('./keyctl.db').dialect).toBe('sqlite');
    expect(() => dialectForConnection('Oracle://x')).toThrow(/unsupported database URL scheme in "Oracle:\/\/…"/);
  });

  it('server endpoints name the host, default port and database, never the password', () => {
    expect(dialectFor('pg').describeEndpoint(cfg('pg', 'postgres://me:s3cret@db.example/app'), '/')).toMatchObject({
      host: 'db.example',
      port: 5432,
      database: 'app',
    });
    const my = dialectFor('mysql').describeEndpoint(cfg('mysql', 'mysql://me:s3cret@db.example/app'), '/');
    expect(my).toMatchObject({ host: 'db.example', port: 3306, database: 'app' });
    expect(my.description).not.toContain('s3cret');
    expect(() => dialectFor('pg').describeEndpoint(cfg('pg', 'mysql://x@h/d'), '/')).toThrow(/scheme "mysql" but database.client is "pg"/);
    expect(dialectFor('sqlite').describeEndpoint(cfg('sqlite', 'k.db'), '/srv')).toMatchObject({ database: '/srv/k.db' });
  });
});

describe('driver error codes per dialect', () => {
  const err = (code: string) => Object.assign(new Error('x'), { code });
  const wrapped = (code: string) => Object.assign(new Error('database error'), { cause: { code } });

  it('unique violations', () => {
    expect(dialectFor('pg').isUniqueViolation(err('23505'))).toBe(true);
    expect(dialectFor('mysql').isUniqueViolation(err('ER_DUP_ENTRY'))).toBe(true);
    expect(dialectFor('sqlite').isUniqueViolation(err('SQLITE_CONSTRAINT_UNIQUE'))).toBe(true);
    expect(dialectFor('pg').isUniqueViolation(err('ER_DUP_ENTRY'))).toBe(false);
  });

  it('retryable failures: each dialect its own lock conflicts, every dialect a dropped connection, also behind keyctl’s wrapper', () => {
    expect(dialectFor('pg').isRetryable(err('40P01'))).toBe(true);
    expect(dialectFor('mysql').isRetryable(wrapped('ER_LOCK_DEADLOCK'))).toBe(true);
    expect(dialectFor('sqlite').isRetryable(err('SQLITE_BUSY'))).toBe(true);
    expect(dialectFor('sqlite').isRetryable(err('ECONNRESET'))).toBe(true);
    expect(dialectFor('pg').isRetryable(err('42601'))).toBe(false);
    expect(dialectFor('mysql').isRetryable(err('40P01'))).toBe(false);
  });

  it('login, missing-database and cannot-open codes map to one explanation each', () => {
    expect(dialectFor('pg').errorKind('28P01')).toBe('login-refused');
    expect(dialectFor('mysql').errorKind('ER_ACCESS_DENIED_ERROR')).toBe('login-refused');
    expect(dialectFor('pg').errorKind('3D000')).toBe('no-such-database');
    expect(dialectFor('mysql').errorKind('ER_BAD_DB_ERROR')).toBe('no-such-database');
    expect(dialectFor('sqlite').errorKind('SQLITE_CANTOPEN')).toBe('cannot-open');
    expect(dialectFor('sqlite').errorKind('3D000')).toBeUndefined();
  });
});
