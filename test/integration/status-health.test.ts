/**
 * The `status --check` problems on every dialect, through the core with a movable clock: timestamps
 * read back from each database (timestamptz, datetime(3), ISO text) drive the age checks.
 */
import { describe, expect, it } from 'vitest';
import type { CoreContext } from '../../src/core/context.js';
import { createDemoTable } from '../../src/core/demo.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { dualKey, rollback } from '../../src/core/rotation/steps.js';
import { getStatus } from '../../src/core/status.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { TABLES } from '../../src/db/migrations.js';
import { openTestContext } from '../helpers/context.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';

const HOUR = 3_600_000;
const CONFIG = `targets:\n  - table: customers\n    columns: [email]\npolicy:\n  minPropagationSeconds: 0\n  maxPhaseHours: 48\n  emergencyMaxHours: 12\n`;

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`status problems on ${dialect}`, () => {
    const t = perTestDatabase(dialect);
    let clock = Date.now();

    async function setup(): Promise<CoreContext> {
      clock = Date.now();
      const ctx = await openTestContext(t.db, { extraConfig: CONFIG, now: () => new Date(clock) });
      t.cleanup(() => ctx.db.close());
      const key = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await createDemoTable(ctx.db, { rows: 20, version: 'v1', key, codec: new AesGcmV1Codec(), replace: false });
      return ctx;
    }

    const codesAt = async (ctx: CoreContext, at: number) => {
      const saved = clock;
      clock = at;
      try {
        return (await getStatus(ctx)).problems.map((p) => p.code).sort();
      } finally {
        clock = saved;
      }
    };

    it('ages a phase and an emergency by the configured limits, and flags the compromised key once the rotation is abandoned', async () => {
      const ctx = await setup();
      const start = clock;
      await generate(ctx, { emergency: true, reason: 'INC-1: leaked' });
      expect(await codesAt(ctx, start + HOUR)).toEqual([]);
      expect(await codesAt(ctx, start + 13 * HOUR)).toEqual(['emergency-overdue']);
      expect(await codesAt(ctx, start + 49 * HOUR)).toEqual(['emergency-overdue', 'rotation-stalled']);
      await rollback(ctx, { force: true, reason: 'wrong key named' });
      expect(await codesAt(ctx, start + HOUR)).toEqual(['compromised-key-in-use']);
    });

    it('flags a stalled routine phase, a planted primary and a registry edited outside keyctl', async () => {
      const ctx = await setup();
      const start = clock;
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      expect(await codesAt(ctx, start + 47 * HOUR)).toEqual([]);
      expect(await codesAt(ctx, start + 49 * HOUR)).toEqual(['rotation-stalled']);

      const published = (await ctx.keystore.read())!;
      const planted = new Map(published.doc.keys);
      planted.set('v3', generateKey());
      await ctx.keystore.write({ keyring: 'default', primary: 'v3', keys: planted }, published.revision, 'plant');
      expect(await codesAt(ctx, start)).toEqual(['key-not-in-registry', 'primary-mismatch']);
      await ctx.keystore.write(published.doc, (await ctx.keystore.read())!.revision, 'restore');

      await ctx.db.knex(TABLES.keyVersions).where({ version: 'v1' }).update({ compromised: true });
      expect(await codesAt(ctx, start)).toEqual(['compromised-key-in-use', 'registry-tampered']);
    });
  });
}
