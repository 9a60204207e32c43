// The count that decides whether each tenant of an all-tenants pass may move to `reencrypted`:
// per tenant, its values not under the target, and nothing else.
import { describe, expect, it } from 'vitest';
import { createDemoTable, DEMO_TARGET } from '../../src/core/demo.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { countNotUnderByRing } from '../../src/reencrypt/engine.js';
import { openTestContext } from '../helpers/context.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';

const codec = new AesGcmV1Codec();

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`values left per tenant on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    it('counts each tenant’s values not under the target; NULLs, values under it and rows of no tenant are not counted', async () => {
      const ctx = await openTestContext(t.db, {});
      t.cleanup(() => ctx.db.close());
      const v1 = generateKey();
      const v2 = generateKey();
      await createDemoTable(ctx.db, { rows: 9, version: 'v1', key: v1, codec, replace: false });
      await ctx.db.knex.schema.alterTable('customers', (tb) => tb.string('tenant_id', 64).nullable());
      // a: rows 1–3, b: rows 4–6, c: rows 7–8, row 9 of no tenant.
      const tenantOf = ['a', 'a', 'a', 'b', 'b', 'b', 'c', 'c', null];
      for (const [i, tenant] of tenantOf.entries())
        await ctx.db
          .knex('customers')
          .where({ id: i + 1 })
          .update({ tenant_id: tenant });
      const under = (s: string) => codec.encrypt(s, 'v2', v2);
      // a: row 1 fully under v2, row 2 has one value left and a NULL, row 3 all three left → 4.
      await ctx.db
        .knex('customers')
        .where({ id: 1 })
        .update({ email: under('e'), phone: under('p'), notes: under('n') });
      await ctx.db
        .knex('customers')
        .where({ id: 2 })
        .update({ email: under('e'), phone: null });
      // b: everything left → 9; c: everything under v2 → absent.
      await ctx.db
        .knex('customers')
        .whereIn('id', [7, 8])
        .update({ email: under('e'), phone: under('p'), notes: under('n') });
      const counts = await countNotUnderByRing(ctx.db, DEMO_TARGET, 'tenant_id', 'v2');
      expect(Object.fromEntries(counts)).toEqual({ a: 4, b: 9 });
    });
  });
}
