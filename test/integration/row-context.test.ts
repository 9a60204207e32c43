/**
 * Row context (issue 18 #3 and #4), on every dialect: associated data binds each value to its row
 * and column, so a value copied to another row fails verify; adding it to existing values is a
 * rotation (`from: { codec: aes-gcm }`) that rolls back to unbound values; per-profile derived keys
 * are re-derived by a rotation; a row whose context cannot be rendered (NULL, an integer beyond
 * 2^53 that the driver returns as a float) is a reported failure whose value is left alone. Values
 * made by Python's cryptography are rotated by keyctl and read back by Python.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/base/errors.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey, promote, rollback } from '../../src/core/rotation/steps.js';
import { verify } from '../../src/core/rotation/verify.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { decryptForRow, deriveKey, encryptForRow } from '../../src/crypto/context.js';
import { generateKey } from '../../src/crypto/keys.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { openTestContext, openWithKeyV1 } from '../helpers/context.js';

const aes = new AesGcmV1Codec();
const ROWS = 150;
const POLICY = 'policy:\n  minPropagationSeconds: 0\n  rollbackWindowDays: 30\n  retiredKeyRetentionDays: 0\n';
const AAD = '{table}.{column}:{tenant_id}/{id}';
const bindTarget = `targets:\n  - table: users\n    columns: [email, note]\n    aad: "${AAD}"\n    from:\n      codec: aes-gcm\n      versions: [v1]\n${POLICY}`;
const deriveTarget = `targets:\n  - table: profiles\n    columns: [ssn]\n    derive:\n      info: "{user_id}"\n${POLICY}`;
/** 2^53 + 7: exact as text or bigint, not as a JavaScript number. */
const BIG_USER = 9007199254740999n;

const plain = (id: number, c: string): string => `${c} of ${id} ünï`;

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`row context on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    it('binding existing values is a rotation; a copied value fails verify; a NULL context is a failure left alone; rollback unbinds', async () => {
      const { ctx, k1 } = await openWithKeyV1(t, bindTarget);
      await ctx.db.knex.schema.createTable('users', (tb) => {
        tb.increments('id').primary();
        tb.integer('tenant_id');
        tb.text('email');
        tb.text('note');
      });
      const rows = [];
      for (let id = 1; id <= ROWS; id++)
        rows.push({
          id,
          tenant_id: id === ROWS ? null : 1 + (id % 3),
          email: aes.encrypt(plain(id, 'email'), 'v1', k1),
          note: aes.encrypt(plain(id, 'note'), 'v1', k1),
        });
      await ctx.db.knex('users').insert(rows);

      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      // The application moves a row to another tenant between keyctl's read and its write, leaving
      // the value as it is: sealed for the old tenant, it must not be written; the next pass binds
      // it to the new one.
      let moved: number | null = null;
      const run = await reencrypt(ctx, {
        dryRun: false,
        batchSize: 32,
        cryptoWorkers: 2,
        afterRead: async (_table, batch) => {
          if (moved !== null) return;
          moved = Number(batch[3]!.id);
          await ctx.db.knex('users').where({ id: moved }).update({ tenant_id: 7 });
        },
      });
      expect(moved).not.toBeNull();
      expect(run.tables[0]!.rowsSkippedConcurrent).toBe(1);
      // The row without a tenant cannot be bound: reported, never rewritten.
      expect(run.failures).toEqual([
        { table: 'users', pk: String(ROWS), column: 'email', reason: 'context-null' },
        { table: 'users', pk: String(ROWS), column: 'note', reason: 'context-null' },
      ]);
      expect((await ctx.db.knex('users').where({ id: ROWS }).first()).email).toBe(rows[ROWS - 1]!.email);
      await ctx.db.knex('users').where({ id: ROWS }).update({ tenant_id: 9 });
      expect((await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 })).failures).toEqual([]);
      expect((await verify(ctx, {})).problems).toEqual([]);

      const keys = (await ctx.keystore.read())!.doc.keys;
      const stored: Array<{ id: number; tenant_id: number; email: string; note: string }> = await ctx.db.knex('users').orderBy('id');
      for (const r of stored) {
        for (const c of ['email', 'note'] as const) {
          expect(aes.versionOf(r[c])).toBe('v2');
          expect(decryptForRow(r[c], (v) => keys.get(v), { aad: AAD }, r, { table: 'users', column: c })).toBe(plain(r.id, c));
          // Bound: without its context the value does not open.
          expect(() => aes.decrypt(r[c], (v) => keys.get(v))).toThrow(/authenticate/);
        }
      }

      // A value copied to another row (or column) no longer authenticates there.
      await ctx.db.knex('users').where({ id: 2 }).update({ email: stored[0]!.email, note: stored[1]!.email });
      const bad = await verify(ctx, {});
      expect(bad.passed).toBe(false);
      expect(bad.failures.map((f) => [f.pk, f.column, f.reason])).toEqual([
        ['2', 'email', 'authentication-failed'],
        ['2', 'note', 'authentication-failed'],
      ]);
      await ctx.db.knex('users').where({ id: 2 }).update({ email: stored[1]!.email, note: stored[1]!.note });
      expect((await verify(ctx, {})).passed).toBe(true);

      // Rolled back, v1 is written without context again, as the application wrote it.
      await rollback(ctx, { reason: 'the application cannot bind yet' });
      expect((await reencrypt(ctx, { dryRun: false, batchSize: 50, cryptoWorkers: 0 })).remaining).toBe(0);
      expect((await verify(ctx, {})).rotation!.phase).toBe('rolled_back');
      for (const r of (await ctx.db.knex('users').orderBy('id')) as typeof stored) {
        expect(aes.decrypt(r.email, (v) => (v === 'v1' ? k1 : undefined))).toBe(plain(r.id, 'email'));
        expect(aes.decrypt(r.note, (v) => (v === 'v1' ? k1 : undefined))).toBe(plain(r.id, 'note'));
      }
    });

    it('per-profile derived keys are re-derived by a rotation; a user id beyond 2^53 is exact or refused, never rounded', async () => {
      const { ctx, k1 } = await openWithKeyV1(t, deriveTarget);
      await ctx.db.knex.schema.createTable('profiles', (tb) => {
        tb.increments('id').primary();
        tb.bigInteger('user_id');
        tb.text('ssn');
      });
      const names = { table: 'profiles', column: 'ssn' };
      const derive = { derive: '{user_id}' };
      const rows: Array<Record<string, unknown>> = [];
      for (let id = 1; id <= ROWS; id++)
        rows.push({ id, user_id: 5000 + id, ssn: encryptForRow(plain(id, 'ssn'), 'v1', k1, derive, { user_id: 5000 + id }, names) });
      rows.push({ id: ROWS + 1, user_id: BIG_USER.toString(), ssn: encryptForRow('big', 'v1', k1, derive, { user_id: BIG_USER }, names) });
      await ctx.db.knex('profiles').insert(rows);

      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const run = await reencrypt(ctx, { dryRun: false, batchSize: 40, cryptoWorkers: 2 });
      if (dialect === 'sqlite') {
        // better-sqlite3 returns a JavaScript number, which cannot hold 2^53 + 7: refused, not rounded.
        expect(run.failures).toEqual([{ table: 'profiles', pk: String(ROWS + 1), column: 'ssn', reason: 'context-unsupported' }]);
        await ctx.db
          .knex('profiles')
          .where({ id: ROWS + 1 })
          .delete();
        await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 });
      } else expect(run.failures).toEqual([]);
      expect((await verify(ctx, {})).problems).toEqual([]);
      await promote(ctx, {});

      const k2 = (await ctx.keystore.read())!.doc.keys.get('v2')!;
      const stored: Array<{ id: number; user_id: unknown; ssn: string }> = await ctx.db.knex('profiles').orderBy('id');
      for (const r of stored) {
        const user = r.id > ROWS ? BIG_USER : BigInt(String(r.user_id));
        const want = r.id > ROWS ? 'big' : plain(r.id, 'ssn');
        expect(aes.versionOf(r.ssn)).toBe('v2');
        // The row's own key under v2, HKDF(v2, user id): not v2's key itself.
        expect(aes.decrypt(r.ssn, (v) => (v === 'v2' ? deriveKey(k2, Buffer.from(user.toString())) : undefined))).toBe(want);
        expect(() => aes.decrypt(r.ssn, (v) => (v === 'v2' ? k2 : undefined))).toThrow(/authenticate/);
      }
    });
  });
}

// Values Python's cryptography wrote with AAD and a derived key are rotated by keyctl and read back
// by Python (SQLite: the format, not the database, is what is checked).
const ci = process.env.CI === 'true' || process.env.CI === '1';
const havePython = spawnSync('python3', ['-c', 'import cryptography'], { encoding: 'utf8' }).status === 0;
const script = (name: string): string => fileURLToPath(new URL(`../vectors/${name}`, import.meta.url));

describe('row context: configuration checked against the table', () => {
  const t = perTestDatabase('sqlite');

  it('a template column the table lacks is a config error naming the key, before anything runs', async () => {
    const config = `targets:\n  - table: users\n    columns: [email]\n    aad: "{table}:{tenant}/{id}"\n${POLICY}`;
    const ctx = await openTestContext(t.db, { extraConfig: config });
    t.cleanup(() => ctx.db.close());
    await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', generateKey()]]) }, null, 'create');
    await reconcileRegistry(ctx);
    await ctx.db.knex.schema.createTable('users', (tb) => {
      tb.increments('id').primary();
      tb.text('email');
    });
    const err = (await reencrypt(ctx, { dryRun: true }).catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.problems.join('\n')).toContain('targets[0].aad: the template reads {tenant}, but table "users" has no column "tenant"');
  });
});

describe('row context: templates that read no row column', () => {
  const t = perTestDatabase('sqlite');

  it('a template of the target alone ({table}.{column}) still rotates, binding each value to its column', async () => {
    const config = `targets:\n  - table: users\n    columns: [email, note]\n    aad: "{table}.{column}"\n${POLICY}`;
    const { ctx, k1 } = await openWithKeyV1(t, config);
    await ctx.db.knex.schema.createTable('users', (tb) => {
      tb.increments('id').primary();
      tb.text('email');
      tb.text('note');
    });
    const names = (column: string) => ({ table: 'users', column });
    const spec = { aad: '{table}.{column}' };
    await ctx.db.knex('users').insert(
      Array.from({ length: 20 }, (_, i) => ({
        id: i + 1,
        email: encryptForRow(`e${i}`, 'v1', k1, spec, {}, names('email')),
        note: encryptForRow(`n${i}`, 'v1', k1, spec, {}, names('note')),
      })),
    );
    await generate(ctx, { emergency: false });
    await dualKey(ctx);
    const run = await reencrypt(ctx, { dryRun: false, cryptoWorkers: 2, batchSize: 7 });
    expect(run.failures).toEqual([]);
    expect(run.remaining).toBe(0);
    // A note copied into email no longer opens there.
    const row = await ctx.db.knex('users').where({ id: 1 }).first();
    await ctx.db.knex('users').where({ id: 2 }).update({ email: row.note });
    expect((await verify(ctx, {})).failures.map((f) => [f.pk, f.column, f.reason])).toEqual([['2', 'email', 'authentication-failed']]);
  });
});

describe.skipIf(!havePython && !ci)('row context interoperability with Python, through a rotation', () => {
  const t = perTestDatabase('sqlite');

  it('Python-made values bound to their rows are rotated by keyctl and read back by Python', async () => {
    const aad = '{table}.{column}:{tenant_id}/{id}';
    const info = '{tenant_id}';
    const config = `targets:\n  - table: notes\n    columns: [body]\n    aad: "${aad}"\n    derive:\n      info: "${info}"\n${POLICY}`;
    const { ctx, k1 } = await openWithKeyV1(t, config);
    const PLAINTEXTS = ['', 'alice@example.com', 'Zoë Ωmega 日本語 🚀', '\ufeffbom first', 'x'.repeat(300), 'a:b\nc'];
    const input = PLAINTEXTS.map((p, i) => ({ column: 'body', row: { id: { int: i + 1 }, tenant_id: { int: 40 + (i % 2) } }, plaintext: p }));
    const made = spawnSync('python3', [script('make_context_rows.py')], {
      input: JSON.stringify({ key_hex: k1.toString('hex'), version: 'v1', aad, derive: info, table: 'notes', values: input }),
      encoding: 'utf8',
    });
    expect(made.stderr).toBe('');
    expect(made.status).toBe(0);
    const values: string[] = JSON.parse(made.stdout).values;
    await ctx.db.knex.schema.createTable('notes', (tb) => {
      tb.increments('id').primary();
      tb.integer('tenant_id');
      tb.text('body');
    });
    await ctx.db.knex('notes').insert(values.map((v, i) => ({ id: i + 1, tenant_id: 40 + (i % 2), body: v })));
    await generate(ctx, { emergency: false });
    await dualKey(ctx);
    const run = await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 });
    expect(run.failures).toEqual([]);
    expect(run.tables[0]!.valuesPlanned).toBe(PLAINTEXTS.length);
    const k2 = (await ctx.keystore.read())!.doc.keys.get('v2')!;
    const stored: Array<{ id: number; tenant_id: number; body: string }> = await ctx.db.knex('notes').orderBy('id');
    const check = spawnSync('python3', [script('check_context_with_python.py')], {
      input: JSON.stringify({
        values: stored.map((r) => ({
          name: `row-${r.id}`,
          key_hex: k2.toString('hex'),
          value: r.body,
          plaintext: PLAINTEXTS[r.id - 1],
          aad,
          derive: info,
          table: 'notes',
          column: 'body',
          row: { id: { int: r.id }, tenant_id: { int: r.tenant_id } },
          // The same value must not open as another tenant's row.
          other_row: { id: { int: r.id }, tenant_id: { int: r.tenant_id + 100 } },
        })),
      }),
      encoding: 'utf8',
    });
    expect(check.stdout).not.toContain('MISMATCH');
    expect(check.status).toBe(0);
    expect(check.stdout.trim().split('\n')).toHaveLength(PLAINTEXTS.length);
  });
});
