/**
 * Onboarding a table that was never encrypted (issue 18 #1): with `plaintext: encrypt`, status
 * counts plaintext apart from unparseable values, a dry run says what it would encrypt and writes
 * nothing, and reencrypt encrypts plaintext under the primary in the same pass that moves old
 * ciphertext. A value that claims to be ciphertext but does not decode stays an error and is never
 * encrypted a second time. On every dialect.
 */
import { describe, expect, it } from 'vitest';
import type { CoreContext } from '../../src/core/context.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey, promote } from '../../src/core/rotation/steps.js';
import { verify } from '../../src/core/rotation/verify.js';
import { countVersions, getStatus } from '../../src/core/status.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { openTestContext } from '../helpers/context.js';

const codec = new AesGcmV1Codec();
const targets = (plaintext: 'encrypt' | 'error') =>
  `targets:\n  - table: people\n    columns: [email, note]\n    plaintext: ${plaintext}\npolicy:\n  minPropagationSeconds: 0\n`;

/** Plaintext as applications stored it before encryption, edge cases included. */
const PLAIN_EDGES = [
  'v2: call back tomorrow',
  '',
  '\uFEFFbom first',
  'ünïcødé ☕ 😀',
  'line one\nline two',
  'v9 no colon',
  ':starts with a colon',
  // Quotes, backslashes and braces: PostgreSQL's array literals must carry them as they are.
  'say "hi", {then} \\ leave',
  'NULL',
];
/** Claims to be ciphertext (v<N>: and a base64 character) but does not decode: never encrypted. */
const DAMAGED = 'v1:AAAAdamaged';

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`plaintext onboarding on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    it('counts plaintext apart, encrypts it in the same pass as the rotation (dry run first), leaves damaged ciphertext alone', async () => {
      const ctx: CoreContext = await openTestContext(t.db, { extraConfig: targets('encrypt') });
      t.cleanup(() => ctx.db.close());
      const k1 = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await ctx.db.knex.schema.createTable('people', (tb) => {
        tb.increments('id').primary();
        tb.text('email');
        tb.text('note');
      });
      // 1..300 plaintext (never encrypted), 301..400 already under v1, 401 damaged, 402 NULLs,
      // 403.. the edge cases.
      const expected = new Map<number, { email: string | null; note: string | null }>();
      const rows: Array<Record<string, unknown>> = [];
      for (let id = 1; id <= 400; id++) {
        const e = { email: `user${id}@example.com`, note: `note ${id}` };
        expected.set(id, e);
        rows.push(id <= 300 ? { id, ...e } : { id, email: codec.encrypt(e.email, 'v1', k1), note: codec.encrypt(e.note, 'v1', k1) });
      }
      rows.push({ id: 401, email: DAMAGED, note: 'plain note beside it' });
      expected.set(401, { email: null, note: 'plain note beside it' });
      rows.push({ id: 402, email: null, note: null });
      expected.set(402, { email: null, note: null });
      PLAIN_EDGES.forEach((p, i) => {
        rows.push({ id: 403 + i, email: p, note: p });
        expected.set(403 + i, { email: p, note: p });
      });
      await ctx.db.knex('people').insert(rows);
      const plainPerColumn = 300 + PLAIN_EDGES.length;

      const before = await countVersions(ctx.db, ctx.config.targets[0]!);
      expect(before.map((c) => [c.column, c.plaintext, c.unparseable, c.counts.v1 ?? 0])).toEqual([
        ['email', plainPerColumn, 1, 100],
        ['note', plainPerColumn + 1, 0, 100],
      ]);
      // Without plaintext: encrypt, the same values are unparseable, as before.
      const strict = await countVersions(ctx.db, { ...ctx.config.targets[0]!, plaintext: 'error' });
      expect(strict.map((c) => [c.plaintext, c.unparseable])).toEqual([
        [0, plainPerColumn + 1],
        [0, plainPerColumn + 1],
      ]);
      const status = await getStatus(ctx);
      expect(status.problems.map((p) => p.code)).toContain('plaintext-values');

      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const dry = await reencrypt(ctx, { dryRun: true, cryptoWorkers: 0 });
      expect(dry.tables[0]).toMatchObject({ plaintextPlanned: 2 * plainPerColumn + 1, valuesPlanned: 2 * plainPerColumn + 1 + 200 });
      expect((await countVersions(ctx.db, ctx.config.targets[0]!)).map((c) => c.plaintext)).toEqual([plainPerColumn, plainPerColumn + 1]);

      const run = await reencrypt(ctx, { dryRun: false, batchSize: 37, cryptoWorkers: 2 });
      expect(run.failures).toEqual([{ table: 'people', pk: '401', column: 'email', reason: 'malformed' }]);
      const after = await countVersions(ctx.db, ctx.config.targets[0]!);
      expect(after.map((c) => [c.column, c.plaintext, c.unparseable, c.counts])).toEqual([
        ['email', 0, 1, { v2: 400 + PLAIN_EDGES.length }],
        ['note', 0, 0, { v2: 401 + PLAIN_EDGES.length }],
      ]);
      const keys = (await ctx.keystore.read())!.doc.keys;
      const stored: Array<{ id: number; email: string | null; note: string | null }> = await ctx.db.knex('people').orderBy('id');
      for (const r of stored) {
        const e = expected.get(r.id)!;
        if (r.id === 401) expect(r.email).toBe(DAMAGED);
        else if (e.email === null) expect(r.email).toBeNull();
        else expect(codec.decrypt(r.email!, (v) => keys.get(v))).toBe(e.email);
        if (e.note === null) expect(r.note).toBeNull();
        else expect(codec.decrypt(r.note!, (v) => keys.get(v))).toBe(e.note);
      }

      // The damaged value keeps the pass from finishing; repaired by hand, the next pass finishes,
      // verify passes and promote goes ahead.
      expect(run.rotation.phase).toBe('reencrypting');
      await ctx.db.knex('people').where({ id: 401 }).update({ email: null });
      const again = await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 });
      expect(again.failures).toEqual([]);
      const v = await verify(ctx, {});
      expect(v.problems).toEqual([]);
      expect((await promote(ctx, {})).phase).toBe('promoted');
    });

    it('verify fails while plaintext is left, and says so', async () => {
      const ctx: CoreContext = await openTestContext(t.db, { extraConfig: targets('encrypt') });
      t.cleanup(() => ctx.db.close());
      const k1 = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await ctx.db.knex.schema.createTable('people', (tb) => {
        tb.increments('id').primary();
        tb.text('email');
        tb.text('note');
      });
      await ctx.db.knex('people').insert([
        { id: 1, email: codec.encrypt('a@example.com', 'v1', k1), note: null },
        { id: 2, email: 'b@example.com', note: null },
      ]);
      const v = await verify(ctx, {});
      expect(v.passed).toBe(false);
      expect(v.problems).toContain('1 plaintext value(s) not encrypted yet (run `keyctl reencrypt`)');
      expect(v.failures).toEqual([]);
    });
  });
}
