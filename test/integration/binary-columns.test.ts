/**
 * Binary columns (issue 18 #6), on every dialect: values of a bytea / BLOB column in keyctl's binary
 * layout (docs/format.md, "Binary values") are counted per version by the database, re-encrypted
 * through the same compare-and-set as text (bytes compared as bytes), verified, and onboarded
 * from plaintext bytes with `plaintext: encrypt`; damaged ones are reported and left alone. Python
 * decrypts what keyctl wrote.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/base/errors.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey, promote } from '../../src/core/rotation/steps.js';
import { verify } from '../../src/core/rotation/verify.js';
import { countVersions } from '../../src/core/status.js';
import { decryptBinary, encryptBinary } from '../../src/crypto/binary.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { openWithKeyV1 } from '../helpers/context.js';

const aes = new AesGcmV1Codec();
const ROWS = 200;
const POLICY = 'policy:\n  minPropagationSeconds: 0\n  rollbackWindowDays: 30\n  retiredKeyRetentionDays: 0\n';
const target = (plaintext: 'error' | 'encrypt') => `targets:\n  - table: files\n    columns: [doc, note]\n    plaintext: ${plaintext}\n${POLICY}`;
/** Bytes of every value 0..255, NUL and 0xB1 included, of varying length. */
const bytesOf = (id: number) => Buffer.from(Array.from({ length: id % 50 }, (_, i) => (id * 31 + i * 7) % 256));
const ci = process.env.CI === 'true' || process.env.CI === '1';
const havePython = spawnSync('python3', ['-c', 'import cryptography'], { encoding: 'utf8' }).status === 0;

async function createFiles(ctx: Awaited<ReturnType<typeof openWithKeyV1>>['ctx']): Promise<void> {
  await ctx.db.knex.schema.createTable('files', (tb) => {
    tb.increments('id').primary();
    tb.binary('doc');
    tb.text('note');
  });
}

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`binary columns on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    it('counts, re-encrypts and verifies binary values beside text ones; damaged bytes are reported, never rewritten', async () => {
      const { ctx, k1 } = await openWithKeyV1(t, target('error'));
      await createFiles(ctx);
      const rows: Array<Record<string, unknown>> = [];
      for (let id = 1; id <= ROWS; id++) rows.push({ id, doc: encryptBinary(bytesOf(id), 'v1', k1), note: aes.encrypt(`note ${id}`, 'v1', k1) });
      const truncated = encryptBinary(Buffer.from('x'), 'v1', k1).subarray(0, 20);
      rows.push({ id: ROWS + 1, doc: null, note: null });
      rows.push({ id: ROWS + 2, doc: truncated, note: null });
      rows.push({ id: ROWS + 3, doc: Buffer.from([1, 2, 3]), note: null });
      await ctx.db.knex('files').insert(rows);

      const before = await countVersions(ctx.db, ctx.config.targets[0]!);
      expect(before.map((c) => [c.column, c.counts, c.null, c.unparseable])).toEqual([
        ['doc', { v1: ROWS }, 1, 2],
        ['note', { v1: ROWS }, 3, 0],
      ]);

      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const run = await reencrypt(ctx, { dryRun: false, batchSize: 37, cryptoWorkers: 2 });
      expect(run.failures.map((f) => [f.pk, f.column, f.reason])).toEqual([
        [String(ROWS + 2), 'doc', 'truncated'],
        [String(ROWS + 3), 'doc', 'malformed'],
      ]);
      const damaged: Array<{ id: number; doc: Uint8Array }> = await ctx.db
        .knex('files')
        .where('id', '>', ROWS + 1)
        .orderBy('id');
      expect(damaged.map((r) => Buffer.from(r.doc).toString('hex'))).toEqual([truncated.toString('hex'), '010203']);
      expect((await countVersions(ctx.db, ctx.config.targets[0]!)).map((c) => c.counts)).toEqual([{ v2: ROWS }, { v2: ROWS }]);

      await ctx.db
        .knex('files')
        .where('id', '>', ROWS + 1)
        .delete();
      expect((await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 })).failures).toEqual([]);
      expect((await verify(ctx, {})).problems).toEqual([]);
      await promote(ctx, {});
      const keys = (await ctx.keystore.read())!.doc.keys;
      const stored: Array<{ id: number; doc: Uint8Array | null; note: string | null }> = await ctx.db.knex('files').orderBy('id');
      for (const r of stored) {
        if (r.id > ROWS) continue;
        expect(decryptBinary(r.doc, (v) => keys.get(v)).equals(bytesOf(r.id))).toBe(true);
        expect(aes.decrypt(r.note!, (v) => keys.get(v))).toBe(`note ${r.id}`);
      }

      if (dialect === 'sqlite' && (havePython || ci)) {
        const k2 = keys.get('v2')!;
        const values = stored
          .filter((r) => r.id <= 30)
          .map((r) => ({
            name: `row-${r.id}`,
            key_hex: k2.toString('hex'),
            plaintext_hex: bytesOf(r.id).toString('hex'),
            value_hex: Buffer.from(r.doc!).toString('hex'),
          }));
        const script = fileURLToPath(new URL('../vectors/make_binary_vectors.py', import.meta.url));
        const check = spawnSync('python3', [script, '--verify', '-'], { input: JSON.stringify({ values }), encoding: 'utf8' });
        expect(check.stdout).not.toContain('MISMATCH');
        expect(check.status).toBe(0);
      }
    });

    it('onboards plaintext bytes with plaintext: encrypt; bytes that start like the layout stay damaged', async () => {
      const { ctx } = await openWithKeyV1(t, target('encrypt'));
      await createFiles(ctx);
      const claims = Buffer.from([0xb1, 0x00, 0x01, 0x02]);
      await ctx.db.knex('files').insert([
        ...Array.from({ length: 40 }, (_, i) => ({
          id: i + 1,
          doc: bytesOf(i + 1).length > 0 && bytesOf(i + 1)[0] === 0xb1 ? Buffer.from([0]) : bytesOf(i + 1),
          note: null,
        })),
        { id: 41, doc: claims, note: null },
      ]);
      const counted = (await countVersions(ctx.db, ctx.config.targets[0]!))[0]!;
      expect([counted.plaintext, counted.unparseable]).toEqual([40, 1]);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const run = await reencrypt(ctx, { dryRun: false, cryptoWorkers: 2, batchSize: 9 });
      expect(run.failures.map((f) => [f.pk, f.reason])).toEqual([['41', 'truncated']]);
      expect(run.tables[0]!.plaintextPlanned).toBe(40);
      const keys = (await ctx.keystore.read())!.doc.keys;
      const stored: Array<{ id: number; doc: Uint8Array }> = await ctx.db.knex('files').where('id', '<=', 40).orderBy('id');
      for (const r of stored) {
        const want = bytesOf(r.id)[0] === 0xb1 ? Buffer.from([0]) : bytesOf(r.id);
        expect(decryptBinary(r.doc, (v) => keys.get(v)).equals(want)).toBe(true);
      }
    });
  });
}

describe('binary columns: what they do not take yet', () => {
  const t = perTestDatabase('sqlite');

  it('a binary column with aad, or as a blind index source, is a config error naming it, before anything runs', async () => {
    const config = `targets:\n  - table: files\n    columns: [doc, note]\n    aad: "{table}:{id}"\n    blindIndexes:\n      - column: doc_bidx\n        source: doc\n${POLICY}`;
    const { ctx } = await openWithKeyV1(t, config);
    await ctx.db.knex.schema.createTable('files', (tb) => {
      tb.increments('id').primary();
      tb.binary('doc');
      tb.text('note');
      tb.text('doc_bidx');
    });
    const err = (await countVersions(ctx.db, ctx.config.targets[0]!)
      .then(() => reencrypt(ctx, { dryRun: true }))
      .catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.problems.join('\n')).toContain('targets[0].columns[0]: "doc" is a binary column, which does not take aad/derive');
    expect(err.problems.join('\n')).toContain('targets[0].blindIndexes[0].source: "doc" is a binary column');
  });
});
