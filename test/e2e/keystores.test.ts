/**
 * Whole rotations with the keys living only in AWS Secrets Manager or Vault: the real SDK
 * clients inside the built keyctl, against local servers speaking each service's documented
 * wire protocol (test/fixtures). After every step the test reads the service's own state:
 * stage labels for AWS, KV versions and check-and-set for Vault.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { json, keyctl, type RunResult } from '../helpers/cli.js';
import { dialectAvailable, perTestDatabase } from '../helpers/databases.js';
import { AWS_SECRET, awsHarness, VAULT_PATH, vaultHarness, writeConfig } from '../helpers/keystores.js';

const ROWS = 120;

const harnesses = { 'aws-secrets-manager': awsHarness, vault: vaultHarness } as const;

for (const provider of ['aws-secrets-manager', 'vault'] as const) {
  for (const dialect of ['sqlite', 'pg'] as const) {
    describe.runIf(dialectAvailable(dialect))(`${provider} keystore on ${dialect}`, () => {
      const t = perTestDatabase(dialect);
      let h: Awaited<ReturnType<(typeof harnesses)[typeof provider]>> | undefined;
      afterEach(async () => {
        await h?.close();
        h = undefined;
      });

      it('runs generate → dual-key → reencrypt → verify → promote → retire, then a rotation rolled back, with the keys only in the keystore', async () => {
        h = await harnesses[provider]();
        const dir = t.db.dir;
        // Retired keys are destroyed at retire here (retention 0), to exercise each provider's destruction path.
        writeConfig(dir, t.db, h, '  retiredKeyRetentionDays: 0\n');
        const run = async (...args: string[]): Promise<RunResult> => {
          const r = await keyctl(args, { cwd: dir, env: { ...h!.env, KEYCTL_ACTOR: 'e2e@test' } });
          expect(r.code, `keyctl ${args.join(' ')}\n${r.stderr}`).toBe(0);
          return r;
        };
        // Provider-specific history checks after each step.
        let writes = 0;
        const history = (changed: boolean): void => {
          if (changed) writes++;
          if (h!.provider === 'aws-secrets-manager') {
            const server = (h as Awaited<ReturnType<typeof awsHarness>>).server;
            const stages = server.stagesOf(AWS_SECRET);
            expect(stages.AWSPENDING, 'no change is left staged').toBeUndefined();
            expect(server.secrets.get(AWS_SECRET)!.versions.size).toBe(writes);
            if (writes > 1) expect(stages.AWSPREVIOUS).toBeDefined();
          } else {
            const server = (h as Awaited<ReturnType<typeof vaultHarness>>).server;
            expect(server.current('secret', VAULT_PATH)!.version).toBe(writes);
          }
        };

        await run('init', '--existing-config', '--demo', '--rows', String(ROWS));
        expect(existsSync(path.join(dir, '.keyctl')), 'no key file is written anywhere').toBe(false);
        expect(h.published()).toEqual({ primary: 'v1', keys: ['v1'] });
        history(true);

        await run('generate');
        expect(h.published()).toEqual({ primary: 'v1', keys: ['v1', 'v2'] });
        history(true);
        if (h.provider === 'aws-secrets-manager') {
          const server = (h as Awaited<ReturnType<typeof awsHarness>>).server;
          // The previous document (before v2) keeps AWSPREVIOUS: what `rollback` and the console see.
          expect(JSON.parse(server.valueAt(AWS_SECRET, 'AWSPREVIOUS')!).keys).toHaveProperty('v1');
          expect(JSON.parse(server.valueAt(AWS_SECRET, 'AWSPREVIOUS')!).keys).not.toHaveProperty('v2');
        }

        await run('dual-key');
        expect(h.published()).toEqual({ primary: 'v2', keys: ['v1', 'v2'] });
        history(true);
        const re = json(await run('reencrypt', '--batch-size', '50', '--json'));
        expect(re).toMatchObject({ remaining: 0, rotation: { phase: 'reencrypted' } });
        expect(json(await run('verify', '--json'))).toMatchObject({ passed: true, byVersion: { v2: ROWS * 3 } });
        history(false);

        await run('promote');
        expect(h.published()).toEqual({ primary: 'v2', keys: ['v2'] });
        expect(h.archive()).toEqual({ v1: 'archived' });
        history(true);

        await run('retire', '--force', '--reason', 'e2e');
        expect(h.published()).toEqual({ primary: 'v2', keys: ['v2'] });
        expect(h.archive()).toEqual({});
        history(false);
        if (h.provider === 'aws-secrets-manager') {
          const archived = (h as Awaited<ReturnType<typeof awsHarness>>).server.secrets.get(`${AWS_SECRET}/archive/v1`)!;
          expect(archived.deletedDate, 'destroyed key: deletion scheduled').toBeDefined();
          expect(archived.recoveryWindowDays).toBe(7);
          expect(archived.tags).toMatchObject({ 'keyctl:status': 'archived', 'keyctl:keyring': 'default' });
        } else {
          // The destroyed key cannot be read back from KV history either.
          const server = (h as Awaited<ReturnType<typeof vaultHarness>>).server;
          // init, generate and dual-key wrote versions 1–3 with v1; the archive's version 1 held it too.
          expect(
            server
              .versions('secret', VAULT_PATH)
              .filter((v) => v.destroyed)
              .map((v) => v.version),
          ).toEqual([1, 2, 3]);
          expect(
            server
              .versions('secret', `${VAULT_PATH}-archive`)
              .filter((v) => v.destroyed)
              .map((v) => v.version),
          ).toEqual([1]);
          for (const p of [VAULT_PATH, `${VAULT_PATH}-archive`]) {
            for (const v of server.versions('secret', p)) {
              const keys = (v.data?.keys ?? {}) as Record<string, unknown>;
              expect(v.destroyed || !('v1' in keys), `${p} version ${v.version} still holds v1`).toBe(true);
            }
          }
        }
        const status = json<{ primary: string; rotation: unknown }>(await run('status', '--json'));
        expect(status).toMatchObject({ primary: 'v2', rotation: null });

        // A second rotation, promoted and then rolled back: the archived key comes back.
        await run('generate');
        await run('dual-key');
        await run('reencrypt', '--batch-size', '50');
        await run('verify');
        await run('promote');
        expect(h.published()).toEqual({ primary: 'v3', keys: ['v3'] });
        expect(h.archive()).toEqual({ v2: 'archived' });
        writes += 3; // generate, dual-key, promote
        history(false);
        await run('rollback');
        expect(h.published()).toEqual({ primary: 'v2', keys: ['v2', 'v3'] });
        expect(h.archive()).toEqual({});
        history(true);
        await run('reencrypt', '--batch-size', '50');
        expect(json(await run('verify', '--json'))).toMatchObject({ passed: true, byVersion: { v2: ROWS * 3 }, rotation: { phase: 'rolled_back' } });
        const audit = json<{ entries: Array<{ action: string; outcome: string }> }>(await run('audit', '--format', 'json')).entries;
        expect(audit.filter((e) => e.outcome !== 'ok')).toEqual([]);
        expect(JSON.stringify(audit)).not.toMatch(/[A-Za-z0-9+/]{43}=/);
      });
    });
  }
}
