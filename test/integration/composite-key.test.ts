/**
 * Targets with a composite primary key (`primaryKey: [tenant_id, id]`, where `id` repeats across
 * tenants) on every dialect: a full rotation, paging on the tuple across batch boundaries inside
 * one tenant, a compare-and-set that hits only its own row, the tuple cursor (stored, shown,
 * resumed), shards, kill -9 and resume of the real binary, and config errors naming the key column.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/base/errors.js';
import type { CoreContext } from '../../src/core/context.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { decryptionScan } from '../../src/core/rotation/decryption-scan.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey, promote, retire } from '../../src/core/rotation/steps.js';
import { verify } from '../../src/core/rotation/verify.js';
import { getStatus } from '../../src/core/status.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { TABLES } from '../../src/db/migrations.js';
import { listVersions, openRotation } from '../../src/rotation/store.js';
import { KEYCTL_BIN } from '../helpers/cli.js';
import { openTestContext, testConfig } from '../helpers/context.js';
import { DIALECTS, dialectAvailable, perTestDatabase, type TestDatabase } from '../helpers/databases.js';

const codec = new AesGcmV1Codec();
const TENANTS = 6;
const PER_TENANT = 150;
const ROWS = TENANTS * PER_TENANT;
const target = (key = '[tenant_id, id]') => `targets:\n  - table: tenant_notes\n    primaryKey: ${key}\n    columns: [email, note]\n`;
const POLICY = `policy:\n  minPropagationSeconds: 0\n  rollbackWindowDays: 0\n  retiredKeyRetentionDays: 0\n`;

interface Plain {
  email: string;
  note: string | null;
}
const plainOf = (tenant: number, id: number): Plain => ({
  email: `user${id}@tenant${tenant}.example`,
  // Some NULLs: left alone, never counted as failures.
  note: id % 11 === 0 ? null : `note ${tenant}/${id} ${'x'.repeat(id % 40)}`,
});
const keyText = (tenant: number, id: number) => `${tenant}/${id}`;

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`composite primary key on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    async function setup(config = target() + POLICY): Promise<{ ctx: CoreContext; k1: Buffer }> {
      const ctx = await openTestContext(t.db, { extraConfig: config });
      t.cleanup(() => ctx.db.close());
      // The CLI (a child process) reads the same file.
      writeFileSync(path.join(t.db.dir, 'keyctl.yaml'), configText(t.db, config));
      const k1 = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await ctx.db.knex.schema.createTable('tenant_notes', (tb) => {
        tb.integer('tenant_id').notNullable();
        tb.integer('id').notNullable();
        tb.text('email');
        tb.text('note');
        tb.primary(['tenant_id', 'id']);
      });
      // Inserted out of key order, so the table's physical order is not the key's.
      const rows = [];
      for (let id = PER_TENANT; id >= 1; id--) {
        for (let tenant = 1; tenant <= TENANTS; tenant++) {
          const p = plainOf(tenant, id);
          rows.push({ tenant_id: tenant, id, email: codec.encrypt(p.email, 'v1', k1), note: p.note === null ? null : codec.encrypt(p.note, 'v1', k1) });
        }
      }
      for (let i = 0; i < rows.length; i += 200) await ctx.db.knex('tenant_notes').insert(rows.slice(i, i + 200));
      return { ctx, k1 };
    }

    /** Every row once, each value under `version` decrypting to its original plaintext (or `overrides`). */
    async function expectIntact(ctx: CoreContext, version: string, overrides = new Map<string, Plain>()): Promise<void> {
      const keys = (await ctx.keystore.read())!.doc.keys;
      const stored = (await ctx.db.knex('tenant_notes').orderBy(['tenant_id', 'id'])) as Array<{
        tenant_id: number;
        id: number;
        email: string;
        note: string | null;
      }>;
      expect(stored).toHaveLength(ROWS);
      expect(new Set(stored.map((r) => keyText(Number(r.tenant_id), Number(r.id)))).size).toBe(ROWS);
      for (const r of stored) {
        const want = overrides.get(keyText(Number(r.tenant_id), Number(r.id))) ?? plainOf(Number(r.tenant_id), Number(r.id));
        expect(codec.versionOf(r.email)).toBe(version);
        expect(codec.decrypt(r.email, (v) => keys.get(v))).toBe(want.email);
        if (want.note === null) expect(r.note).toBeNull();
        else {
          expect(codec.versionOf(r.note!)).toBe(version);
          expect(codec.decrypt(r.note!, (v) => keys.get(v))).toBe(want.note);
        }
      }
    }

    it('runs a full rotation, paging on the tuple in small batches, stopping and resuming on a tuple cursor', async () => {
      const { ctx } = await setup();
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const k2 = (await ctx.keystore.read())!.doc.keys.get('v2')!;

      // Stop after a few batches of 7 (a tenant's 150 rows span many batches), mid-tenant.
      const stop = new AbortController();
      let batches = 0;
      const seen: string[] = [];
      // The application rewrites one row under the new key while its batch is being planned:
      // the compare-and-set must keep the application's value, and touch no other tenant's row 5.
      const appWrite = { email: 'app-wrote@tenant1.example', note: 'app note' };
      const first = await reencrypt(ctx, {
        dryRun: false,
        batchSize: 7,
        cryptoWorkers: 0,
        signal: stop.signal,
        afterRead: async (_table, rows) => {
          for (const r of rows) seen.push(keyText(Number(r.tenant_id), Number(r.id)));
          if (rows.some((r) => Number(r.tenant_id) === 1 && Number(r.id) === 5)) {
            await ctx.db
              .knex('tenant_notes')
              .where({ tenant_id: 1, id: 5 })
              .update({ email: codec.encrypt(appWrite.email, 'v2', k2), note: codec.encrypt(appWrite.note, 'v2', k2) });
          }
          if (++batches === 30) stop.abort();
        },
      });
      expect(first.interrupted).toBe(true);
      const [cp] = (await ctx.db.knex(TABLES.checkpoints).select('cursor')) as Array<{ cursor: string }>;
      const cursor = JSON.parse(cp!.cursor) as unknown;
      // Stored as a JSON array in key order, e.g. [2,54].
      expect(Array.isArray(cursor) && cursor.length === 2 && cursor.every((v) => typeof v === 'number')).toBe(true);
      const [tenant, id] = cursor as [number, number];
      const status = await getStatus(ctx);
      expect(status.rotation!.reencrypt[0]).toMatchObject({ state: 'interrupted', stoppedAfter: `(${tenant}, ${id})` });

      const rest = await reencrypt(ctx, {
        dryRun: false,
        batchSize: 7,
        cryptoWorkers: 0,
        afterRead: async (_table, rows) => {
          for (const r of rows) seen.push(keyText(Number(r.tenant_id), Number(r.id)));
        },
      });
      expect(rest.tables[0]!.resumedFrom).toBe(`(${tenant}, ${id})`);
      expect(rest.failures).toEqual([]);
      expect(rest.remaining).toBe(0);
      expect(rest.rotation.phase).toBe('reencrypted');
      // Every row read in the first pass, in key order; the batch planned but not written when the
      // first run stopped is read again, nothing else twice.
      const firstPass = seen.slice(0, seen.lastIndexOf(keyText(TENANTS, PER_TENANT)) + 1);
      expect(new Set(firstPass).size).toBe(ROWS);
      expect(firstPass.length - ROWS).toBeLessThanOrEqual(7);
      await expectIntact(ctx, 'v2', new Map([[keyText(1, 5), appWrite]]));

      const v = await verify(ctx, {});
      expect(v.passed).toBe(true);
      expect(v.checked).toEqual({ v2: 2 * ROWS - Math.floor(PER_TENANT / 11) * TENANTS });
      expect((await promote(ctx)).phase).toBe('promoted');
      // retire destroys v1 after its own decryption scan of the composite-key table.
      expect((await retire(ctx, {})).phase).toBe('retired');
      expect((await listVersions(ctx.db, 'default')).map((x) => [x.version, x.state, x.material])).toEqual([
        ['v1', 'retired', 'destroyed'],
        ['v2', 'primary', 'present'],
      ]);
      expect(await openRotation(ctx.db, 'default')).toBeNull();
      await expectIntact(ctx, 'v2', new Map([[keyText(1, 5), appWrite]]));
    });

    it('reports an undecryptable value by its tuple, and shards on the key’s last column', async () => {
      const { ctx } = await setup();
      await ctx.db.knex('tenant_notes').where({ tenant_id: 3, id: 42 }).update({ email: 'v1:AAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAA' });
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const s0 = await reencrypt(ctx, { dryRun: false, batchSize: 9, cryptoWorkers: 0, shard: { index: 0, count: 2 } });
      expect(s0.tables[0]!.rowsScanned).toBe(ROWS / 2);
      const s1 = await reencrypt(ctx, { dryRun: false, batchSize: 9, cryptoWorkers: 0, shard: { index: 1, count: 2 } });
      expect(s1.tables[0]!.rowsScanned).toBe(ROWS / 2);
      expect([...s0.failures, ...s1.failures].map((f) => [f.pk, f.column])).toEqual([['(3, 42)', 'email']]);
      // verify's (and every destruction's) decryption scan names the row the same way.
      const keys = (await ctx.keystore.read())!.doc.keys;
      const scan = await decryptionScan(ctx, keys, { batchSize: 8 });
      expect(scan.failures.map((f) => [f.pk, f.column])).toEqual([['(3, 42)', 'email']]);
      expect(scan.checked).toEqual({ v2: 2 * ROWS - Math.floor(PER_TENANT / 11) * TENANTS - 1 });
    });

    it('resumes after kill -9 of the binary at random points with every row intact exactly once', async () => {
      const { ctx } = await setup();
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const scanned = async () => Number(((await ctx.db.knex(TABLES.checkpoints).sum({ n: 'rows_scanned' }).first()) as { n?: unknown } | undefined)?.n ?? 0);
      const cursors: unknown[] = [];
      for (let i = 0; i < 3; i++) {
        const done = await scanned();
        await killMidRun(t.db, async () => (await scanned()) >= done + 20 + Math.floor(Math.random() * ((ROWS - done) / 3)));
        const row = (await ctx.db.knex(TABLES.checkpoints).first('cursor')) as { cursor: string | null } | undefined;
        cursors.push(row?.cursor ? JSON.parse(row.cursor) : null);
      }
      // Each kill left a tuple cursor, never going backwards.
      const tuples = cursors.filter((c): c is [number, number] => Array.isArray(c));
      expect(tuples.length, `cursors after each kill: ${JSON.stringify(cursors)}`).toBeGreaterThanOrEqual(2);
      const order = tuples.map(([a, b]) => a * 1_000_000 + b);
      expect([...order].sort((a, b) => a - b)).toEqual(order);

      const done = await reencrypt(ctx, { dryRun: false, batchSize: 7, cryptoWorkers: 0 });
      expect(done.remaining).toBe(0);
      expect(done.failures).toEqual([]);
      await expectIntact(ctx, 'v2');
      expect((await verify(ctx, {})).passed).toBe(true);
    });

    it('refuses an unknown key column, and key columns that are not unique, naming the config path', async () => {
      const bad = await setup(target('[tenant_id, nope]') + POLICY);
      const err = await generate(bad.ctx, { emergency: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual([`${bad.ctx.config.file}: targets[0].primaryKey[1]: table "tenant_notes" has no column "nope"`]);
      // A key listed twice is a schema error.
      const twice = (() => {
        try {
          return testConfig(t.db, target('[id, id]'));
        } catch (e) {
          return e;
        }
      })();
      expect(twice).toBeInstanceOf(ConfigError);
      expect((twice as ConfigError).problems.join('\n')).toMatch(/targets\[0\]\.primaryKey: a column name, or a list of up to 8 different column names/);
    });

    it('refuses key columns that hold no unique key before writing anything', async () => {
      const { ctx } = await setup();
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const loose = await openTestContext(t.db, { extraConfig: target('[id, email]') + POLICY });
      t.cleanup(() => loose.db.close());
      const err = await reencrypt(loose, { dryRun: false, batchSize: 7, cryptoWorkers: 0 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems).toEqual([
        `${loose.config.file}: targets[0].primaryKey: columns (id, email) of table "tenant_notes" hold neither its primary key nor a unique index (unique keys: (tenant_id, id))`,
      ]);
      const [moved] = (await ctx.db.knex('tenant_notes').where('email', 'like', 'v2:%').count({ n: '*' })) as Array<{ n: unknown }>;
      expect(Number(moved?.n)).toBe(0);
    });
  });
}

function configText(tdb: TestDatabase, extra: string): string {
  return `database:\n  client: ${tdb.dialect}\n  connection: ${JSON.stringify(tdb.connection)}\nkeystore:\n  provider: file\n  path: keyring.json\n${extra}`;
}

/** Start `keyctl reencrypt` as a child process and SIGKILL it once `ready` says so, plus a random few ms. */
async function killMidRun(tdb: TestDatabase, ready: () => Promise<boolean>): Promise<void> {
  const child = spawn(process.execPath, [KEYCTL_BIN, 'reencrypt', '--batch-size', '7'], { cwd: tdb.dir, env: { ...process.env }, stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  let running = true;
  void exited.then(() => (running = false));
  while (running) {
    if (await ready().catch(() => false)) {
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 15)));
      child.kill('SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  await exited;
}
