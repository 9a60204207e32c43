/**
 * The two-person rule on every dialect: requests, signatures (keyctl approval sign, and a binary
 * `gpg --detach-sign` added by file), the guard at the moment of the action, a forged signature
 * row, a cleared consumed_at, and a break glass owed and then approved — through keyctl's own
 * tables on SQLite, PostgreSQL and MySQL/MariaDB (booleans, millisecond times, JSON in text).
 */
import { appendFileSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, keyctl } from '../helpers/cli.js';
import { createTestDatabase, DIALECTS, dialectAvailable, knexForProject, type TestDatabase } from '../helpers/databases.js';
import { GpgHome } from '../helpers/gpg.js';

let home: GpgHome;
const keys: Record<'so' | 'dba' | 'eve', { pub: string; sec: string; fpr: string }> = {} as never;

beforeAll(() => {
  home = new GpgHome();
  for (const who of ['so', 'dba', 'eve'] as const) {
    const uid = `${who}@example.com`;
    home.run(['--passphrase', '', '--quick-gen-key', uid, 'future-default', 'default', 'never']);
    const fpr = home
      .run(['--with-colons', '--fingerprint', uid])
      .split('\n')
      .find((l) => l.startsWith('fpr:'))!
      .split(':')[9]!;
    const pub = path.join(home.dir, `${who}.pub.asc`);
    const sec = path.join(home.dir, `${who}.sec.asc`);
    writeFileSync(pub, home.run(['--armor', '--export', fpr]));
    writeFileSync(sec, home.run(['--armor', '--passphrase', '', '--export-secret-keys', fpr]));
    keys[who] = { pub, sec, fpr };
  }
}, 60_000);

afterAll(() => home.close());

interface Listed {
  id: number;
  action: string;
  status: string;
  breakGlass: boolean;
  approvals: Array<{ approver: string; fingerprint: string }>;
}

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`approvals on ${dialect}`, () => {
    let tdb: TestDatabase | undefined;
    afterEach(async () => {
      await tdb?.drop();
      tdb = undefined;
    });

    it('approves, refuses forged and replayed approvals, and tracks a break glass until it is signed', { timeout: 120_000 }, async () => {
      tdb = await createTestDatabase(dialect);
      const cwd = tdb.dir;
      const env = { APP_DB: tdb.connection, KEYCTL_ACTOR: 'op@test' };
      const run = (...args: string[]) => keyctl(args, { cwd, env });
      expect((await run('init', '--demo', '--rows', '20', '--database', '${APP_DB}')).code).toBe(0);
      mkdirSync(path.join(cwd, 'approvers'));
      copyFileSync(keys.so.pub, path.join(cwd, 'approvers', 'so.asc'));
      copyFileSync(keys.dba.pub, path.join(cwd, 'approvers', 'dba.asc'));
      appendFileSync(
        path.join(cwd, 'keyctl.yaml'),
        'approvals:\n  approvers:\n    - { name: security-officer, publicKey: ./approvers/so.asc }\n    - { name: dba-oncall, publicKey: ./approvers/dba.asc }\n' +
          '  require: { generate: 2, promote: 2, retire: 2, rollback: 2 }\n  breakGlass: true\n',
      );
      const listed = async () => json<{ requests: Listed[] }>(await run('approval', 'list', '--json')).requests;

      // Refused until two approvers sign; one by keyctl, one by gpg outside keyctl (binary).
      expect((await run('generate')).code).toBe(ExitCode.REFUSED);
      const { id } = json<{ request: { id: number } }>(await run('approval', 'request', 'generate', '--reason', 'CHG-1', '--json')).request;
      expect((await run('approval', 'sign', String(id), '--key', keys.so.sec)).code).toBe(0);
      const canonical = (await run('approval', 'show', String(id), '--canonical')).stdout;
      const sig = path.join(cwd, 'dba.sig');
      home.run(['--local-user', keys.dba.fpr, '--detach-sign', '--output', sig], canonical);
      const added = await run('approval', 'add', String(id), '--signature', sig);
      expect(added.code, added.stderr).toBe(0);
      const generated = await run('generate');
      expect(generated.code, generated.stderr).toBe(0);
      expect((await listed()).find((r) => r.id === id)).toMatchObject({
        status: 'consumed',
        approvals: expect.arrayContaining([
          { approver: 'security-officer', fingerprint: keys.so.fpr, signedAt: expect.any(String) },
          { approver: 'dba-oncall', fingerprint: keys.dba.fpr, signedAt: expect.any(String) },
        ]),
      });

      const db = knexForProject(dialect, cwd, tdb.connection);
      try {
        // A consumed request with consumed_at cleared is still consumed (its audit row says so).
        await db('keyctl_approval_requests').where({ id }).update({ consumed_at: null });
        expect((await listed()).find((r) => r.id === id)?.status).toBe('consumed');

        // A forged signature row (eve's key, labelled dba-oncall) does not count.
        const rb = json<{ request: { id: number; canonical: string } }>(await run('approval', 'request', 'rollback', '--json')).request;
        expect((await run('approval', 'sign', String(rb.id), '--key', keys.so.sec)).code).toBe(0);
        const eveSig = home.run(['--local-user', keys.eve.fpr, '--detach-sign', '--armor'], rb.canonical);
        const now = new Date();
        await db('keyctl_approval_signatures').insert({
          request_id: rb.id,
          approver: 'dba-oncall',
          fingerprint: keys.dba.fpr,
          signature: eveSig,
          signed_at: now,
          added_by: 'mallory@db',
          added_at: now,
        });
        const refused = await run('rollback', '--reason', 'CHG-2');
        expect(refused.code).toBe(ExitCode.REFUSED);
        expect(refused.stderr).toContain(`request #${rb.id} has 1 (security-officer); still missing: 1 of dba-oncall`);

        // Break glass: an emergency escalation runs, is owed, then approved afterwards.
        expect((await run('generate', '--emergency', '--break-glass', '--reason', 'INC-1')).code).toBe(0);
        const owed = await run('status', '--check');
        expect(owed.code).toBe(ExitCode.PROBLEMS_FOUND);
        expect(owed.stderr).toContain('[break-glass-unapproved]');
        const bg = (await listed()).find((r) => r.breakGlass)!;
        expect(bg).toMatchObject({ action: 'generate', status: 'break-glass-pending' });
        for (const who of ['so', 'dba'] as const) expect((await run('approval', 'sign', String(bg.id), '--key', keys[who].sec)).code).toBe(0);
        expect((await listed()).find((r) => r.id === bg.id)?.status).toBe('break-glass-approved');
        expect((await run('status', '--check')).stderr).not.toContain('break-glass');
        expect((await run('audit', '--verify')).code).toBe(0);
      } finally {
        await db.destroy();
      }
    });
  });
}
