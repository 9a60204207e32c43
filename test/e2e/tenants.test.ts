/**
 * Per-tenant keyrings on every dialect (docs/tenants.md): three tenants sharing a table. Rotating
 * one leaves the others' rows, keys and audit chains byte-for-byte as they were; an --all-tenants
 * rotation survives kill -9 mid-reencrypt and ends with every row readable under its own tenant's
 * new key; shredding one (behind the two-person rule) leaves its values reported as shredded and
 * the others readable.
 */
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Knex } from 'knex';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { demoRows } from '../../src/core/demo.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { json, keyctl } from '../helpers/cli.js';
import { killMidRun, rowsScanned } from '../helpers/kill.js';
import { createTestDatabase, DIALECTS, dialectAvailable, knexForProject, type TestDatabase } from '../helpers/databases.js';
import { GpgHome } from '../helpers/gpg.js';

const ROWS = 900;
const TENANTS = ['t001', 't002', 't003'] as const;
const codec = new AesGcmV1Codec();

let home: GpgHome;
let approver: { pub: string; sec: string };

beforeAll(() => {
  home = new GpgHome();
  const uid = 'dpo@example.com';
  home.run(['--passphrase', '', '--quick-gen-key', uid, 'future-default', 'default', 'never']);
  const fpr = home
    .run(['--with-colons', '--fingerprint', uid])
    .split('\n')
    .find((l) => l.startsWith('fpr:'))!
    .split(':')[9]!;
  approver = { pub: path.join(home.dir, 'dpo.pub.asc'), sec: path.join(home.dir, 'dpo.sec.asc') };
  writeFileSync(approver.pub, home.run(['--armor', '--export', fpr]));
  writeFileSync(approver.sec, home.run(['--armor', '--passphrase', '', '--export-secret-keys', fpr]));
}, 60_000);

afterAll(() => home.close());

type Row = { id: number; tenant_id: string; email: string; phone: string; notes: string };

/** Rows of the demo table by id, as stored. */
async function rowsOf(db: Knex): Promise<Map<number, Row>> {
  const rows = (await db('customers').select('id', 'tenant_id', 'email', 'phone', 'notes').orderBy('id')) as Row[];
  return new Map(rows.map((r) => [Number(r.id), { ...r, id: Number(r.id) }]));
}

/** A tenant's published keys (file keystore: .keyctl/tenants/tenant-<id>.json). */
function keysOf(cwd: string, tenant: string): Map<string, Buffer> | null {
  const file = path.join(cwd, '.keyctl', 'tenants', `tenant-${tenant}.json`);
  if (!existsSync(file)) return null;
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { keys: Record<string, string> };
  return new Map(Object.entries(doc.keys).map(([v, k]) => [v, Buffer.from(k, 'base64')]));
}

/** Every row of `tenants` decrypts, under `version`, to the plaintext the demo wrote. */
function expectReadable(cwd: string, rows: Map<number, Row>, tenants: readonly string[], version: string): void {
  const plain = [...demoRows(ROWS)];
  for (const t of tenants) {
    const keys = keysOf(cwd, t)!;
    let n = 0;
    for (const r of rows.values()) {
      if (r.tenant_id !== t) continue;
      const want = plain[r.id - 1]!;
      for (const c of ['email', 'phone', 'notes'] as const) {
        expect(r[c].startsWith(`${version}:`), `${t} row ${r.id} ${c}`).toBe(true);
        expect(codec.decrypt(r[c], (v) => keys.get(v))).toBe(want[c]);
      }
      n++;
    }
    expect(n).toBe(ROWS / 3);
  }
}

/** Start the one-pass `reencrypt --all-tenants` and SIGKILL it once its checkpoint shows `more` rows scanned. */
const killAllTenants = async (cwd: string, env: NodeJS.ProcessEnv, db: Knex, more: number) =>
  killMidRun(['reencrypt', '--all-tenants', '--batch-size', '20'], cwd, env, db, (await rowsScanned(db)) + more);

const auditHeads = async (db: Knex) =>
  Object.fromEntries(
    ((await db('keyctl_audit_head').select('keyring', 'seq', 'last_hash')) as Array<{ keyring: string; seq: unknown; last_hash: string }>).map((h) => [
      h.keyring,
      `${Number(h.seq)}:${h.last_hash}`,
    ]),
  );

const fileOf = (cwd: string, tenant: string) => readFileSync(path.join(cwd, '.keyctl', 'tenants', `tenant-${tenant}.json`), 'utf8');

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`tenants on ${dialect}`, () => {
    let tdb: TestDatabase | undefined;
    let db: Knex | undefined;
    afterEach(async () => {
      await db?.destroy();
      db = undefined;
      await tdb?.drop();
      tdb = undefined;
    });

    it('rotates one tenant alone, all tenants through kill -9, and shreds one behind the two-person rule', { timeout: 300_000 }, async () => {
      tdb = await createTestDatabase(dialect);
      const cwd = tdb.dir;
      const env = { APP_DB: tdb.connection, KEYCTL_ACTOR: 'op@test' };
      const run = (...args: string[]) => keyctl(args, { cwd, env });
      const ok = async (...args: string[]) => {
        const r = await run(...args);
        expect(r.code, `keyctl ${args.join(' ')}: ${r.stderr}`).toBe(0);
        return r;
      };
      await ok('init', '--demo', '--tenants', '3', '--rows', String(ROWS), '--database', '${APP_DB}');
      db = knexForProject(dialect, cwd, tdb.connection);
      const listed = json<{ tenants: Array<{ tenant: string; primary: string; values: Record<string, number> }> }>(await ok('tenant', 'list', '--json'));
      expect(listed.tenants.map((t) => [t.tenant, t.primary, t.values])).toEqual(TENANTS.map((t) => [t, 'v1', { v1: ROWS }]));

      // Without --tenant a keyring command does not guess.
      const bare = await run('generate');
      expect(bare.code).toBe(ExitCode.USAGE);
      expect(bare.stderr).toContain('--tenant ID, or --all-tenants');

      // ── Rotate only t002: t001 and t003 unchanged, byte for byte.
      const before = await rowsOf(db);
      const heads = await auditHeads(db);
      const files = { t001: fileOf(cwd, 't001'), t003: fileOf(cwd, 't003') };
      for (const step of [['generate'], ['dual-key'], ['reencrypt'], ['verify'], ['promote'], ['retire', '--force', '--reason', 'test']]) {
        const r = await ok(...step, '--tenant', 't002');
        // The demo table has an index led by the tenancy column: the tenant's pass reads by it.
        if (step[0] === 'reencrypt') expect(r.stderr).toContain('by the index on (tenant_id');
      }
      const after = await rowsOf(db);
      for (const [id, r] of before) {
        if (r.tenant_id === 't002') expect(after.get(id)!.email.startsWith('v2:')).toBe(true);
        else expect(after.get(id)).toEqual(r);
      }
      expectReadable(cwd, after, ['t002'], 'v2');
      expectReadable(cwd, after, ['t001', 't003'], 'v1');
      expect({ t001: fileOf(cwd, 't001'), t003: fileOf(cwd, 't003') }).toEqual(files);
      const headsAfter = await auditHeads(db);
      expect([headsAfter['tenant-t001'], headsAfter['tenant-t003']]).toEqual([heads['tenant-t001'], heads['tenant-t003']]);
      expect(headsAfter['tenant-t002']).not.toEqual(heads['tenant-t002']);

      // ── A rotation of t001 rolled back: t002 and t003 stay as they were.
      const beforeRollback = await rowsOf(db);
      const headsBeforeRollback = await auditHeads(db);
      // Without an index led by the tenancy column, a tenant's pass says what it costs.
      await db.schema.alterTable('customers', (t) => t.dropIndex(['tenant_id'], 'customers_tenant_id'));
      for (const step of [['generate'], ['dual-key'], ['reencrypt'], ['rollback', '--reason', 'test'], ['reencrypt'], ['verify']]) {
        const r = await ok(...step, '--tenant', 't001');
        if (step[0] === 'reencrypt') expect(r.stderr).toContain('has no index led by tenant_id');
      }
      const afterRollback = await rowsOf(db);
      for (const [id, r] of beforeRollback) if (r.tenant_id !== 't001') expect(afterRollback.get(id)).toEqual(r);
      expectReadable(cwd, afterRollback, ['t001'], 'v1');
      const headsAfterRollback = await auditHeads(db);
      expect([headsAfterRollback['tenant-t002'], headsAfterRollback['tenant-t003']]).toEqual([
        headsBeforeRollback['tenant-t002'],
        headsBeforeRollback['tenant-t003'],
      ]);
      // ── Every tenant at once, killed mid-reencrypt twice, then resumed to the end.
      await ok('generate', '--all-tenants');
      await ok('dual-key', '--all-tenants');
      await killAllTenants(cwd, env, db, ROWS / 4);
      await killAllTenants(cwd, env, db, ROWS / 4);
      const resumed = json<{ tenants: Array<{ tenant: string; phase: string; remaining: number }>; tables: Array<{ resumedFrom: unknown }> }>(
        await ok('reencrypt', '--all-tenants', '--json'),
      );
      // One pass for the three tenants, resumed from the cursor the killed runs saved.
      expect(resumed.tenants.map((t) => [t.tenant, t.phase, t.remaining])).toEqual(TENANTS.map((t) => [t, 'reencrypted', 0]));
      expect(resumed.tables[0]!.resumedFrom).not.toBeNull();
      await ok('verify', '--all-tenants');
      const rotated = await rowsOf(db);
      expectReadable(cwd, rotated, ['t003'], 'v2');
      expectReadable(cwd, rotated, ['t001', 't002'], 'v3');
      await ok('promote', '--all-tenants');
      await ok('retire', '--all-tenants', '--force', '--reason', 'test');

      // ── Shred t003, behind the two-person rule.
      mkdirSync(path.join(cwd, 'approvers'));
      copyFileSync(approver.pub, path.join(cwd, 'approvers', 'dpo.asc'));
      appendFileSync(path.join(cwd, 'keyctl.yaml'), 'approvals:\n  approvers:\n    - { name: dpo, publicKey: ./approvers/dpo.asc }\n  require: { shred: 1 }\n');
      const refused = await run('shred', '--tenant', 't003', '--reason', 'erasure request 4411', '--yes');
      expect(refused.code, refused.stderr).toBe(ExitCode.REFUSED);
      expect(refused.stderr).toContain('shred');
      expect(keysOf(cwd, 't003')).not.toBeNull();
      const { id } = json<{ request: { id: number } }>(
        await ok('approval', 'request', 'shred', '--tenant', 't003', '--reason', 'erasure 4411', '--json'),
      ).request;
      await ok('approval', 'sign', String(id), '--key', approver.sec, '--tenant', 't003');
      await ok('backup', '--tenant', 't003', '--recipient', approver.pub);
      const beforeShred = await rowsOf(db);
      await ok('shred', '--tenant', 't003', '--reason', 'erasure request 4411', '--yes');
      // Key backups: the old one of t003 is reported until pruned; new ones leave t003 out.
      await ok('backup', '--all-tenants', '--recipient', approver.pub);
      const backups = () => readdirSync(path.join(cwd, '.keyctl', 'backups')).filter((f) => f.endsWith('.gpg'));
      expect(backups().filter((f) => f.startsWith('keyctl-backup-tenant-t003-'))).toHaveLength(1);
      expect(backups().filter((f) => f.startsWith('keyctl-backup-tenant-t00'))).toHaveLength(3);
      const held = json<{ tenants: Array<{ tenant: string; keyBackups?: unknown[] }> }>(await ok('tenant', 'list', '--json'));
      expect(held.tenants.find((t) => t.tenant === 't003')!.keyBackups).toHaveLength(1);
      expect((await run('backup', '--prune-tenant', 't001')).code).toBe(ExitCode.REFUSED);
      await ok('backup', '--prune-tenant', 't003');
      expect(backups().filter((f) => f.startsWith('keyctl-backup-tenant-t003-'))).toEqual([]);
      expect(backups()).toHaveLength(2);
      expect(keysOf(cwd, 't003')).toBeNull();
      expect(readdirSync(path.join(cwd, '.keyctl', 'tenants')).filter((f) => f.startsWith('tenant-t003.') && !f.includes('audit-anchor'))).toEqual([]);
      // Values stay as they were (unreadable now), the other tenants still decrypt.
      const afterShred = await rowsOf(db);
      expect(afterShred).toEqual(beforeShred);
      expectReadable(cwd, afterShred, ['t001', 't002'], 'v3');
      const status = json<{ tenants: Array<{ tenant: string; shredded: boolean; values: Record<string, number> }>; problems: unknown[] }>(
        await ok('status', '--all-tenants', '--check', '--json'),
      );
      expect(status.tenants.find((t) => t.tenant === 't003')).toMatchObject({ shredded: true, values: { shredded: ROWS } });
      expect(status.problems).toEqual([]);
      await ok('verify', '--all-tenants');
      const audit = json<{ entries: Array<{ action: string; outcome: string; details: Record<string, unknown> }> }>(
        await ok('audit', '--tenant', 't003', '--all', '--json'),
      );
      const shredRows = audit.entries.filter((r) => r.action === 'shred');
      expect(shredRows.map((r) => r.outcome)).toEqual(['refused', 'ok']);
      expect(shredRows[1]!.details).toMatchObject({ tenant: 't003', reason: 'erasure request 4411', approval: { approvers: ['dpo'] } });
      // A shredded tenant's keyring takes no more commands, and its id is not reused.
      expect((await run('generate', '--tenant', 't003')).code).toBe(ExitCode.REFUSED);
      expect((await run('tenant', 'add', 't003')).code).toBe(ExitCode.REFUSED);
    });
  });
}
