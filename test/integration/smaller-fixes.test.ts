/**
 * Issue 16, smaller findings, against every dialect: the SQL count classifies each value exactly as
 * the decoder does, whatever the regex engine's idea of `$` (MySQL/MariaDB match it before a final
 * newline); a non-unique primaryKey is refused before reencrypt writes anything.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/base/errors.js';
import { createDemoTable } from '../../src/core/demo.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import type { ProgressEvent } from '../../src/reencrypt/engine.js';
import { dualKey } from '../../src/core/rotation/steps.js';
import { listAudit } from '../../src/rotation/store.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { openDatabase } from '../../src/db/connect.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { openTestContext, testConfig } from '../helpers/context.js';

const codec = new AesGcmV1Codec();

/** What the decoder says of a value: its version, or '#unparseable'. */
function decoderBucket(value: string): string {
  try {
    return codec.versionOf(value);
  } catch {
    return '#unparseable';
  }
}

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`smaller fixes on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    async function open() {
      const config = testConfig(t.db);
      const db = await openDatabase(config.database, { baseDir: config.baseDir });
      t.cleanup(() => db.close());
      return db;
    }

    it('the SQL version count and the decoder agree on trailing and leading line breaks and spaces', async () => {
      const db = await open();
      const good = codec.encrypt('hello', 'v1', generateKey());
      const variants = [
        good,
        `${good}\n`,
        `${good}\r\n`,
        `${good}\r`,
        `\n${good}`,
        `${good} `,
        `${good}\u2028`,
        `${good}\u0085`,
        `${good}\nv1:x`,
        good.toUpperCase(),
      ];
      await db.knex.schema.createTable('shapes', (tb) => {
        tb.integer('id').primary();
        tb.text('secret');
      });
      await db.knex('shapes').insert(variants.map((secret, id) => ({ id, secret })));
      const rows = (await db
        .knex('shapes')
        .select('id', 'secret', { bucket: db.adapter.versionBucket(db.knex, 'secret', { shape: codec.shapePattern }) })
        .orderBy('id')) as Array<{ id: number; secret: string; bucket: string }>;
      expect(rows.map((r) => r.secret)).toEqual(variants); // stored as given
      const got = rows.map((r) => [JSON.stringify(variants[r.id]!.slice(-3)), r.bucket]);
      const want = rows.map((r) => [JSON.stringify(variants[r.id]!.slice(-3)), decoderBucket(variants[r.id]!)]);
      expect(got).toEqual(want);
      expect(want.filter(([, b]) => b === 'v1')).toHaveLength(1);
    });

    it('uniqueKeys lists the primary key and whole-table unique indexes, not composite parts, plain or partial indexes', async () => {
      const db = await open();
      await db.knex.schema.createTable('keyed', (tb) => {
        tb.integer('id').primary();
        tb.string('email', 100).unique();
        tb.integer('a');
        tb.integer('b');
        tb.integer('c').index();
        tb.integer('d');
        tb.integer('e');
        tb.unique(['a', 'b']);
      });
      if (dialect !== 'mysql') await db.knex.raw('CREATE UNIQUE INDEX keyed_e_partial ON keyed (e) WHERE e > 0');
      const keys = await db.adapter.uniqueKeys(db.knex, 'keyed');
      const single = keys.filter((k) => k.length === 1).map((k) => k[0]);
      expect(single.sort()).toEqual(['email', 'id']);
      expect(keys).toContainEqual(['a', 'b']);
      const rowid = await open();
      await rowid.knex.raw('CREATE TABLE plain_pk (pk INTEGER PRIMARY KEY, v TEXT)');
      expect(await rowid.adapter.uniqueKeys(rowid.knex, 'plain_pk')).toEqual([['pk']]);
    });

    it('reencrypt refuses a primaryKey that is not unique, before writing anything, instead of looping', async () => {
      const targets = 'targets:\n  - table: accounts\n    primaryKey: tenant\n    columns: [secret]\npolicy:\n  minPropagationSeconds: 0\n';
      const ctx = await openTestContext(t.db, { extraConfig: targets });
      t.cleanup(() => ctx.db.close());
      const key = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await ctx.db.knex.schema.createTable('accounts', (tb) => {
        tb.integer('id').primary();
        tb.integer('tenant');
        tb.text('secret');
      });
      await ctx.db.knex('accounts').insert(Array.from({ length: 6 }, (_, i) => ({ id: i + 1, tenant: i % 2, secret: codec.encrypt(`s${i}`, 'v1', key) })));
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const stop = new AbortController();
      const timer = setTimeout(() => stop.abort(), 10_000);
      const err = await reencrypt(ctx, { dryRun: false, batchSize: 2, cryptoWorkers: 0, signal: stop.signal }).then(
        (r) => r,
        (e: unknown) => e,
      );
      clearTimeout(timer);
      expect(err).toBeInstanceOf(ConfigError);
      const e = err as ConfigError;
      expect(e.problems.join('\n')).toContain(
        'targets[0].primaryKey: column "tenant" of table "accounts" is neither its primary key nor under a unique index (unique columns: id)',
      );
      expect(e.hint).toContain('CREATE UNIQUE INDEX');
      const stored = (await ctx.db.knex('accounts').select('secret')) as Array<{ secret: string }>;
      expect(stored.map((r) => codec.versionOf(r.secret))).toEqual(Array(6).fill('v1'));
    }, 30_000);

    it('two reencrypt runs without --shard on one table: both finishers leave an audit row with their own work', async () => {
      const targets = 'targets:\n  - table: customers\n    columns: [email, phone, notes]\npolicy:\n  minPropagationSeconds: 0\n';
      const a = await openTestContext(t.db, { extraConfig: targets });
      t.cleanup(() => a.db.close());
      const b = { ...(await openTestContext(t.db, { extraConfig: targets })), actor: 'second@test' };
      t.cleanup(() => b.db.close());
      const key = generateKey();
      await a.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      await reconcileRegistry(a);
      await createDemoTable(a.db, { rows: 50, version: 'v1', key, codec, replace: false });
      await generate(a, { emergency: false });
      await dualKey(a);
      // The second run has read its first batch when the first one starts; it writes only after
      // the first has finished and moved the rotation to reencrypted.
      let readByB!: () => void;
      const bRead = new Promise<void>((r) => (readByB = r));
      let aDone!: () => void;
      const aFinished = new Promise<void>((r) => (aDone = r));
      let first = true;
      const runB = reencrypt(b, {
        dryRun: false,
        batchSize: 1000,
        cryptoWorkers: 0,
        afterRead: async () => {
          if (!first) return;
          first = false;
          readByB();
          await aFinished;
        },
      });
      await bRead;
      await reencrypt(a, { dryRun: false, batchSize: 1000, cryptoWorkers: 0 });
      aDone();
      const rb = await runB;
      expect(rb.rotation.phase).toBe('reencrypted');
      const finishers = (await listAudit(a.db, 'default')).filter((e) => e.action === 'reencrypt' && e.outcome === 'ok');
      expect(finishers.map((e) => [e.actor, e.toPhase])).toEqual([
        ['tester@test', 'reencrypted'],
        ['second@test', 'reencrypted'],
      ]);
      expect(finishers[1]!.details).toMatchObject({ alreadyDone: true, tables: [{ table: 'customers', rowsUpdated: 0 }] });
      expect(finishers[1]!.rowsAffected).toBe(0);
    }, 30_000);

    it('progress: rows done never exceed the total on later passes, and each pass counts from its start', async () => {
      const targets = 'targets:\n  - table: customers\n    columns: [email, phone, notes]\npolicy:\n  minPropagationSeconds: 0\n';
      const ctx = await openTestContext(t.db, { extraConfig: targets });
      t.cleanup(() => ctx.db.close());
      const key = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await createDemoTable(ctx.db, { rows: 40, version: 'v1', key, codec, replace: false });
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      // A writer that has not reloaded the keyring writes under v1 behind the cursor, once in each
      // of the first two passes: three passes in all.
      let reads = 0;
      const events: ProgressEvent[] = [];
      const r = await reencrypt(ctx, {
        dryRun: false,
        batchSize: 10,
        cryptoWorkers: 0,
        onProgress: (e) => events.push({ ...e }),
        afterRead: async () => {
          reads++;
          if (reads === 3 || reads === 7)
            await ctx.db
              .knex('customers')
              .where({ id: 1 })
              .update({ email: codec.encrypt('late@example.com', 'v1', key) });
        },
      });
      expect(r.tables[0]!.passes).toBe(3);
      expect(r.remaining).toBe(0);
      const over = events.filter((e) => e.rowsScanned > e.rowsTotal).map((e) => `pass ${e.pass}: ${e.rowsScanned}/${e.rowsTotal}`);
      expect(over).toEqual([]);
      for (const pass of [1, 2, 3]) {
        const ofPass = events.filter((e) => e.pass === pass && e.throttle === null);
        expect(ofPass.at(-1)).toMatchObject({ rowsScanned: 40, rowsTotal: 40 });
        expect(ofPass[0]!.rowsScanned).toBeLessThanOrEqual(10);
      }
    }, 30_000);
  });
}
