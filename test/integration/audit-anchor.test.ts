/**
 * The audit anchor on every database (file keystore) and on the network keystores (AWS Secrets
 * Manager and Vault, through their wire-protocol test servers): anchoring follows the database
 * head and never goes backwards, the three rewrites of issue 16 are reported against it, and a
 * chain that does not extend the anchor is never anchored.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { anchorAuditHead } from '../../src/core/audit-anchor.js';
import { verifyAudit } from '../../src/core/audit.js';
import type { CoreContext } from '../../src/core/context.js';
import { silentLogger } from '../../src/core/context.js';
import { auditFieldsOf } from '../../src/db/audit-fields.js';
import { auditRowHash, GENESIS_HASH } from '../../src/db/audit-hash.js';
import { openDatabase, type Db } from '../../src/db/connect.js';
import { migrate } from '../../src/db/migrations.js';
import { EnvKeystore } from '../../src/keystore/env.js';
import { openKeystore } from '../../src/keystore/index.js';
import type { Keystore } from '../../src/keystore/types.js';
import { appendAudit, readAuditHead } from '../../src/rotation/store.js';
import { openTestContext } from '../helpers/context.js';
import { createTestDatabase, DIALECTS, dialectAvailable, perTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { AWS_ENV, awsHarness, vaultHarness, type KeystoreHarness } from '../helpers/keystores.js';

type Ctx = CoreContext & { db: Db };

async function append(ctx: Ctx, n: number, actor = 'tester@test'): Promise<void> {
  for (let i = 0; i < n; i++) {
    await appendAudit(ctx.db, { keyring: 'default', action: 'backup', actor, outcome: 'ok', details: { reason: `row ${i}` } }, ctx.now());
  }
}

async function head(ctx: Ctx) {
  const h = await readAuditHead(ctx.db, 'default');
  if (!h) throw new Error('no head');
  return h;
}

/** The checks every keystore that can anchor must pass. */
function anchorSuite(open: () => Promise<Ctx>) {
  it('anchors the committed head, only forward, and concurrent anchorers converge on the newest head', async () => {
    const ctx = await open();
    await append(ctx, 3);
    expect(await anchorAuditHead(ctx, 'default')).toMatchObject({ status: 'anchored', head: { seq: 3 }, previousSeq: null });
    expect(await anchorAuditHead(ctx, 'default')).toMatchObject({ status: 'up-to-date', seq: 3 });
    const v = await verifyAudit(ctx);
    expect(v.problems).toEqual([]);
    expect(v.anchors).toEqual([expect.objectContaining({ keyring: 'default', status: 'matches', anchoredSeq: 3 })]);

    // Appending and anchoring at once: the anchor ends on the final head, whoever wins each race.
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        await append(ctx, 1);
        await anchorAuditHead(ctx, 'default');
      }),
    );
    const h = await head(ctx);
    expect(h.seq).toBe(7);
    expect((await verifyAudit(ctx)).anchors[0]).toMatchObject({ status: 'matches', anchoredSeq: 7, anchoredHash: h.hash });
  });

  it('reports the three rewrites, and never anchors a chain that does not extend the anchor', async () => {
    const ctx = await open();
    await append(ctx, 4);
    await anchorAuditHead(ctx, 'default');
    const k = ctx.db.knex;

    // (c) edit a row's actor and reason, re-hash everything, fix the head: consistent, but not the anchored hash.
    const saved = (await k('rotation_audit').orderBy('id')) as Record<string, unknown>[];
    await k('rotation_audit')
      .where({ seq: 2 })
      .update({ actor: 'someone-else', details: JSON.stringify({ reason: 'better' }) });
    let prev = GENESIS_HASH;
    for (const r of (await k('rotation_audit').where({ keyring: 'default' }).orderBy('id')) as Record<string, unknown>[]) {
      const hash = auditRowHash(prev, auditFieldsOf(r));
      await k('rotation_audit').where({ id: r.id }).update({ prev_hash: prev, row_hash: hash });
      prev = hash;
    }
    await k('keyctl_audit_head').where({ keyring: 'default' }).update({ last_hash: prev });
    let v = await verifyAudit(ctx);
    expect(v.chains[0]!.problems).toEqual([]); // the database alone says intact
    expect(v.anchors[0]).toMatchObject({ status: 'rewritten' });
    expect(v.intact).toBe(false);
    await append(ctx, 1);
    expect(await anchorAuditHead(ctx, 'default')).toMatchObject({ status: 'refused' });

    // (a) put the true rows back, then delete the newest and rewind the head.
    await k('rotation_audit').delete();
    for (const r of saved) await k('rotation_audit').insert(r);
    const last = saved.at(-1)!;
    await k('keyctl_audit_head')
      .where({ keyring: 'default' })
      .update({ seq: Number(last.seq), last_hash: last.row_hash });
    expect((await verifyAudit(ctx)).intact).toBe(true);
    await k('rotation_audit').where({ seq: 4 }).delete();
    await k('keyctl_audit_head').where({ keyring: 'default' }).update({ seq: 3, last_hash: saved[2]!.row_hash });
    v = await verifyAudit(ctx);
    expect(v.anchors[0]).toMatchObject({ status: 'truncated', anchoredSeq: 4 });
    expect(v.problems.join('\n')).toMatch(/1 row\(s\) were deleted/);

    // (b) everything gone.
    await k('rotation_audit').delete();
    await k('keyctl_audit_head').delete();
    v = await verifyAudit(ctx);
    expect(v.anchors[0]).toMatchObject({ status: 'truncated' });
    expect(v.intact).toBe(false);
  });

  it('--expect-head: a checkpoint kept elsewhere', async () => {
    const ctx = await open();
    await append(ctx, 2);
    const h = await head(ctx);
    expect((await verifyAudit(ctx, { seq: h.seq, hash: h.hash })).intact).toBe(true);
    expect((await verifyAudit(ctx, { seq: h.seq, hash: 'a'.repeat(64) })).problems.join()).toMatch(/expected head/);
  });
}

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`audit anchor, file keystore, on ${dialect}`, () => {
    const t = perTestDatabase(dialect);
    anchorSuite(async () => {
      const ctx = await openTestContext(t.db);
      t.cleanup(() => ctx.db.close());
      return ctx;
    });
  });
}

describe.skipIf(!dialectAvailable('sqlite'))('audit anchor on the network keystores (SQLite)', () => {
  const opened: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of opened.splice(0).reverse()) await c();
  });

  async function ctxOn(h: KeystoreHarness): Promise<Ctx> {
    const tdb: TestDatabase = await createTestDatabase('sqlite');
    const config = parseConfig(
      `database:\n  client: sqlite\n  connection: ${JSON.stringify(tdb.connection)}\n${h.yaml}`,
      path.join(tdb.dir, 'keyctl.yaml'),
      h.env,
    );
    const db = await openDatabase(config.database, { baseDir: config.baseDir });
    await migrate(db);
    opened.push(
      () => h.close(),
      () => tdb.drop(),
      () => db.close(),
    );
    const keystore: Keystore = openKeystore(config, { ...process.env, ...h.env });
    return { config, db, keystore, now: () => new Date(), actor: 'tester@test', log: silentLogger };
  }

  describe('AWS Secrets Manager', () => {
    // The SDK's default credential chain reads the process environment.
    beforeEach(() => {
      for (const [k, v] of Object.entries(AWS_ENV)) vi.stubEnv(k, v);
    });
    afterEach(() => vi.unstubAllEnvs());
    anchorSuite(async () => ctxOn(await awsHarness()));
  });
  describe('Vault', () => anchorSuite(async () => ctxOn(await vaultHarness())));

  it('the env keystore cannot anchor, and verify says what it could not check', async () => {
    const tdb = await createTestDatabase('sqlite');
    const ctx = await openTestContext(tdb, { keystore: new EnvKeystore({ env: {}, prefix: 'KEYCTL_', keyring: 'default' }) });
    opened.push(
      () => tdb.drop(),
      () => ctx.db.close(),
    );
    await append(ctx, 1);
    await expect(anchorAuditHead(ctx, 'default')).rejects.toThrow(/read-only: keyctl cannot anchor/);
    const v = await verifyAudit(ctx);
    expect(v.intact).toBe(true);
    expect(v.anchors[0]).toMatchObject({ status: 'unsupported' });
    expect(v.unchecked.join('\n')).toMatch(/cannot anchor.*audit --export/);
  });
});
