/**
 * The database layer against real SQLite, PostgreSQL and MariaDB/MySQL: the same tests for each
 * dialect, each in a database of its own.
 */
import { describe, expect, it } from 'vitest';
import type { Knex } from 'knex';
import { appendAudit, listAudit } from '../../src/rotation/store.js';
import { ConfigError, DatabaseError, KeystoreError } from '../../src/base/errors.js';
import { createDemoTable, DEMO_TARGET } from '../../src/core/demo.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { listVersions } from '../../src/rotation/store.js';
import { countVersions, getStatus, statusProblems } from '../../src/core/status.js';
import { AesGcmV1Codec, isWellFormed } from '../../src/crypto/codec.js';
import { fingerprint, generateKey } from '../../src/crypto/keys.js';
import { openDatabase, type Db } from '../../src/db/connect.js';
import { loadProbe } from '../../src/db/load.js';
import { compareAndSetBatch, type CasBatch } from '../../src/reencrypt/cas.js';
import { PgDialect, pgBinaryArray } from '../../src/db/dialects/pg.js';
import type { PkValue } from '../../src/reencrypt/scan.js';
import { migrate, pendingMigrations, TABLES } from '../../src/db/migrations.js';
import { EnvKeystore } from '../../src/keystore/env.js';
import { createTestDatabase, DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { openTestContext, testConfig } from '../helpers/context.js';

const codec = new AesGcmV1Codec();

/** A batch from rows given as column → [old, new], and the values read of columns not rewritten (`kept`). */
function casBatch(columns: string[], rows: Array<{ pk: PkValue; changes: Record<string, [string, string]>; kept?: Record<string, string> }>): CasBatch {
  const b: CasBatch = { pks: [], read: [], next: [] };
  for (const r of rows) {
    b.pks.push(r.pk);
    for (const c of columns) {
      b.read.push(r.changes[c]?.[0] ?? r.kept?.[c] ?? null);
      b.next.push(r.changes[c]?.[1] ?? null);
    }
  }
  return b;
}

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`database layer on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    async function ctx(opts: Parameters<typeof openTestContext>[1] = {}) {
      const c = await openTestContext(t.db, opts);
      t.cleanup(() => c.db.close());
      return c;
    }

    it('migrations create every table, are idempotent, and survive two migrators racing', async () => {
      const config = testConfig(t.db);
      const a = await openDatabase(config.database, { baseDir: config.baseDir });
      const b = await openDatabase(config.database, { baseDir: config.baseDir });
      t.cleanup(
        () => a.close(),
        () => b.close(),
      );
      expect(await pendingMigrations(a)).toEqual([
        '0001_registry_rotations_audit_checkpoints',
        '0002_audit_hash_chain_and_key_publication',
        '0003_verify_evidence',
        '0004_approvals',
        '0005_tenants',
        '0006_wrapped_keys',
      ]);
      const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
      expect([...ra.applied, ...rb.applied].sort()).toEqual([
        '0001_registry_rotations_audit_checkpoints',
        '0002_audit_hash_chain_and_key_publication',
        '0003_verify_evidence',
        '0004_approvals',
        '0005_tenants',
        '0006_wrapped_keys',
      ]);
      expect((await migrate(a)).applied).toEqual([]);
      expect(await pendingMigrations(a)).toEqual([]);
      for (const t of Object.values(TABLES)) expect(await a.knex.schema.hasTable(t)).toBe(true);
      const auditCols = Object.keys(await a.knex(TABLES.audit).columnInfo());
      for (const c of [
        'id',
        'rotation_id',
        'keyring',
        'action',
        'from_phase',
        'to_phase',
        'actor',
        'old_version',
        'new_version',
        'rows_affected',
        'outcome',
        'details',
        'created_at',
      ]) {
        expect(auditCols).toContain(c);
      }
    });

    it('audit rows round-trip, with UTC timestamps to the millisecond and JSON details', async () => {
      const c = await ctx();
      const at = new Date('2026-03-04T05:06:07.089Z');
      await appendAudit(c.db, { keyring: 'default', action: 'init', actor: 'a@b', outcome: 'ok', rowsAffected: 12345678901, details: { note: 'ü ☕' } }, at);
      const [row] = await listAudit(c.db, 'default');
      expect(row).toMatchObject({ action: 'init', actor: 'a@b', outcome: 'ok', rowsAffected: 12345678901, details: { note: 'ü ☕' }, rotationId: null });
      expect(row!.createdAt.toISOString()).toBe(at.toISOString());
    });

    it('adopts the keystore into an empty registry once, records it, and stores no key material', async () => {
      const c = await ctx();
      const key = generateKey();
      await c.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      const first = await reconcileRegistry(c);
      expect(first.versions.map((v) => [v.version, v.state, v.fingerprint])).toEqual([['v1', 'primary', fingerprint(key)]]);
      await reconcileRegistry(c);
      const audit = await listAudit(c.db, 'default');
      expect(audit.filter((a) => a.action === 'register')).toHaveLength(1);
      // Key material appears in no keyctl table.
      const b64 = key.toString('base64');
      for (const t of Object.values(TABLES)) {
        const rows = await c.db.knex(t).select();
        expect(JSON.stringify(rows)).not.toContain(b64);
        expect(JSON.stringify(rows)).not.toContain(key.toString('hex'));
      }
    });

    it('refuses a keystore whose key does not match the registry fingerprint', async () => {
      const c = await ctx();
      await c.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', generateKey()]]) }, null, 'create');
      await reconcileRegistry(c);
      const other = new EnvKeystore({ env: { KEYCTL_KEY_V1: generateKey().toString('base64') }, prefix: 'KEYCTL_', keyring: 'default' });
      await expect(reconcileRegistry({ ...c, keystore: other })).rejects.toThrow(KeystoreError);
      await expect(reconcileRegistry({ ...c, keystore: other })).rejects.toThrow(/does not match the database registry/);
    });

    it('counts values per version in SQL exactly as the codec classifies them', async () => {
      const c = await ctx({ extraConfig: `targets:\n  - table: customers\n    columns: [email, phone, notes]\n` });
      const k1 = generateKey();
      const k2 = generateKey();
      await c.keystore.write(
        {
          keyring: 'default',
          primary: 'v2',
          keys: new Map([
            ['v1', k1],
            ['v2', k2],
          ]),
        },
        null,
        'create',
      );
      await createDemoTable(c.db, { rows: 300, version: 'v1', key: k1, codec, replace: false });
      const weird = [
        null,
        'plain text',
        'V1:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==',
        'v1:AAAAAAAAAAAAAAAA:AAAA',
        'v1:AAAAAAAAAAAAAA==:AAAAAAAAAAAAAAAAAAAAAA==',
        '',
        'v9:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAA==',
        codec.encrypt('x', 'v2', k2),
        codec.encrypt('y', 'v2', k2),
      ];
      for (const [i, v] of weird.entries()) {
        await c.db
          .knex(DEMO_TARGET.table)
          .where({ id: i + 1 })
          .update({ email: v });
      }
      await c.db.knex(DEMO_TARGET.table).where('id', '>', 290).update({ phone: null });
      const counts = await countVersions(c.db, c.config.targets[0]!);
      // Expected, computed in JS from the same rows.
      const rows: Array<Record<string, string | null>> = await c.db.knex(DEMO_TARGET.table).select();
      for (const col of counts) {
        const expected = { counts: {} as Record<string, number>, null: 0, unparseable: 0 };
        for (const r of rows) {
          const v = r[col.column];
          if (v === null || v === undefined) expected.null++;
          else if (!isWellFormed(v)) expected.unparseable++;
          else {
            const ver = codec.versionOf(v);
            expected.counts[ver] = (expected.counts[ver] ?? 0) + 1;
          }
        }
        expect({ counts: col.counts, null: col.null, unparseable: col.unparseable }).toEqual(expected);
        expect(col.total).toBe(300);
      }
      expect(counts[0]).toMatchObject({ column: 'email', null: 1, unparseable: 5, counts: { v1: 291, v2: 2, v9: 1 } });
      expect(counts[1]).toMatchObject({ column: 'phone', null: 10, counts: { v1: 290 } });

      const report = await getStatus(c);
      expect(report.primary).toBe('v2');
      expect(report.targets[0]!.unknownVersions).toEqual(['v9']);
      expect(report.overdue).toBe(false);
      const problems = statusProblems(report);
      expect(problems.join('\n')).toContain('customers.email: 5 unparseable value(s)');
      expect(problems.join('\n')).toContain('under v9, which the keyring does not hold');
    });

    it('status is overdue once the primary key is older than the interval', async () => {
      const later = new Date(Date.now() + 91 * 86_400_000);
      const c = await ctx({ now: () => later });
      await c.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', generateKey()]]) }, null, 'create');
      await reconcileRegistry({ ...c, now: () => new Date() });
      const report = await getStatus(c);
      expect(report.overdue).toBe(true);
      expect(statusProblems(report)[0]).toContain('rotation overdue');
      expect((await listVersions(c.db, 'default'))[0]!.state).toBe('primary');
    });

    it('names targets that do not exist in the database', async () => {
      const c = await ctx({ extraConfig: `targets:\n  - table: customers\n    columns: [email, fax]\n  - table: nowhere\n    columns: [a]\n` });
      await c.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', generateKey()]]) }, null, 'create');
      await createDemoTable(c.db, { rows: 1, version: 'v1', key: generateKey(), codec, replace: false });
      const err = await getStatus(c).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      const text = (err as ConfigError).problems.join('\n');
      expect(text).toContain('targets[0].columns[1]: table "customers" has no column "fax"');
      expect(text).toContain('targets[1].table: table "nowhere" does not exist');
    });

    it('the bulk compare-and-set writes only values still as read, with awkward text keys', async () => {
      const c = await ctx();
      await c.db.knex.schema.createTable('cas_t', (tb) => {
        tb.string('code', 64).primary();
        tb.text('a');
        tb.text('b');
      });
      // Keys that need escaping in a PostgreSQL array literal or a SQL string.
      const codes = ['plain', 'with "quote"', 'back\\slash', 'comma,brace{}', "it's", 'NULL', ' spaced '];
      await c.db.knex('cas_t').insert(codes.map((code, i) => ({ code, a: `v1:a${i}`, b: `v1:b${i}` })));
      // The application changes one value after keyctl read it.
      await c.db.knex('cas_t').where({ code: 'comma,brace{}' }).update({ a: 'v1:app' });
      const batch = casBatch(
        ['a', 'b'],
        [...codes].sort().map((code) => {
          const i = codes.indexOf(code);
          // Only column b of "plain" is to be written.
          const changes: Record<string, [string, string]> =
            code === 'plain' ? { b: [`v1:b${i}`, `v2:b${i}`] } : { a: [`v1:a${i}`, `v2:a${i}`], b: [`v1:b${i}`, `v2:b${i}`] };
          return { pk: code, changes, kept: { a: `v1:a${i}` } };
        }),
      );
      const pkType = c.db.adapter.dialect === 'pg' ? 'character varying(64)' : undefined;
      const updated = await c.db.knex.transaction((trx) => compareAndSetBatch(c.db, trx, 'cas_t', 'code', ['a', 'b'], batch, pkType));
      expect(updated).toBe(codes.length);
      const rows = (await c.db.knex('cas_t').select('code', 'a', 'b')) as Array<{ code: string; a: string; b: string }>;
      const byCode = new Map(rows.map((r) => [r.code, r]));
      codes.forEach((code, i) => {
        const r = byCode.get(code)!;
        expect(r.a, code).toBe(code === 'plain' ? `v1:a${i}` : code === 'comma,brace{}' ? 'v1:app' : `v2:a${i}`);
        expect(r.b, code).toBe(`v2:b${i}`);
      });
    });
  });
}

describe('unreachable servers give a DatabaseError naming client, host and port', () => {
  for (const [client, url] of [
    ['pg', 'postgres://postgres:hunter2@127.0.0.1:1/test'],
    ['mysql', 'mysql://root:hunter2@127.0.0.1:1/test'],
  ] as const) {
    it(client, async () => {
      const err = await openDatabase({ client, connection: url, connectTimeoutSeconds: 5 }, { baseDir: '/' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DatabaseError);
      const e = err as DatabaseError;
      expect(e.message).toContain('127.0.0.1:1');
      expect(e.message).toContain(client === 'pg' ? 'PostgreSQL' : 'MySQL');
      expect(e.message).toContain('connection refused');
      expect(e.message + e.hint).not.toContain('hunter2');
      expect(e.hint).toContain('database.connection');
    });
  }
});

describe('database load probe (reencrypt --max-load)', () => {
  for (const dialect of ['pg', 'mysql'] as const) {
    it.skipIf(!dialectAvailable(dialect))(`${dialect} reports a load`, async () => {
      const tdb = await createTestDatabase(dialect);
      const config = testConfig(tdb);
      const db = await openDatabase(config.database, { baseDir: config.baseDir });
      try {
        const probe = loadProbe(db)!;
        const n = await probe();
        expect(Number.isInteger(n)).toBe(true);
        expect(n).toBeGreaterThanOrEqual(0);
      } finally {
        await db.close();
        await tdb.drop();
      }
    });
  }
});

describe('bulk compare-and-set on PostgreSQL', () => {
  // Regression: without the batch's key range, PostgreSQL hash-joined the VALUES list against a
  // sequential scan of the whole table for every batch — quadratic on a large table.
  it.skipIf(!dialectAvailable('pg'))('uses the primary-key index, not a scan of the whole table', async () => {
    const tdb = await createTestDatabase('pg');
    const config = testConfig(tdb);
    const db = await openDatabase(config.database, { baseDir: config.baseDir });
    try {
      await db.knex.raw(`CREATE TABLE big (id bigserial PRIMARY KEY, email text)`);
      await db.knex.raw(`INSERT INTO big (email) SELECT 'v1:' || md5(g::text) FROM generate_series(1, 50000) g`);
      await db.knex.raw('ANALYZE big');
      const rows: Array<{ id: string; email: string }> = await db.knex('big').where('id', '>', 20000).orderBy('id').limit(1000);
      const stmt = new PgDialect().compareAndSetPlan({
        table: 'big',
        pk: 'id',
        columns: ['email'],
        batch: casBatch(
          ['email'],
          rows.map((r) => ({ pk: r.id, changes: { email: [r.email, `v2:${r.email.slice(3)}`] } })),
        ),
        pkType: 'bigint',
      });
      const plan = (await db.knex.raw(`EXPLAIN ${stmt.sql}`, stmt.executions[0] as never[])).rows
        .map((r: Record<string, string>) => r['QUERY PLAN'])
        .join('\n');
      expect(plan).not.toMatch(/Seq Scan on big/);
      expect(plan).toMatch(/Index Scan using big_pkey/);
    } finally {
      await db.close();
      await tdb.drop();
    }
  });
  // The value arrays travel in the binary array format: every value must reach the server byte for
  // byte, whatever array-literal or SQL syntax it holds.
  it.skipIf(!dialectAvailable('pg'))('binary value arrays reach the server exactly as given', async () => {
    const tdb = await createTestDatabase('pg');
    const config = testConfig(tdb);
    const db = await openDatabase(config.database, { baseDir: config.baseDir });
    try {
      const texts = ['v1:AAAA', '', 'NULL', null, '{a,b}', 'with "quote"', 'back\\slash', "it's", ' spaced ', 'tab\tline\n', 'ü ☕ 𝄞', 'x'.repeat(53_000)];
      const [textRow] = (await db.knex.raw('SELECT CAST(? AS text[]) AS a', [pgBinaryArray(25, texts.length, (i) => texts[i])])).rows;
      expect(textRow.a).toEqual(texts);
      const bytes = [Buffer.from([0, 1, 2, 255]), null, Buffer.alloc(0), Buffer.from('\\x41')];
      // node-postgres does not parse bytea[]: compare the server's own hex output.
      const [hexRow] = (
        await db.knex.raw("SELECT array_to_string(ARRAY(SELECT coalesce(encode(x, 'hex'), '-') FROM unnest(CAST(? AS bytea[])) x), ',') AS h", [
          pgBinaryArray(17, bytes.length, (i) => bytes[i]),
        ])
      ).rows;
      expect(hexRow.h).toBe('000102ff,-,,5c783431');
      const [empty] = (await db.knex.raw('SELECT cardinality(CAST(? AS text[])) AS n', [pgBinaryArray(25, 0, () => null)])).rows;
      expect(empty.n).toBe(0);
    } finally {
      await db.close();
      await tdb.drop();
    }
  });
});

describe('bulk compare-and-set on MySQL/MariaDB', () => {
  /** A fresh database for one test: `db` and any further connections (`connect`) are closed, and the database dropped, after it. */
  async function onFreshMysql(fn: (db: Db, connect: () => Promise<Db>) => Promise<void>): Promise<void> {
    const tdb = await createTestDatabase('mysql');
    const config = testConfig(tdb);
    const opened: Db[] = [];
    const connect = async (): Promise<Db> => {
      const d = await openDatabase(config.database, { baseDir: config.baseDir });
      opened.push(d);
      return d;
    };
    try {
      await fn(await connect(), connect);
    } finally {
      for (const d of opened.reverse()) await d.close();
      await tdb.drop();
    }
  }
  // MariaDB 10.11 fails a prepared statement whose derived table holds values of tens of KB with
  // error 127 ("Table file is corrupted"); the dialect sends such batches as text, and a prepared
  // plan that hits the error anyway is run again as text within the same transaction.
  it.skipIf(!dialectAvailable('mysql'))('rewrites 100 rows of 53 KB values, also when the plan asks for a prepared statement', async () => {
    await onFreshMysql(async (db) => {
      await db.knex.raw('CREATE TABLE big (id BIGINT PRIMARY KEY, notes MEDIUMTEXT)');
      const old = (i: number) => `v1:${String(i).repeat(10)}`;
      await db.knex('big').insert(Array.from({ length: 100 }, (_, i) => ({ id: i + 1, notes: old(i + 1) })));
      const next = (i: number) => `v2:${String(i % 10).repeat(53_000)}`;
      const batch = casBatch(
        ['notes'],
        Array.from({ length: 100 }, (_, i) => ({ pk: i + 1, changes: { notes: [old(i + 1), next(i + 1)] } })),
      );
      const plan = db.adapter.compareAndSetPlan({ table: 'big', pk: 'id', columns: ['notes'], batch });
      expect(plan.prepared).toBe(false);
      const updated = await db.knex.transaction((trx) => db.adapter.runCompareAndSet(trx, { ...plan, prepared: true }));
      expect(updated).toBe(100);
      const rows: Array<{ id: number; notes: string }> = await db.knex('big').orderBy('id');
      expect(rows.every((r) => r.notes === next(r.id))).toBe(true);
    });
  });

  // The statement reads the table by the batch's keys alone (integer keys: an IN list; other keys:
  // the batch drives the join, STRAIGHT_JOIN, each of its rows finding its row by key), so the open
  // transaction holds locks on those rows alone. Left to itself, MariaDB read the table by a range
  // scan over the batch's keys, which under REPEATABLE READ locks every row in the range and the
  // gaps between them.
  for (const [kind, keyType, key] of [
    ['integer', 'BIGINT', (n: number): PkValue => n],
    ['text', 'VARCHAR(20)', (n: number): PkValue => `k${n}`],
  ] as const) {
    it.skipIf(!dialectAvailable('mysql'))(
      `locks only the rows it rewrites: the application writes other rows in the batch key range meanwhile (${kind} keys)`,
      async () => {
        await onFreshMysql(async (db, connect) => {
          const app = await connect();
          await db.knex.raw(`CREATE TABLE gap (id ${keyType} PRIMARY KEY, email TEXT)`);
          await db.knex('gap').insert([10, 20, 30, 40].map((id) => ({ id: key(id), email: `v1:${id}` })));
          const plan = db.adapter.compareAndSetPlan({
            table: 'gap',
            pk: 'id',
            columns: ['email'],
            batch: casBatch(
              ['email'],
              [10, 40].map((id) => ({ pk: key(id), changes: { email: [`v1:${id}`, `v2:${id}`] } })),
            ),
          });
          expect(plan.sql.startsWith('UPDATE `gap`')).toBe(kind === 'integer');
          const trx = await db.knex.transaction();
          try {
            expect(await db.adapter.runCompareAndSet(trx, plan)).toBe(2);
            // While keyctl's transaction is open: a row between the batch's rows is updated, a new key
            // inserted between them, and a row of the batch waits (and gives up after a second).
            await app.knex.transaction(async (t2) => {
              await t2.raw('SET SESSION innodb_lock_wait_timeout = 1');
              await t2('gap')
                .where({ id: key(20) })
                .update({ email: 'app:20' });
              await t2('gap').insert({ id: key(25), email: 'app:25' });
              await expect(
                t2('gap')
                  .where({ id: key(40) })
                  .update({ email: 'app:40' }),
              ).rejects.toThrow(/Lock wait timeout/);
            });
            await trx.commit();
          } catch (err) {
            await trx.rollback().catch(() => undefined);
            throw err;
          }
          const rows: Array<{ id: number | string; email: string }> = await db.knex('gap').orderBy('id');
          expect(rows.map((r) => [String(r.id).replace('k', ''), r.email])).toEqual([
            ['10', 'v2:10'],
            ['20', 'app:20'],
            ['25', 'app:25'],
            ['30', 'v1:30'],
            ['40', 'v2:40'],
          ]);
        });
      },
    );
  }

  // The SET reads nothing of t and t comes first in the join, so MariaDB updates each row as it
  // reads it. Otherwise a multiple-table UPDATE copies every row to update into a temporary table,
  // then reads each again by position (Handler_read_rnd), about a third of the server's work per
  // row (docs/performance.md). An unindexed derived table would be scanned once per row of t
  // (Handler_read_rnd_next in the millions here).
  for (const composite of [false, true]) {
    it.skipIf(!dialectAvailable('mysql'))(
      `updates each row of an integer-keyed table as it reads it, with the batch found by an index (${composite ? 'composite' : 'one-column'} key)`,
      async () => {
        await onFreshMysql(async (db) => {
          await db.knex.raw(
            composite
              ? 'CREATE TABLE fly (org INT, id BIGINT, a TEXT, b TEXT, PRIMARY KEY (org, id))'
              : 'CREATE TABLE fly (id BIGINT PRIMARY KEY, a TEXT, b TEXT)',
          );
          const org = (id: number) => (composite ? { org: id % 3 } : {});
          // The batch is every third row of the table: a scan of the whole table would read 3n rows.
          const n = 2000;
          const ids = Array.from({ length: n }, (_, i) => 3 * i + 1);
          const all = Array.from({ length: 3 * n }, (_, i) => i + 1);
          await db.knex.batchInsert(
            'fly',
            all.map((id) => ({ ...org(id), id, a: `v1:a${id}`, b: id % 2 ? `v1:b${id}` : null })),
            500,
          );
          // A composite key's rows in key order, the key flat (org, id) per row.
          const order = composite ? [...ids].sort((x, y) => (x % 3) - (y % 3) || x - y) : ids;
          const batch = casBatch(
            ['a', 'b'],
            order.map((id) => ({
              pk: id,
              changes: { a: [`v1:a${id}`, `v2:a${id}`], ...(id % 2 ? { b: [`v1:b${id}`, `v2:b${id}`] as [string, string] } : {}) },
            })),
          );
          if (composite) batch.pks = order.flatMap((id) => [id % 3, id]);
          const plan = db.adapter.compareAndSetPlan({ table: 'fly', pk: composite ? ['org', 'id'] : 'id', columns: ['a', 'b'], batch });
          expect(plan.sql.startsWith('UPDATE `fly` AS t STRAIGHT_JOIN')).toBe(true);
          const counters = async (trx: Knex.Transaction) => {
            const [rows] = (await trx.raw(
              `SELECT VARIABLE_NAME AS name, VARIABLE_VALUE AS value FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME IN ('HANDLER_READ_RND', 'HANDLER_READ_RND_NEXT', 'HANDLER_UPDATE')`,
            )) as [Array<{ name: string; value: string }>];
            return Object.fromEntries(rows.map((r) => [r.name, Number(r.value)]));
          };
          const [before, updated, after] = await db.knex.transaction(
            async (trx) => [await counters(trx), await db.adapter.runCompareAndSet(trx, plan), await counters(trx)] as const,
          );
          expect(updated).toBe(n);
          expect(after.HANDLER_UPDATE! - before.HANDLER_UPDATE!).toBe(n);
          expect(after.HANDLER_READ_RND! - before.HANDLER_READ_RND!).toBe(0);
          expect(after.HANDLER_READ_RND_NEXT! - before.HANDLER_READ_RND_NEXT!).toBeLessThan(2 * n);
          const rows: Array<{ id: number; a: string; b: string | null }> = await db.knex('fly').orderBy('id');
          const rewritten = new Set(ids);
          expect(rows.map((r) => [r.a, r.b])).toEqual(
            all.map((id) => (rewritten.has(id) ? [`v2:a${id}`, id % 2 ? `v2:b${id}` : null] : [`v1:a${id}`, id % 2 ? `v1:b${id}` : null])),
          );
        });
      },
    );
  }

  // Integer keys: the per-row statement leaves a row the application changed in a column keyctl does
  // not rewrite (or whose NULL it filled); the per-column statement then rewrites the row's other
  // columns, and keeps the application's values. A column not rewritten gets its value back.
  it.skipIf(!dialectAvailable('mysql'))(
    'integer keys: a row changed in a column keyctl does not rewrite keeps it, and its other columns are rewritten',
    async () => {
      await onFreshMysql(async (db) => {
        await db.knex.raw('CREATE TABLE whole (id BIGINT PRIMARY KEY, a TEXT, b TEXT)');
        await db.knex('whole').insert([
          { id: 1, a: 'v1:a1', b: 'v1:b1' },
          { id: 2, a: 'v1:a2', b: 'v2:b2' },
          { id: 3, a: 'v1:a3', b: null },
          { id: 4, a: 'v1:a4', b: 'v2:b4' },
          { id: 5, a: 'v1:a5', b: null },
        ]);
        const batch = casBatch(
          ['a', 'b'],
          [
            { pk: 1, changes: { a: ['v1:a1', 'v2:a1'], b: ['v1:b1', 'v2:b1'] } },
            { pk: 2, changes: { a: ['v1:a2', 'v2:a2'] }, kept: { b: 'v2:b2' } },
            { pk: 3, changes: { a: ['v1:a3', 'v2:a3'] } },
            { pk: 4, changes: { a: ['v1:a4', 'v2:a4'] }, kept: { b: 'v2:b4' } },
            { pk: 5, changes: { a: ['v1:a5', 'v2:a5'] } },
          ],
        );
        // The application, after keyctl read the batch: row 4's b (not to be rewritten) and row 5's NULL b.
        await db.knex('whole').where({ id: 4 }).update({ b: 'v2:app4' });
        await db.knex('whole').where({ id: 5 }).update({ b: 'v2:app5' });
        const plan = db.adapter.compareAndSetPlan({ table: 'whole', pk: 'id', columns: ['a', 'b'], batch });
        expect(plan.sql).toContain(' IN (');
        expect(await db.knex.transaction((trx) => db.adapter.runCompareAndSet(trx, plan))).toBe(5);
        const rows: Array<{ a: string; b: string | null }> = await db.knex('whole').orderBy('id');
        expect(rows.map((r) => [r.a, r.b])).toEqual([
          ['v2:a1', 'v2:b1'],
          ['v2:a2', 'v2:b2'],
          ['v2:a3', null],
          ['v2:a4', 'v2:app4'],
          ['v2:a5', 'v2:app5'],
        ]);
      });
    },
  );

  // A batch with a row of over 8 KB goes as text, where the keys would be literals: MariaDB turns an
  // IN list of 1,000 literals or more into a join that leaves the batch unindexed (n² reads).
  it.skipIf(!dialectAvailable('mysql'))('a batch that goes as text, of 1,000 integer keys and more, lets the batch drive the join', async () => {
    await onFreshMysql(async (db) => {
      await db.knex.raw('CREATE TABLE big_text (id BIGINT PRIMARY KEY, a MEDIUMTEXT)');
      const n = 1500;
      const ids = Array.from({ length: n }, (_, i) => i + 1);
      const large = `v2:${'x'.repeat(9000)}`;
      await db.knex.batchInsert(
        'big_text',
        ids.map((id) => ({ id, a: `v1:a${id}` })),
        500,
      );
      const batch = casBatch(
        ['a'],
        ids.map((id) => ({ pk: id, changes: { a: [`v1:a${id}`, id === 7 ? large : `v2:a${id}`] } })),
      );
      const plan = db.adapter.compareAndSetPlan({ table: 'big_text', pk: 'id', columns: ['a'], batch });
      expect(plan.prepared).toBe(false);
      // Each table of the join is read first or by an index: no table scanned once per row of another.
      const [explained] = (await db.knex.raw(`EXPLAIN ${plan.sql}`, plan.executions[0] as Knex.RawBinding[])) as [
        Array<{ id: number; table: string; type: string }>,
      ];
      const joined = explained.filter((r) => Number(r.id) === 1);
      expect(joined.slice(1).map((r) => `${r.table}: ${r.type}`)).toEqual([`t: eq_ref`]);
      const counter = async (trx: Knex.Transaction): Promise<number> => {
        const [rows] = (await trx.raw(`SELECT VARIABLE_VALUE AS v FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'HANDLER_READ_RND_NEXT'`)) as [
          Array<{ v: string }>,
        ];
        return Number(rows[0]!.v);
      };
      const [before, updated, after] = await db.knex.transaction(
        async (trx) => [await counter(trx), await db.adapter.runCompareAndSet(trx, plan), await counter(trx)] as const,
      );
      expect(updated).toBe(n);
      expect(after - before).toBeLessThan(10 * n);
      const rows: Array<{ a: string }> = await db.knex('big_text').orderBy('id');
      expect(rows.map((r) => r.a)).toEqual(ids.map((id) => (id === 7 ? large : `v2:a${id}`)));
    });
  });

  // mysql2 caches each prepared statement with the server's description of every parameter, about
  // 450 bytes each: a 2 MiB batch has some 30,000 parameters, and up to 8 statements are cached per
  // connection (docs/performance.md, "Memory"). The dialect drops the descriptions.
  it.skipIf(!dialectAvailable('mysql'))('keeps no parameter descriptions with the prepared statements it caches, and reuses them', async () => {
    await onFreshMysql(async (db) => {
      await db.knex.raw('CREATE TABLE small (id BIGINT PRIMARY KEY, email TEXT)');
      await db.knex('small').insert(Array.from({ length: 300 }, (_, i) => ({ id: i + 1, email: `v1:${i + 1}` })));
      const planFor = (from: number, to: number) =>
        db.adapter.compareAndSetPlan({
          table: 'small',
          pk: 'id',
          columns: ['email'],
          batch: casBatch(
            ['email'],
            Array.from({ length: to - from + 1 }, (_, i) => ({ pk: from + i, changes: { email: [`v1:${from + i}`, `v2:${from + i}`] } })),
          ),
        });
      // 280 and 20 rows: 512 and 64 row slots, two statement texts; 20 more rows reuse the second.
      type Cached = { id: number; parameters: unknown[] };
      const seen = await db.knex.transaction(async (trx) => {
        const conn = await (
          trx as unknown as { client: { acquireConnection(): Promise<{ _statements: { values(): Iterable<Cached> } }> } }
        ).client.acquireConnection();
        const plans = [planFor(1, 280), planFor(281, 300 - 10), planFor(291, 300)];
        expect(plans.map((p) => p.prepared)).toEqual([true, true, true]);
        expect(plans[2]!.sql).toBe(plans[1]!.sql);
        const updated: number[] = [];
        const cache: Cached[][] = [];
        for (const plan of plans) {
          updated.push(await db.adapter.runCompareAndSet(trx, plan));
          cache.push([...conn._statements.values()]);
        }
        return { updated, cache };
      });
      expect(seen.updated).toEqual([280, 10, 10]);
      expect(seen.cache.map((c) => c.length)).toEqual([1, 2, 2]);
      expect(seen.cache[2]![0]!.id).toBe(seen.cache[1]![0]!.id);
      for (const statement of seen.cache.flat()) expect(statement.parameters).toEqual([]);
      const rows: Array<{ email: string }> = await db.knex('small').orderBy('id');
      expect(rows.map((r) => r.email)).toEqual(Array.from({ length: 300 }, (_, i) => `v2:${i + 1}`));
    });
  });
});
