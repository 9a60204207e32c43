/**
 * Live-writer safety: while reencrypt runs, an application on its own connection keeps updating
 * random rows (new values under the primary key, other columns), deleting rows and inserting
 * rows. At the end every row decrypts and holds exactly the application's last write. For
 * AES-GCM values and for Fernet tokens behind a prefix (`codec: fernet`).
 */
import { describe, expect, it } from 'vitest';
import type { CoreContext } from '../../src/core/context.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey } from '../../src/core/rotation/steps.js';
import { verify } from '../../src/core/rotation/verify.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { FernetCodec } from '../../src/crypto/fernet.js';
import { generateKey } from '../../src/crypto/keys.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { openTestContext } from '../helpers/context.js';

const ROWS = 3000;
const aes = new AesGcmV1Codec();
const fernet = new FernetCodec({ prefix: 'FERNET_V1:' });
/** How the application writes and reads a value in each shape, and how the test tells its version. */
const SHAPES = [
  {
    shape: 'AES-GCM values',
    config: '',
    write: (plain: string, version: string, key: Buffer) => aes.encrypt(plain, version, key),
    read: (value: string, keys: ReadonlyMap<string, Buffer>) => aes.decrypt(value, (v) => keys.get(v)),
    isUnder: (value: string, version: string) => aes.versionOf(value) === version,
  },
  {
    shape: 'Fernet tokens',
    config: '    codec: fernet\n    prefix: "FERNET_V1:"\n',
    write: (plain: string, version: string, key: Buffer) => fernet.encrypt(plain, version, key),
    // MultiFernet([v2, v1]), as the application holds them during the rotation.
    read: (value: string, keys: ReadonlyMap<string, Buffer>) => fernet.decryptWithAny(value, [...keys].reverse()).plaintext,
    isUnder: (value: string, version: string, keys?: ReadonlyMap<string, Buffer>) => fernet.authenticatesUnder(value, keys!.get(version)!),
  },
];

interface Expected {
  email: string;
  note: string;
  visits: number;
}

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`reencrypt under a live writer on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    it.each(SHAPES)("$shape: never overwrites the application's writes, and every row ends under the primary", async (shape) => {
      const TARGETS = `targets:\n  - table: accounts\n    columns: [email, note]\n${shape.config}policy:\n  minPropagationSeconds: 0\n`;
      const ctx: CoreContext = await openTestContext(t.db, { extraConfig: TARGETS });
      const app = await openTestContext(t.db, { extraConfig: TARGETS });
      t.cleanup(
        () => ctx.db.close(),
        () => app.db.close(),
      );
      const k1 = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await ctx.db.knex.schema.createTable('accounts', (t) => {
        t.increments('id').primary();
        t.text('email');
        t.text('note');
        t.integer('visits').notNullable().defaultTo(0);
      });
      const expected = new Map<number, Expected>();
      for (let i = 1; i <= ROWS; i += 250) {
        const batch = [];
        for (let id = i; id < Math.min(i + 250, ROWS + 1); id++) {
          const e = { email: `user${id}@example.com`, note: `note ${id} ${'x'.repeat(id % 150)}`, visits: 0 };
          expected.set(id, e);
          batch.push({ id, email: shape.write(e.email, 'v1', k1), note: shape.write(e.note, 'v1', k1), visits: 0 });
        }
        await ctx.db.knex('accounts').insert(batch);
      }
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const keys = (await ctx.keystore.read())!.doc.keys;
      const k2 = keys.get('v2')!;

      // The application: random updates, other-column changes, deletes and inserts until keyctl is done.
      let running = true;
      let ops = 0;
      let raced = 0;
      let nextId = ROWS + 1;
      // One application write at a time, so `expected` records the order the database saw.
      let queue: Promise<void> = Promise.resolve();
      const appWrite = (id: number): Promise<void> => (queue = queue.then(() => writeOnce(id)));
      const writeOnce = async (id: number): Promise<void> => {
        if (!expected.has(id)) return;
        const r = Math.random();
        if (r < 0.45) {
          const email = `changed${ops}@example.com`;
          await app.db
            .knex('accounts')
            .where({ id })
            .update({ email: shape.write(email, 'v2', k2) });
          expected.get(id)!.email = email;
        } else if (r < 0.7) {
          await app.db
            .knex('accounts')
            .where({ id })
            .update({ visits: app.db.knex.raw('visits + 1') });
          expected.get(id)!.visits++;
        } else if (r < 0.85) {
          await app.db.knex('accounts').where({ id }).delete();
          expected.delete(id);
        } else {
          const newId = nextId++;
          const e = { email: `new${newId}@example.com`, note: `inserted ${newId}`, visits: 0 };
          await app.db.knex('accounts').insert({ id: newId, email: shape.write(e.email, 'v2', k2), note: shape.write(e.note, 'v2', k2), visits: 0 });
          expected.set(newId, e);
        }
        ops++;
      };
      const appLoop = (async () => {
        while (running) {
          const ids = [...expected.keys()];
          await appWrite(ids[Math.floor(Math.random() * ids.length)]!);
          await new Promise((res) => setTimeout(res, 1));
        }
      })();
      let report: Awaited<ReturnType<typeof reencrypt>>;
      try {
        report = await reencrypt(ctx, {
          dryRun: false,
          batchSize: 50,
          // Make sure some writes land between keyctl's read of a batch and its write.
          afterRead: async (_table, rows) => {
            if (Math.random() < 0.5) {
              raced++;
              await appWrite(Number(rows[Math.floor(Math.random() * rows.length)]!.id));
            }
          },
        });
      } finally {
        running = false;
        await appLoop;
      }
      expect(ops).toBeGreaterThan(20);
      expect(raced).toBeGreaterThan(5);
      expect(report.failures).toEqual([]);
      expect(report.rotation.phase).toBe('reencrypted');

      const rows: Array<{ id: number; email: string; note: string; visits: number }> = await ctx.db.knex('accounts').orderBy('id');
      expect(rows.map((r) => Number(r.id))).toEqual([...expected.keys()].sort((a, b) => a - b));
      for (const row of rows) {
        const want = expected.get(Number(row.id))!;
        expect(shape.isUnder(row.email, 'v2', keys)).toBe(true);
        expect(shape.isUnder(row.note, 'v2', keys)).toBe(true);
        expect({
          id: row.id,
          email: shape.read(row.email, keys),
          note: shape.read(row.note, keys),
          visits: Number(row.visits),
        }).toEqual({ id: row.id, ...want });
      }
      expect((await verify(ctx, {})).passed).toBe(true);
    });
  });
}
