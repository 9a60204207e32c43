/**
 * Per-tenant keyrings in AWS Secrets Manager and Vault (the local servers speaking each service's
 * wire protocol, test/fixtures): each tenant's keyring is its own secret (`<secretId>/<keyring>`,
 * `<path>/<keyring>`), one tenant rotates alone, and shredding one deletes its secrets for good
 * (no recovery window, no KV version left) while the other tenant's stay as they were.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { json, keyctl, type RunResult } from '../helpers/cli.js';
import { dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { AWS_SECRET, awsHarness, VAULT_PATH, vaultHarness } from '../helpers/keystores.js';

const harnesses = { 'aws-secrets-manager': awsHarness, vault: vaultHarness } as const;

for (const provider of ['aws-secrets-manager', 'vault'] as const) {
  describe.runIf(dialectAvailable('sqlite'))(`tenants in ${provider}`, () => {
    const t = perTestDatabase('sqlite');
    let h: Awaited<ReturnType<(typeof harnesses)[typeof provider]>> | undefined;
    afterEach(async () => {
      await h?.close();
      h = undefined;
    });

    it('keeps one secret per tenant, rotates one alone and shreds one without leaving a recoverable version', { timeout: 120_000 }, async () => {
      h = await harnesses[provider]();
      const dir = t.db.dir;
      writeFileSync(
        path.join(dir, 'keyctl.yaml'),
        `database:\n  client: sqlite\n  connection: ${JSON.stringify(t.db.connection)}\n${h.yaml}keyring: default\n` +
          'tenancy:\n  column: tenant_id\n  keyring: "tenant-{tenant}"\n' +
          'targets:\n  - table: customers\n    primaryKey: id\n    columns: [email, phone, notes]\npolicy:\n  minPropagationSeconds: 0\n',
      );
      const run = (...args: string[]): Promise<RunResult> => keyctl(args, { cwd: dir, env: { ...h!.env, KEYCTL_ACTOR: 'e2e@test' } });
      const ok = async (...args: string[]) => {
        const r = await run(...args);
        expect(r.code, `keyctl ${args.join(' ')}\n${r.stderr}`).toBe(0);
        return r;
      };
      await ok('init', '--existing-config', '--demo', '--tenants', '2', '--rows', '60');

      // Where each tenant's published document is, as the service holds it.
      const doc = (tenant: string): string | null => {
        if (h!.provider === 'aws-secrets-manager') {
          const server = (h as Awaited<ReturnType<typeof awsHarness>>).server;
          const s = server.secrets.get(`${AWS_SECRET}/tenant-${tenant}`);
          return s && !s.deletedDate ? (server.valueAt(`${AWS_SECRET}/tenant-${tenant}`) ?? null) : null;
        }
        const cur = (h as Awaited<ReturnType<typeof vaultHarness>>).server.current('secret', `${VAULT_PATH}/tenant-${tenant}`);
        return cur?.data ? JSON.stringify(cur.data) : null;
      };
      const before = doc('t001');
      expect(before).not.toBeNull();
      expect(doc('t002')).not.toBeNull();

      for (const step of ['generate', 'dual-key', 'reencrypt', 'verify', 'promote']) await ok(step, '--tenant', 't002');
      await ok('retire', '--tenant', 't002', '--force', '--reason', 'test');
      expect(JSON.parse(doc('t002')!).primary).toBe('v2');
      expect(doc('t001')).toBe(before);

      await ok('shred', '--tenant', 't002', '--reason', 'erasure', '--yes');
      expect(doc('t002')).toBeNull();
      expect(doc('t001')).toBe(before);
      if (h.provider === 'aws-secrets-manager') {
        // Deleted at once, not scheduled: nothing of the tenant's keyring (published or archive) is left to restore.
        const server = (h as Awaited<ReturnType<typeof awsHarness>>).server;
        expect([...server.secrets.keys()].filter((n) => n.startsWith(`${AWS_SECRET}/tenant-t002`) && !n.endsWith('/audit-anchor'))).toEqual([]);
      } else {
        const server = (h as Awaited<ReturnType<typeof vaultHarness>>).server;
        expect(server.current('secret', `${VAULT_PATH}/tenant-t002`)).toBeFalsy();
        expect(server.current('secret', `${VAULT_PATH}/tenant-t002-archive`)).toBeFalsy();
      }
      const listed = json<{ tenants: Array<{ tenant: string; shredded: boolean; values: Record<string, number> }> }>(await ok('tenant', 'list', '--json'));
      expect(listed.tenants.map((x) => [x.tenant, x.shredded, x.values])).toEqual([
        ['t001', false, { v1: 90 }],
        ['t002', true, { shredded: 90 }],
      ]);
      await ok('verify', '--all-tenants');
    });
  });
}
