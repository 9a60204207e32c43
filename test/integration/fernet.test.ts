/**
 * Fernet targets (issue 18 #2), on every dialect: a rotation within Fernet (`codec: fernet` behind
 * a `FERNET_V1:` prefix) keeps each token's timestamp, status counts tokens per version and says what
 * finding them cost (keys tried), damaged tokens and tokens under a key keyctl does not hold are
 * reported and never rewritten, and the retire guard sees a token the application wrote with the
 * old key. A migration from Fernet to AES-GCM (`from: { codec: fernet }`) is a rotation that rolls
 * back to Fernet. Tokens made by Python's cryptography.fernet are rotated and read back by Python.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/base/errors.js';
import type { CoreContext } from '../../src/core/context.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey, promote, retire, rollback } from '../../src/core/rotation/steps.js';
import { verify } from '../../src/core/rotation/verify.js';
import { countVersions, getStatus } from '../../src/core/status.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { FernetCodec } from '../../src/crypto/fernet.js';
import { generateKey } from '../../src/crypto/keys.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { openTestContext } from '../helpers/context.js';

const PREFIX = 'FERNET_V1:';
const fernet = new FernetCodec({ prefix: PREFIX });
const aes = new AesGcmV1Codec();
const ROWS = 240;
/** Tokens written long ago: a rotation within Fernet keeps the time each was first written. */
const WRITTEN_AT = 1_600_000_000;
const POLICY = 'policy:\n  minPropagationSeconds: 0\n  rollbackWindowDays: 30\n  retiredKeyRetentionDays: 0\n';
const fernetTarget = `targets:\n  - table: profiles\n    columns: [ssn, notes]\n    codec: fernet\n    prefix: "${PREFIX}"\n${POLICY}`;
const migrationTarget = `targets:\n  - table: profiles\n    columns: [ssn, notes]\n    from:\n      codec: fernet\n      versions: [v1]\n      prefix: "${PREFIX}"\n${POLICY}`;

const plain = (id: number, c: 'ssn' | 'notes'): string => (c === 'ssn' ? `${String(id).padStart(3, '0')}-55-${1000 + id}` : `note ${id} ünï ☕`);
/** Fernet token timestamps (seconds), read from the token without a key. */
const timestampOf = (value: string): number =>
  Number(Buffer.from(value.slice(PREFIX.length).replace(/-/g, '+').replace(/_/g, '/'), 'base64').readBigUInt64BE(1));

async function setupTable(ctx: CoreContext, k1: Buffer): Promise<void> {
  await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
  await reconcileRegistry(ctx);
  await ctx.db.knex.schema.createTable('profiles', (tb) => {
    tb.increments('id').primary();
    tb.text('ssn');
    tb.text('notes');
  });
  const rows = [];
  for (let id = 1; id <= ROWS; id++) {
    const opts = { now: new Date((WRITTEN_AT + id) * 1000) };
    rows.push({ id, ssn: fernet.encrypt(plain(id, 'ssn'), 'v1', k1, opts), notes: id % 10 === 0 ? null : fernet.encrypt(plain(id, 'notes'), 'v1', k1, opts) });
  }
  await ctx.db.knex('profiles').insert(rows);
}

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`Fernet targets on ${dialect}`, () => {
    const t = perTestDatabase(dialect);

    it('rotates within Fernet keeping timestamps, counts tokens per version with their cost, leaves damaged and foreign tokens alone', async () => {
      const ctx = await openTestContext(t.db, { extraConfig: fernetTarget });
      t.cleanup(() => ctx.db.close());
      const k1 = generateKey();
      await setupTable(ctx, k1);
      const DAMAGED = `${PREFIX}gAAAAAdamaged`;
      const foreign = fernet.encrypt('under a key keyctl does not hold', 'v1', randomBytes(32));
      await ctx.db.knex('profiles').insert([
        { id: ROWS + 1, ssn: DAMAGED, notes: foreign },
        { id: ROWS + 2, ssn: 'not a token at all', notes: null },
      ]);
      const notes = ROWS - ROWS / 10;

      const before = await countVersions(ctx.db, ctx.config.targets[0]!, (await ctx.keystore.read())!.doc.keys);
      expect(before.map((c) => [c.column, c.counts, c.unparseable, c.null, c.fernet])).toEqual([
        ['ssn', { v1: ROWS }, 2, 0, { tokens: ROWS, keysTried: ROWS }],
        ['notes', { v1: notes }, 1, ROWS / 10 + 1, { tokens: notes + 1, keysTried: notes + 1 }],
      ]);

      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      // Two keys now, newest first: every v1 token costs two HMACs to place.
      const status = await getStatus(ctx);
      expect(status.targets.map((c) => [c.column, c.counts, c.fernet])).toEqual([
        ['ssn', { v1: ROWS }, { tokens: ROWS, keysTried: 2 * ROWS }],
        ['notes', { v1: notes }, { tokens: notes + 1, keysTried: 2 * (notes + 1) }],
      ]);

      const dry = await reencrypt(ctx, { dryRun: true, cryptoWorkers: 0 });
      expect(dry.tables[0]!.valuesPlanned).toBe(ROWS + notes);
      expect((await countVersions(ctx.db, ctx.config.targets[0]!, (await ctx.keystore.read())!.doc.keys)).map((c) => c.counts)).toEqual([
        { v1: ROWS },
        { v1: notes },
      ]);

      const run = await reencrypt(ctx, { dryRun: false, batchSize: 29, cryptoWorkers: 2 });
      expect(run.failures.map((f) => [f.pk, f.column, f.reason])).toEqual([
        [String(ROWS + 1), 'ssn', 'malformed'],
        [String(ROWS + 1), 'notes', expect.any(String)],
        [String(ROWS + 2), 'ssn', 'malformed'],
      ]);
      expect(run.tables[0]!.keysTried).toBeGreaterThanOrEqual(ROWS + notes);
      const keys = (await ctx.keystore.read())!.doc.keys;
      const k2 = keys.get('v2')!;
      const stored: Array<{ id: number; ssn: string | null; notes: string | null }> = await ctx.db.knex('profiles').orderBy('id');
      for (const r of stored.slice(0, ROWS)) {
        expect(r.ssn!.startsWith(PREFIX)).toBe(true);
        expect(fernet.decrypt(r.ssn!, k2)).toBe(plain(r.id, 'ssn'));
        expect(timestampOf(r.ssn!)).toBe(WRITTEN_AT + r.id);
        if (r.id % 10 === 0) expect(r.notes).toBeNull();
        else expect(fernet.decrypt(r.notes!, k2)).toBe(plain(r.id, 'notes'));
      }
      expect(stored[ROWS]).toEqual({ id: ROWS + 1, ssn: DAMAGED, notes: foreign });
      expect(stored[ROWS + 1]).toEqual({ id: ROWS + 2, ssn: 'not a token at all', notes: null });

      // Repaired by hand, the next pass finishes; verify and promote go ahead.
      await ctx.db.knex('profiles').where('id', '>', ROWS).delete();
      expect((await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 })).failures).toEqual([]);
      expect((await verify(ctx, {})).problems).toEqual([]);
      await promote(ctx, {});
      // The application, not yet reloaded, writes one token with the old key: retire refuses.
      await ctx.db
        .knex('profiles')
        .where({ id: 7 })
        .update({ notes: fernet.encrypt('late write', 'v1', k1) });
      await expect(retire(ctx, { force: true, reason: 'test' })).rejects.toThrow(/1 value\(s\) are still under v1/);
      // status places it with the archived key too; the published keyring alone cannot.
      expect((await getStatus(ctx)).targets[1]!.counts).toEqual({ v1: 1, v2: notes - 1 });
      const published = await countVersions(ctx.db, ctx.config.targets[0]!, (await ctx.keystore.read())!.doc.keys);
      expect([published[1]!.counts, published[1]!.unparseable]).toEqual([{ v2: notes - 1 }, 1]);
    });

    it('migrates Fernet to AES-GCM as a rotation, and a rollback writes Fernet again', async () => {
      const ctx = await openTestContext(t.db, { extraConfig: migrationTarget });
      t.cleanup(() => ctx.db.close());
      const k1 = generateKey();
      await setupTable(ctx, k1);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const stop = new AbortController();
      let batches = 0;
      const partial = await reencrypt(ctx, {
        dryRun: false,
        batchSize: 50,
        cryptoWorkers: 0,
        signal: stop.signal,
        onProgress: () => ++batches === 2 && stop.abort(),
      });
      expect(partial.interrupted).toBe(true);
      const keys = (await ctx.keystore.read())!.doc.keys;
      const mid = await countVersions(ctx.db, ctx.config.targets[0]!, keys);
      expect(mid[0]!.counts).toEqual({ v1: ROWS - 100, v2: 100 });
      expect(mid[0]!.fernet!.tokens).toBe(ROWS - 100);
      const v2rows: Array<{ ssn: string }> = await ctx.db.knex('profiles').where('id', '<=', 100);
      for (const r of v2rows) expect(aes.versionOf(r.ssn)).toBe('v2');

      // Roll back: the v2 (AES-GCM) values go back to Fernet under v1, with the prefix.
      await rollback(ctx, { reason: 'the application cannot read AES-GCM yet' });
      const back = await reencrypt(ctx, { dryRun: false, batchSize: 64, cryptoWorkers: 2 });
      expect(back.remaining).toBe(0);
      expect((await verify(ctx, {})).rotation!.phase).toBe('rolled_back');
      let stored: Array<{ id: number; ssn: string; notes: string | null }> = await ctx.db.knex('profiles').orderBy('id');
      for (const r of stored) {
        expect(fernet.decrypt(r.ssn, k1)).toBe(plain(r.id, 'ssn'));
        // Never moved: the original token, time included.
        if (r.id > 100) expect(timestampOf(r.ssn)).toBe(WRITTEN_AT + r.id);
        if (r.notes !== null) expect(fernet.decrypt(r.notes, k1)).toBe(plain(r.id, 'notes'));
      }

      // The migration again, to the end: every value AES-GCM under the new primary.
      const r2 = await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const run = await reencrypt(ctx, { dryRun: false, batchSize: 33, cryptoWorkers: 2 });
      expect(run.remaining).toBe(0);
      expect((await verify(ctx, {})).problems).toEqual([]);
      await promote(ctx, {});
      const primary = (await ctx.keystore.read())!.doc;
      expect(primary.primary).toBe(r2.newVersion);
      stored = await ctx.db.knex('profiles').orderBy('id');
      for (const r of stored) {
        expect(aes.decrypt(r.ssn, (v) => primary.keys.get(v))).toBe(plain(r.id, 'ssn'));
        if (r.notes !== null) expect(aes.decrypt(r.notes, (v) => primary.keys.get(v))).toBe(plain(r.id, 'notes'));
      }
      const after = await countVersions(ctx.db, ctx.config.targets[0]!, primary.keys);
      expect(after.map((c) => [c.counts, c.fernet!.tokens])).toEqual([
        [{ [r2.newVersion]: ROWS }, 0],
        [{ [r2.newVersion]: ROWS - ROWS / 10 }, 0],
      ]);
    });
  });
}

describe('Fernet targets: values that only look like the old shape', () => {
  const t = perTestDatabase('sqlite');

  it('a bare token where a prefix is configured is damaged, never plaintext; the new key cannot be listed under from', async () => {
    const config = `targets:\n  - table: profiles\n    columns: [ssn, notes]\n    plaintext: encrypt\n    from:\n      codec: fernet\n      versions: [v1]\n      prefix: "${PREFIX}"\n${POLICY}`;
    const ctx = await openTestContext(t.db, { extraConfig: config });
    t.cleanup(() => ctx.db.close());
    const k1 = generateKey();
    await setupTable(ctx, k1);
    const bare = new FernetCodec().encrypt('written before the prefix', 'v1', k1);
    await ctx.db.knex('profiles').where({ id: 1 }).update({ notes: bare });
    await ctx.db.knex('profiles').where({ id: 2 }).update({ notes: 'plain text to onboard' });
    const counts = await countVersions(ctx.db, ctx.config.targets[0]!, (await ctx.keystore.read())!.doc.keys);
    expect([counts[1]!.unparseable, counts[1]!.plaintext]).toEqual([1, 1]);
    await generate(ctx, { emergency: false });
    await dualKey(ctx);
    const run = await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 });
    expect(run.failures).toEqual([{ table: 'profiles', pk: '1', column: 'notes', reason: 'malformed' }]);
    expect((await ctx.db.knex('profiles').where({ id: 1 }).first()).notes).toBe(bare);
    const keys = (await ctx.keystore.read())!.doc.keys;
    expect(aes.decrypt((await ctx.db.knex('profiles').where({ id: 2 }).first()).notes, (v) => keys.get(v))).toBe('plain text to onboard');
  });

  it('refuses to write the new key the old way when from.versions lists it', async () => {
    const config = `targets:\n  - table: profiles\n    columns: [ssn, notes]\n    from:\n      codec: fernet\n      versions: [v1, v2]\n      prefix: "${PREFIX}"\n${POLICY}`;
    const ctx = await openTestContext(t.db, { extraConfig: config });
    t.cleanup(() => ctx.db.close());
    await setupTable(ctx, generateKey());
    await generate(ctx, { emergency: false });
    await dualKey(ctx);
    const err = (await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 }).catch((e: unknown) => e)) as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('from.versions lists v2, the new key this rotation writes');
    expect(err.problems.join('\n')).toContain('targets[0].from.versions: v2 would be written as Fernet tokens');
  });
});

// Tokens Python's Fernet wrote are rotated by keyctl and read back by Python (SQLite: the format,
// not the database, is what is checked).
const ci = process.env.CI === 'true' || process.env.CI === '1';
const havePython = spawnSync('python3', ['-c', 'import cryptography.fernet'], { encoding: 'utf8' }).status === 0;
const script = (name: string): string => fileURLToPath(new URL(`../vectors/${name}`, import.meta.url));

describe.skipIf(!havePython && !ci)('Fernet interoperability with Python, through a rotation', () => {
  const t = perTestDatabase('sqlite');
  const PLAINTEXTS = ['', 'alice@example.com', 'Zoë Ωmega 日本語 🚀', '\ufeffbom first', 'x'.repeat(300), 'a:b\nc', 'FERNET_V1:not a prefix'];

  async function pythonRows(ctx: CoreContext, config: string): Promise<Buffer> {
    const k1 = generateKey();
    await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
    await reconcileRegistry(ctx);
    const made = spawnSync('python3', [script('make_fernet_rows.py')], {
      input: JSON.stringify({ key_hex: k1.toString('hex'), prefix: PREFIX, plaintexts: PLAINTEXTS }),
      encoding: 'utf8',
    });
    expect(made.stderr).toBe('');
    expect(made.status).toBe(0);
    const values: string[] = JSON.parse(made.stdout).values;
    await ctx.db.knex.schema.createTable('profiles', (tb) => {
      tb.increments('id').primary();
      tb.text('ssn');
      tb.text('notes');
    });
    await ctx.db.knex('profiles').insert(values.map((v, i) => ({ id: i + 1, ssn: v, notes: null })));
    expect(config).toContain('profiles');
    await generate(ctx, { emergency: false });
    await dualKey(ctx);
    const run = await reencrypt(ctx, { dryRun: false, cryptoWorkers: 0 });
    expect(run.failures).toEqual([]);
    expect(run.tables[0]!.valuesPlanned).toBe(PLAINTEXTS.length);
    return (await ctx.keystore.read())!.doc.keys.get('v2')!;
  }

  it('Python-made tokens rotated within Fernet are read back by Python with the new key', async () => {
    const ctx = await openTestContext(t.db, { extraConfig: fernetTarget });
    t.cleanup(() => ctx.db.close());
    const k2 = await pythonRows(ctx, fernetTarget);
    const stored: Array<{ id: number; ssn: string }> = await ctx.db.knex('profiles').orderBy('id');
    const tokens = stored.map((r) => ({ name: `row-${r.id}`, key_hex: k2.toString('hex'), value: r.ssn, prefix: PREFIX, plaintext: PLAINTEXTS[r.id - 1] }));
    const check = spawnSync('python3', [script('check_fernet_with_python.py')], { input: JSON.stringify({ tokens }), encoding: 'utf8' });
    expect(check.stdout).not.toContain('MISMATCH');
    expect(check.status).toBe(0);
    expect(check.stdout.trim().split('\n')).toHaveLength(PLAINTEXTS.length);
  });

  it('Python-made tokens migrated to AES-GCM are read back by Python with AESGCM', async () => {
    const ctx = await openTestContext(t.db, { extraConfig: migrationTarget });
    t.cleanup(() => ctx.db.close());
    const k2 = await pythonRows(ctx, migrationTarget);
    const stored: Array<{ id: number; ssn: string }> = await ctx.db.knex('profiles').orderBy('id');
    const values = stored.map((r) => ({
      name: `row-${r.id}`,
      key_hex: k2.toString('hex'),
      value: r.ssn,
      plaintext: PLAINTEXTS[r.id - 1],
      aad: null,
      derive: null,
      table: 'profiles',
      column: 'ssn',
      row: { id: { int: r.id } },
    }));
    const check = spawnSync('python3', [script('check_context_with_python.py')], { input: JSON.stringify({ values }), encoding: 'utf8' });
    expect(check.stdout).not.toContain('MISMATCH');
    expect(check.status).toBe(0);
    expect(check.stdout.trim().split('\n')).toHaveLength(PLAINTEXTS.length);
  });
});
