/**
 * The rotation lifecycle against real SQLite, PostgreSQL and MariaDB/MySQL: full cycles,
 * rollbacks, guards, races, concurrent application writes and interrupted runs.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { listAudit, verifyAuditChain } from '../../src/rotation/store.js';
import type { CoreContext } from '../../src/core/context.js';
import { createDemoTable, demoRows, DEMO_TARGET } from '../../src/core/demo.js';
import { RefusedError } from '../../src/base/errors.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { listVersions } from '../../src/rotation/store.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey, promote, retire, rollback } from '../../src/core/rotation/steps.js';
import { verify } from '../../src/core/rotation/verify.js';
import { transition, transitionMany } from '../../src/core/rotation/transition.js';
import { openRotation } from '../../src/rotation/store.js';
import { getStatus } from '../../src/core/status.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { migrate, MIGRATOR_CONFIG, TABLES } from '../../src/db/migrations.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { openTestContext } from '../helpers/context.js';

const codec = new AesGcmV1Codec();
const ROWS = 2000;
const TARGETS = `targets:\n  - table: customers\n    columns: [email, phone, notes]\n`;
const NO_WAIT = `policy:\n  minPropagationSeconds: 0\n  rollbackWindowDays: 30\n  retiredKeyRetentionDays: 0\n`;

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`rotation lifecycle on ${dialect}`, () => {
    const t = perTestDatabase(dialect);
    let clock = Date.now();
    const now = () => new Date(clock);
    beforeEach(async () => {
      clock = Date.now();
    });

    async function setup(policy = NO_WAIT, rows = ROWS): Promise<CoreContext> {
      const ctx = await openTestContext(t.db, { extraConfig: TARGETS + policy, now });
      t.cleanup(() => ctx.db.close());
      const key = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await createDemoTable(ctx.db, { rows, version: 'v1', key, codec, replace: false });
      return ctx;
    }

    /** Every row decrypts with the published keyring to the plaintext demoRows generated. */
    async function expectPlaintextIntact(ctx: CoreContext, version: string, rows = ROWS): Promise<void> {
      const published = (await ctx.keystore.read())!;
      const expected = [...demoRows(rows)];
      const stored: Array<Record<string, string>> = await ctx.db.knex(DEMO_TARGET.table).orderBy('id');
      expect(stored).toHaveLength(rows);
      for (const [i, row] of stored.entries()) {
        for (const c of ['email', 'phone', 'notes'] as const) {
          expect(codec.versionOf(row[c]!)).toBe(version);
          expect(codec.decrypt(row[c]!, (v) => published.doc.keys.get(v))).toBe(expected[i]![c]);
        }
      }
    }

    async function counts(ctx: CoreContext) {
      return (await getStatus(ctx)).targets.map((t) => t.counts);
    }

    async function published(ctx: CoreContext) {
      const s = (await ctx.keystore.read())!;
      return { primary: s.doc.primary, keys: [...s.doc.keys.keys()].sort() };
    }

    async function archived(ctx: CoreContext) {
      const a = await ctx.keystore.readArchive('default');
      return Object.fromEntries([...a.doc.keys].map(([v, e]) => [v, e.status]));
    }

    it('runs a full rotation and a second one, checking counts, keystore, audit and plaintext after each step', async () => {
      const ctx = await setup();
      const all = (v: string) => [{ [v]: ROWS }, { [v]: ROWS }, { [v]: ROWS }];
      /** After each step: database counts, published keyring, archive, the step's audit row, and every plaintext. */
      async function after(step: string, expectCounts: unknown, expectPublished: unknown, expectArchive: unknown, dataVersion: string) {
        expect([step, await counts(ctx)]).toEqual([step, expectCounts]);
        expect([step, await published(ctx)]).toEqual([step, expectPublished]);
        expect([step, await archived(ctx)]).toEqual([step, expectArchive]);
        const last = (await listAudit(ctx.db, 'default')).at(-1)!;
        expect([step, last.action, last.outcome, last.actor]).toEqual([step, step, 'ok', 'tester@test']);
        await expectPlaintextIntact(ctx, dataVersion);
      }

      const g = await generate(ctx, { emergency: false });
      expect(g.newVersion).toBe('v2');
      await after('generate', all('v1'), { primary: 'v1', keys: ['v1', 'v2'] }, {}, 'v1');

      await dualKey(ctx);
      await after('dual-key', all('v1'), { primary: 'v2', keys: ['v1', 'v2'] }, {}, 'v1');

      const dry = await reencrypt(ctx, { dryRun: true, batchSize: 300 });
      expect(dry.tables[0]!.valuesPlanned).toBe(3 * ROWS);
      expect(await counts(ctx)).toEqual(all('v1'));
      expect((await openRotation(ctx.db, 'default'))!.phase).toBe('dual_key');

      const re = await reencrypt(ctx, { dryRun: false, batchSize: 300 });
      expect(re.failures).toEqual([]);
      expect(re.remaining).toBe(0);
      expect(re.rotation.phase).toBe('reencrypted');
      await after('reencrypt', all('v2'), { primary: 'v2', keys: ['v1', 'v2'] }, {}, 'v2');
      expect((await listAudit(ctx.db, 'default')).at(-1)!.rowsAffected).toBe(ROWS);

      const v = await verify(ctx, {});
      expect(v.passed).toBe(true);
      expect(v.rotation!.phase).toBe('verified');
      expect(v.checked).toEqual({ v2: 3 * ROWS });
      await after('verify', all('v2'), { primary: 'v2', keys: ['v1', 'v2'] }, {}, 'v2');

      const p = await promote(ctx);
      expect(p.phase).toBe('promoted');
      await after('promote', all('v2'), { primary: 'v2', keys: ['v2'] }, { v1: 'archived' }, 'v2');

      await expect(retire(ctx, {})).rejects.toThrow(/rollback window/);
      expect((await listAudit(ctx.db, 'default')).at(-1)).toMatchObject({ action: 'retire', outcome: 'refused' });
      clock += 31 * 86_400_000;
      const r = await retire(ctx, {});
      expect(r.phase).toBe('retired');
      await after('retire', all('v2'), { primary: 'v2', keys: ['v2'] }, {}, 'v2');
      expect((await listVersions(ctx.db, 'default')).map((x) => [x.version, x.state, x.material])).toEqual([
        ['v1', 'retired', 'destroyed'],
        ['v2', 'primary', 'present'],
      ]);
      expect(await openRotation(ctx.db, 'default')).toBeNull();

      const audit = await listAudit(ctx.db, 'default');
      expect(audit.filter((a) => a.outcome === 'ok').map((a) => [a.action, a.fromPhase, a.toPhase])).toEqual([
        ['register', null, null],
        ['generate', 'generating', 'generated'],
        ['dual-key', 'generated', 'dual_key'],
        ['reencrypt-start', 'dual_key', 'reencrypting'],
        ['reencrypt', 'reencrypting', 'reencrypted'],
        ['verify', 'reencrypted', 'verified'],
        ['promote', 'verified', 'promoted'],
        ['retire', 'promoted', 'retired'],
      ]);

      // A second rotation, v2 → v3, with policy.retiredKeys left at destroy.
      expect((await generate(ctx, { emergency: false })).newVersion).toBe('v3');
      await after('generate', all('v2'), { primary: 'v2', keys: ['v2', 'v3'] }, {}, 'v2');
      await dualKey(ctx);
      await after('dual-key', all('v2'), { primary: 'v3', keys: ['v2', 'v3'] }, {}, 'v2');
      await reencrypt(ctx, { dryRun: false, batchSize: 700 });
      await after('reencrypt', all('v3'), { primary: 'v3', keys: ['v2', 'v3'] }, {}, 'v3');
      expect((await verify(ctx, { sample: 50 })).passed).toBe(true);
      await after('verify', all('v3'), { primary: 'v3', keys: ['v2', 'v3'] }, {}, 'v3');
      // A sampled verify is shown but does not unlock promote without --force --reason.
      await expect(promote(ctx)).rejects.toThrow(/was a sample/);
      expect((await verify(ctx, {})).passed).toBe(true);
      await after('verify', all('v3'), { primary: 'v3', keys: ['v2', 'v3'] }, {}, 'v3');
      await promote(ctx);
      await after('promote', all('v3'), { primary: 'v3', keys: ['v3'] }, { v2: 'archived' }, 'v3');
      clock += 31 * 86_400_000;
      await retire(ctx, {});
      await after('retire', all('v3'), { primary: 'v3', keys: ['v3'] }, {}, 'v3');
      expect((await verifyAuditChain(ctx.db)).flatMap((c) => c.problems)).toEqual([]);
    });

    it('with policy.retiredKeys: archive, retire keeps the old key in the archive', async () => {
      const ctx = await setup(`${NO_WAIT}  retiredKeys: archive\n`, 20);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      await verify(ctx, {});
      await promote(ctx);
      await retire(ctx, { force: true, reason: 'test' });
      expect(await archived(ctx)).toEqual({ v1: 'retired' });
      expect((await listVersions(ctx.db, 'default'))[0]).toMatchObject({ version: 'v1', state: 'retired', material: 'present' });
    });

    it('rolls back from dual_key after part of the data was re-encrypted', async () => {
      const ctx = await setup();
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const stop = new AbortController();
      let batches = 0;
      const partial = await reencrypt(ctx, { dryRun: false, batchSize: 250, signal: stop.signal, onProgress: () => ++batches === 3 && stop.abort() });
      expect(partial.interrupted).toBe(true);
      const mid = await counts(ctx);
      expect(mid[0]).toEqual({ v1: ROWS - 750, v2: 750 });

      const rb = await rollback(ctx, { reason: 'app errors' });
      expect(rb.phase).toBe('rolling_back');
      expect(await published(ctx)).toEqual({ primary: 'v1', keys: ['v1', 'v2'] });
      const back = await reencrypt(ctx, { dryRun: false, batchSize: 400 });
      expect(back.remaining).toBe(0);
      const v = await verify(ctx, {});
      expect(v.passed).toBe(true);
      expect(v.rotation!.phase).toBe('rolled_back');
      expect(await published(ctx)).toEqual({ primary: 'v1', keys: ['v1'] });
      expect(await openRotation(ctx.db, 'default')).toBeNull();
      await expectPlaintextIntact(ctx, 'v1');
    });

    it('rolls back from promoted, restoring the archived old key', async () => {
      const ctx = await setup(NO_WAIT, 500);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false, batchSize: 200 });
      await verify(ctx, {});
      await promote(ctx);
      expect(await published(ctx)).toEqual({ primary: 'v2', keys: ['v2'] });
      await rollback(ctx, {});
      expect(await published(ctx)).toEqual({ primary: 'v1', keys: ['v1', 'v2'] });
      expect(await archived(ctx)).toEqual({});
      await reencrypt(ctx, { dryRun: false, batchSize: 200 });
      expect((await verify(ctx, {})).rotation!.phase).toBe('rolled_back');
      expect(await counts(ctx)).toEqual([{ v1: 500 }, { v1: 500 }, { v1: 500 }]);
      await expectPlaintextIntact(ctx, 'v1', 500);
    });

    it('guards refuse with exit code 3 and a refused audit row', async () => {
      const ctx = await setup(`policy:\n  minPropagationSeconds: 600\n`, 50);
      const refused = async (p: Promise<unknown>, msg: RegExp) => {
        const err = await p.catch((e: unknown) => e);
        expect(err).toBeInstanceOf(RefusedError);
        expect((err as RefusedError).exitStatus).toBe(3);
        expect((err as Error).message).toMatch(msg);
        expect((err as RefusedError).hint).toBeTruthy();
      };
      await refused(dualKey(ctx), /no rotation is open/);
      await generate(ctx, { emergency: false });
      await refused(generate(ctx, { emergency: false }), /already open/);
      await refused(promote(ctx), /needs phase verified/);
      await refused(dualKey(ctx), /minPropagationSeconds/);
      clock += 601_000;
      await dualKey(ctx);
      await refused(verify(ctx, {}), /needs phase/);
      const audit = await listAudit(ctx.db, 'default');
      const refusals = audit.filter((a) => a.outcome === 'refused').map((a) => a.action);
      expect(refusals).toEqual(['dual-key', 'generate', 'promote', 'dual-key', 'verify']);
    });

    it('an emergency rotation skips the waits and refuses to roll back to the compromised key', async () => {
      const ctx = await setup(`policy:\n  minPropagationSeconds: 600\n`, 50);
      await generate(ctx, { emergency: true, reason: 'INC-7: key leaked' });
      await dualKey(ctx);
      const err = await rollback(ctx, {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RefusedError);
      expect((err as Error).message).toMatch(/compromised/);
      expect((await listAudit(ctx.db, 'default')).at(-1)).toMatchObject({ action: 'rollback', outcome: 'refused' });
      await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      await verify(ctx, {});
      await promote(ctx);
      const r = await retire(ctx, {});
      expect(r.phase).toBe('retired');
      expect((await listVersions(ctx.db, 'default'))[0]).toMatchObject({ version: 'v1', compromised: true, state: 'retired' });
    });

    it('two promotes racing: exactly one wins, the other is refused', async () => {
      const ctx = await setup(NO_WAIT, 30);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      await verify(ctx, {});
      const other = await openTestContext(t.db, { extraConfig: TARGETS + NO_WAIT, now });
      t.cleanup(() => other.db.close());
      const results = await Promise.allSettled([promote(ctx), promote({ ...other, actor: 'other@test' })]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect(lost.reason).toBeInstanceOf(RefusedError);
      const promotes = (await listAudit(ctx.db, 'default')).filter((a) => a.action === 'promote');
      expect(promotes.map((a) => a.outcome).sort()).toEqual(['ok', 'refused']);
      expect((await verifyAuditChain(ctx.db)).flatMap((c) => c.problems)).toEqual([]);
    });

    it('never overwrites an application write made between read and write', async () => {
      const ctx = await setup(NO_WAIT, 100);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const keys = (await ctx.keystore.read())!.doc.keys;
      const appValue = codec.encrypt('written by the app', 'v2', keys.get('v2')!);
      const staleV1 = codec.encrypt('app wrote with the old key', 'v1', keys.get('v1')!);
      let once = false;
      await reencrypt(ctx, {
        dryRun: false,
        batchSize: 40,
        afterRead: async (_t, rows) => {
          if (once) return;
          once = true;
          // The application updates two rows of this batch after keyctl read them.
          await ctx.db.knex('customers').where({ id: rows[5]!.id }).update({ email: appValue });
          await ctx.db.knex('customers').where({ id: rows[6]!.id }).update({ notes: staleV1 });
        },
      });
      const r5 = await ctx.db.knex('customers').where({ id: 6 }).first();
      expect(r5.email).toBe(appValue);
      // The stale old-key write was not overwritten by the batch, then rewritten by a later pass.
      const r7 = await ctx.db.knex('customers').where({ id: 7 }).first();
      expect(codec.versionOf(r7.notes)).toBe('v2');
      expect(codec.decrypt(r7.notes, (v) => keys.get(v))).toBe('app wrote with the old key');
      expect(await counts(ctx)).toEqual([{ v2: 100 }, { v2: 100 }, { v2: 100 }]);
    });

    it('caps a batch by bytes: rows of large values are read fewer at a time', async () => {
      const ctx = await setup(NO_WAIT, 300);
      // ~40 KB notes (TEXT holds 64 KB on MySQL): about 53 KB of ciphertext a row.
      const big = 'x'.repeat(40_000);
      const key = (await ctx.keystore.read())!.doc.keys.get('v1')!;
      await ctx.db.knex('customers').update({ notes: codec.encrypt(big, 'v1', key) });
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const sizes: number[] = [];
      await reencrypt(ctx, { dryRun: false, batchSize: 100, afterRead: async (_t, rows) => void sizes.push(rows.length) });
      // The first batch is read before the row size is known; after it, 1 MiB holds about 19 rows.
      expect(sizes[0]).toBe(100);
      expect(Math.max(...sizes.slice(1))).toBeLessThanOrEqual(20);
      expect(sizes.length).toBeGreaterThan(10);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(300);
      expect((await counts(ctx))[2]).toEqual({ v2: 300 });
    });

    it('an interrupted reencrypt resumes without skipping or double-encrypting', async () => {
      const ctx = await setup(NO_WAIT, 1000);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const stop = new AbortController();
      let n = 0;
      const first = await reencrypt(ctx, { dryRun: false, batchSize: 100, signal: stop.signal, onProgress: () => ++n === 4 && stop.abort() });
      expect(first.interrupted).toBe(true);
      expect((await counts(ctx))[0]).toEqual({ v1: 600, v2: 400 });
      const cp = await ctx.db.knex(TABLES.checkpoints).first();
      expect(JSON.parse(cp.cursor)).toEqual(expect.anything());
      const seen: Array<[number, number]> = [];
      const second = await reencrypt(ctx, { dryRun: false, batchSize: 100, onProgress: (e) => seen.push([e.rowsScanned, e.rowsTotal]) });
      expect(second.tables[0]!.resumedFrom).not.toBeNull();
      expect(second.tables[0]!.rowsScanned).toBe(600);
      // The live line counts the rows done before the interruption: it ends at 1000/1000, not 600/1000.
      expect(seen[0]).toEqual([500, 1000]);
      expect(seen.at(-1)).toEqual([1000, 1000]);
      expect(second.rotation.phase).toBe('reencrypted');
      await expectPlaintextIntact(ctx, 'v2', 1000);
    });

    it('reports values that cannot be decrypted and never rewrites them', async () => {
      const ctx = await setup(NO_WAIT, 50);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const foreign = codec.encrypt('someone else', 'v1', generateKey());
      await ctx.db.knex('customers').where({ id: 3 }).update({ phone: foreign });
      await ctx.db.knex('customers').where({ id: 4 }).update({ notes: 'plain text!' });
      const re = await reencrypt(ctx, { dryRun: false, batchSize: 20 });
      expect(re.failures.map((f) => [f.pk, f.column, f.reason]).sort()).toEqual([
        ['3', 'phone', 'authentication-failed'],
        ['4', 'notes', 'malformed'],
      ]);
      expect(re.rotation.phase).toBe('reencrypting');
      expect((await ctx.db.knex('customers').where({ id: 3 }).first()).phone).toBe(foreign);
      expect(JSON.stringify(re)).not.toContain('someone else');
      // Not finished, so verify is refused; the values stay listed until someone repairs them.
      await expect(verify(ctx, {})).rejects.toThrow(RefusedError);
      const again = await reencrypt(ctx, { dryRun: false, batchSize: 20 });
      expect(again.failures).toHaveLength(2);
      expect(again.remaining).toBe(2);
    });

    it('a value written under the old key after verify blocks promote until reencrypt and verify run again', async () => {
      const ctx = await setup(NO_WAIT, 30);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      await verify(ctx, {});
      const v1 = (await ctx.keystore.read())!.doc.keys.get('v1')!;
      await ctx.db
        .knex('customers')
        .where({ id: 2 })
        .update({ email: codec.encrypt('late writer', 'v1', v1) });
      await expect(promote(ctx)).rejects.toThrow(/1 value\(s\) not under v2/);
      const re = await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      expect(re.rotation.phase).toBe('reencrypted');
      expect((await verify(ctx, {})).passed).toBe(true);
      expect((await promote(ctx)).phase).toBe('promoted');
    });

    it('a reencrypt with nothing to move after verify leaves the phase and the verify evidence alone, and says so', async () => {
      const ctx = await setup(NO_WAIT, 30);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      await verify(ctx, {});
      const re = await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      expect(re.noop).toMatch(/nothing to re-encrypt: every value is already under v2; rotation #1 stays in phase verified/);
      expect(re.rotation.phase).toBe('verified');
      expect(await openRotation(ctx.db, 'default')).toMatchObject({ phase: 'verified', verifyScope: 'full', verifyOutcome: 'passed' });
      expect((await listAudit(ctx.db, 'default')).at(-1)).toMatchObject({
        action: 'reencrypt',
        outcome: 'ok',
        fromPhase: 'verified',
        toPhase: 'verified',
        details: { noop: true },
      });
      expect((await promote(ctx)).phase).toBe('promoted');
    });

    it('verify evidence is refused when a write pass ran while verify was scanning (the phase moved away and back)', async () => {
      const ctx = await setup(NO_WAIT, 30);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      // What verify read when it started …
      const seen = (await openRotation(ctx.db, 'default'))!;
      // … then another operator's pass: a late writer's old-key value, rewritten (reencrypted → reencrypting → reencrypted).
      const v1 = (await ctx.keystore.read())!.doc.keys.get('v1')!;
      await ctx.db
        .knex('customers')
        .where({ id: 2 })
        .update({ email: codec.encrypt('late writer', 'v1', v1) });
      clock += 1000;
      expect((await reencrypt(ctx, { dryRun: false, batchSize: 100 })).rotation.phase).toBe('reencrypted');
      const evidence = { verify: { scope: 'full' as const, outcome: 'passed' as const, at: now() } };
      await expect(transition(ctx, { rule: 'verify-passed', rotation: seen, changes: evidence, unchangedSinceRead: true })).rejects.toThrow(
        /moved away from phase reencrypted and back/,
      );
      expect(await openRotation(ctx.db, 'default')).toMatchObject({ phase: 'reencrypted', verifyOutcome: null });
    });

    it('moves made together commit together; one that lost its compare-and-set is refused afterwards without undoing the others', async () => {
      const ctx = await setup(NO_WAIT, 30);
      await generate(ctx, { emergency: false });
      const generated = (await openRotation(ctx.db, 'default'))!;
      await dualKey(ctx);
      const dual = (await openRotation(ctx.db, 'default'))!;
      const before = (await listAudit(ctx.db, 'default')).length;
      // The first wins (dual_key → reencrypting); the second read the rotation before dual-key, so its compare-and-set matches nothing.
      await expect(
        transitionMany([
          [ctx, { rule: 'reencrypt-start', rotation: dual, details: { target: 'v2' } }],
          [ctx, { rule: 'dual-key', rotation: generated }],
        ]),
      ).rejects.toThrow(/left phase generated .*another operator got there first/);
      expect((await openRotation(ctx.db, 'default'))!.phase).toBe('reencrypting');
      const rows = (await listAudit(ctx.db, 'default')).slice(before);
      expect(rows.map((r) => [r.action, r.outcome, r.fromPhase, r.toPhase])).toEqual([
        ['reencrypt-start', 'ok', 'dual_key', 'reencrypting'],
        ['dual-key', 'refused', 'generated', null],
      ]);
      expect((await verifyAuditChain(ctx.db, 'default'))[0]!.problems).toEqual([]);
    });

    it('a reencrypt running while someone rolls back stops after its batch instead of writing on', async () => {
      const ctx = await setup(NO_WAIT, 400);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const other = await openTestContext(t.db, { extraConfig: TARGETS + NO_WAIT, now });
      t.cleanup(() => other.db.close());
      let batches = 0;
      const err = await reencrypt(ctx, {
        dryRun: false,
        batchSize: 50,
        afterRead: async () => {
          if (++batches === 2) await rollback({ ...other, actor: 'other@test' }, { reason: 'abort' });
        },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RefusedError);
      expect((err as Error).message).toMatch(/left phase reencrypting/);
      // Batch 1 was written; batch 2, read and planned when the rollback happened, was not.
      expect((await counts(ctx))[0]).toEqual({ v1: 350, v2: 50 });
      await reencrypt(ctx, { dryRun: false, batchSize: 100 });
      expect((await verify(ctx, {})).rotation!.phase).toBe('rolled_back');
      await expectPlaintextIntact(ctx, 'v1', 400);
    });

    it('three shards running at once cover the table exactly once, each with its own checkpoint', async () => {
      const ctx = await setup(NO_WAIT, 1200);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const others: CoreContext[] = [];
      for (const _ of [1, 2]) others.push(await openTestContext(t.db, { extraConfig: TARGETS + NO_WAIT, now }));
      for (const o of others) t.cleanup(() => o.db.close());
      const contexts = [ctx, ...others];
      const run = (c: CoreContext, index: number) => reencrypt(c, { dryRun: false, batchSize: 70, shard: { index, count: 3 } });
      // better-sqlite3 is synchronous: connections in one process cannot run side by side (a
      // waiting writer blocks the thread the lock holder needs), so on SQLite the shards take turns;
      // separate processes, as in production, do run at once.
      const reports = dialect === 'sqlite' ? [await run(ctx, 0), await run(others[0]!, 1), await run(others[1]!, 2)] : await Promise.all(contexts.map(run));
      expect(reports.map((r) => r.tables[0]!.rowsScanned).reduce((a, b) => a + b, 0)).toBe(1200);
      expect(reports.map((r) => r.tables[0]!.rowsUpdated).reduce((a, b) => a + b, 0)).toBe(1200);
      expect(reports.map((r) => r.tables[0]!.rowsScanned)).toEqual([400, 400, 400]);
      const shards = (await ctx.db.knex(TABLES.checkpoints).select('shard', 'completed', 'rows_scanned')).map((r: Record<string, unknown>) => [
        r.shard,
        Boolean(Number(r.completed)),
        Number(r.rows_scanned),
      ]);
      expect(shards.sort()).toEqual([
        ['0/3>v2', true, 400],
        ['1/3>v2', true, 400],
        ['2/3>v2', true, 400],
      ]);
      expect((await openRotation(ctx.db, 'default'))!.phase).toBe('reencrypted');
      await expectPlaintextIntact(ctx, 'v2', 1200);
      // No shard was refused: starting and finishing together is not a race to lose.
      expect((await listAudit(ctx.db, 'default')).filter((a) => a.outcome === 'refused')).toEqual([]);
    });

    it('a shard run alone leaves the rotation in reencrypting until the other shards are done', async () => {
      const ctx = await setup(NO_WAIT, 300);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      const first = await reencrypt(ctx, { dryRun: false, batchSize: 50, shard: { index: 0, count: 2 } });
      expect(first.rotation.phase).toBe('reencrypting');
      expect(first.remaining).toBe(3 * 150);
      const second = await reencrypt(ctx, { dryRun: false, batchSize: 50, shard: { index: 1, count: 2 } });
      expect(second.rotation.phase).toBe('reencrypted');
      await expectPlaintextIntact(ctx, 'v2', 300);
    });

    it('generate interrupted after publishing the key resumes and adopts that key', async () => {
      const ctx = await setup(NO_WAIT, 10);
      const crashing = {
        provider: ctx.keystore.provider,
        writable: true,
        describe: () => ctx.keystore.describe(),
        read: () => ctx.keystore.read(),
        readArchive: (k: string) => ctx.keystore.readArchive(k),
        writeArchive: ctx.keystore.writeArchive.bind(ctx.keystore),
        write: async (...args: Parameters<CoreContext['keystore']['write']>) => {
          await ctx.keystore.write(...args);
          throw new Error('simulated crash right after publishing');
        },
      };
      await expect(generate({ ...ctx, keystore: crashing }, { emergency: false })).rejects.toThrow(/simulated crash/);
      expect((await openRotation(ctx.db, 'default'))!.phase).toBe('generating');
      const orphanKey = (await ctx.keystore.read())!.doc.keys.get('v2')!;
      const g = await generate(ctx, { emergency: false });
      expect(g).toMatchObject({ newVersion: 'v2', resumed: true });
      expect((await ctx.keystore.read())!.doc.keys.get('v2')!.equals(orphanKey)).toBe(true);
      expect((await listVersions(ctx.db, 'default')).map((v) => [v.version, v.state])).toEqual([
        ['v1', 'primary'],
        ['v2', 'decrypt-only'],
      ]);
    });

    it('migration 0002 chains audit rows written before the chain existed', async () => {
      const ctx = await openTestContext(t.db, { now });
      t.cleanup(() => ctx.db.close());
      // Start again from a schema at 0001 only.
      for (const t of [TABLES.audit, TABLES.auditHead, TABLES.keyVersions, TABLES.rotations, TABLES.checkpoints, 'keyctl_migrations', 'keyctl_migrations_lock'])
        await ctx.db.knex.schema.dropTableIfExists(t);
      await ctx.db.knex.migrate.up(MIGRATOR_CONFIG);
      for (const action of ['init', 'register']) {
        await ctx.db
          .knex(TABLES.audit)
          .insert({ keyring: 'default', action, actor: 'old@host', outcome: 'ok', created_at: ctx.db.adapter.toDbTime(new Date('2026-01-02T03:04:05.678Z')) });
      }
      await migrate(ctx.db);
      const rows = await listAudit(ctx.db, 'default');
      expect(rows.map((r) => [r.seq, r.action])).toEqual([
        [1, 'init'],
        [2, 'register'],
      ]);
      expect((await verifyAuditChain(ctx.db)).flatMap((c) => c.problems)).toEqual([]);
    });

    it('audit --verify passes untouched and fails after a row is edited or deleted in SQL', async () => {
      const ctx = await setup(NO_WAIT, 10);
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      expect((await verifyAuditChain(ctx.db)).flatMap((c) => c.problems)).toEqual([]);
      const rows = await listAudit(ctx.db, 'default');
      await ctx.db.knex(TABLES.audit).where({ id: rows[1]!.id }).update({ actor: 'mallory@evil' });
      expect((await verifyAuditChain(ctx.db))[0]!.problems.join('\n')).toMatch(/was edited/);
      await ctx.db.knex(TABLES.audit).where({ id: rows[1]!.id }).update({ actor: rows[1]!.actor });
      expect((await verifyAuditChain(ctx.db)).flatMap((c) => c.problems)).toEqual([]);
      await ctx.db
        .knex(TABLES.audit)
        .where({ id: rows[rows.length - 1]!.id })
        .delete();
      expect((await verifyAuditChain(ctx.db))[0]!.problems.join('\n')).toMatch(/deleted/);
    });
  });
}
