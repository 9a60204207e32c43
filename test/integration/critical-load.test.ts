/**
 * --critical-load (issue 17 #11): with the database busier than the critical threshold,
 * reencrypt stops before its next batch, cursor saved, as an interrupted (resumable) run that
 * says why; without the load it finishes. SQLite has no server load and refuses the flag.
 */
import { describe, expect, it } from 'vitest';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey } from '../../src/core/rotation/steps.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { openTestContext } from '../helpers/context.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';

const codec = new AesGcmV1Codec();
const TARGETS = `targets:\n  - table: people\n    columns: [email]\npolicy:\n  minPropagationSeconds: 0\n`;

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`reencrypt --critical-load on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    it(dialect === 'sqlite' ? 'is refused: SQLite has no server load' : 'stops before the next batch, resumable, when the load is above it', async () => {
      const ctx = await openTestContext(t.db, { extraConfig: TARGETS });
      const busy = await openTestContext(t.db, { extraConfig: TARGETS });
      t.cleanup(
        () => ctx.db.close(),
        () => busy.db.close(),
      );
      const k1 = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await ctx.db.knex.schema.createTable('people', (tb) => {
        tb.increments('id').primary();
        tb.text('email');
      });
      await ctx.db.knex('people').insert(Array.from({ length: 300 }, (_, i) => ({ id: i + 1, email: codec.encrypt(`p${i}@example.com`, 'v1', k1) })));
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      if (dialect === 'sqlite') {
        await expect(reencrypt(ctx, { dryRun: false, criticalLoad: 5, cryptoWorkers: 0 })).rejects.toThrow('--critical-load needs PostgreSQL or MySQL/MariaDB');
        return;
      }
      await expect(reencrypt(ctx, { dryRun: false, maxLoad: 5, criticalLoad: 5, cryptoWorkers: 0 })).rejects.toThrow(
        '--critical-load 5 must be above --max-load 5',
      );
      // Three sessions busy for a few seconds: the load is at least 3.
      const sleepSql = dialect === 'pg' ? 'SELECT pg_sleep(4)' : 'SELECT SLEEP(4)';
      const sleepers = Promise.all([1, 2, 3].map(() => busy.db.knex.raw(sleepSql)));
      await new Promise((r) => setTimeout(r, 500));
      const report = await reencrypt(ctx, { dryRun: false, criticalLoad: 2, cryptoWorkers: 0 });
      expect(report.interrupted).toBe(true);
      expect(report.abortedBecause).toMatch(/^database load \d+ > --critical-load 2$/);
      const [row] = (await ctx.db.knex('keyctl_reencrypt_checkpoints').sum({ n: 'rows_scanned' })) as Array<{ n: unknown }>;
      expect(Number(row?.n ?? 0)).toBe(0);
      await sleepers;
      const done = await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 });
      expect(done).toMatchObject({ interrupted: false, remaining: 0 });
    });
  });
}
