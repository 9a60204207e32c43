/**
 * Issue 16, smaller findings, against every dialect: the SQL count classifies each value exactly as
 * the decoder does, whatever the regex engine's idea of `$` (MySQL/MariaDB match it before a final
 * newline).
 */
import { describe, expect, it } from 'vitest';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { openDatabase } from '../../src/db/connect.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { testConfig } from '../helpers/context.js';

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
        .select('id', 'secret', { bucket: db.adapter.versionBucket(db.knex, 'secret', codec.shapePattern) })
        .orderBy('id')) as Array<{ id: number; secret: string; bucket: string }>;
      expect(rows.map((r) => r.secret)).toEqual(variants); // stored as given
      const got = rows.map((r) => [JSON.stringify(variants[r.id]!.slice(-3)), r.bucket]);
      const want = rows.map((r) => [JSON.stringify(variants[r.id]!.slice(-3)), decoderBucket(variants[r.id]!)]);
      expect(got).toEqual(want);
      expect(want.filter(([, b]) => b === 'v1')).toHaveLength(1);
    });
  });
}
