/**
 * What an operator sees when the key service behind an envelope keystore misbehaves: throttling
 * (retried with backoff, each retry logged), access denied, a blob under the wrong encryption
 * context, a KEK disabled or pending deletion (a `status --check` problem and a metric of its
 * own), and a service that cannot be reached.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DisableKeyCommand, EnableKeyCommand, ScheduleKeyDeletionCommand } from '@aws-sdk/client-kms';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, keyctl, type RunResult } from '../helpers/cli.js';
import { perTestDatabase } from '../helpers/databases.js';
import { type EnvelopeHarness, kmsHarness, TRANSIT_KEY, transitHarness, WRAPPED_FILE } from '../helpers/envelope.js';
import { writeConfig } from '../helpers/keystores.js';

const harnesses = { 'aws-kms': kmsHarness, 'vault-transit': transitHarness } as const;

/** Swap the blobs of v1 and v2: each is now under the other's encryption context. */
function swapBlobs(dir: string): () => void {
  const file = path.join(dir, WRAPPED_FILE);
  const text = readFileSync(file, 'utf8');
  const doc = JSON.parse(text) as { keys: Record<string, { blob: string }> };
  [doc.keys.v1!.blob, doc.keys.v2!.blob] = [doc.keys.v2!.blob, doc.keys.v1!.blob];
  writeFileSync(file, JSON.stringify(doc, null, 2), { mode: 0o600 });
  return () => writeFileSync(file, text, { mode: 0o600 });
}

for (const provider of ['aws-kms', 'vault-transit'] as const) {
  describe(`${provider} failures`, () => {
    const t = perTestDatabase('sqlite');
    let h: EnvelopeHarness | undefined;
    afterEach(async () => {
      await h?.close().catch(() => undefined);
      h = undefined;
    });

    it('throttling is retried and logged; denied, wrong context, unusable KEK and unreachable service name the problem and the fix', async () => {
      h = await harnesses[provider]();
      const dir = t.db.dir;
      writeConfig(dir, t.db, h);
      const env = { ...h.env, KEYCTL_ACTOR: 'e2e@test' };
      const run = (...args: string[]): Promise<RunResult> => keyctl(args, { cwd: dir, env });
      expect((await run('init', '--existing-config', '--demo', '--rows', '20')).code).toBe(0);
      expect((await run('generate')).code).toBe(0);

      // Throttling: retried with backoff, each retry logged; the command succeeds.
      if (h.provider === 'aws-kms') h.kms!.failNext('*', 2, 'throttle');
      else h.vault.failNext(2, 429, '/transit/');
      const throttled = await run('status');
      expect(throttled.code, throttled.stderr).toBe(0);
      expect(throttled.stderr).toMatch(
        h.provider === 'aws-kms' ? /failed \(ThrottlingException\), retrying in \d+ ms/ : /failed \(HTTP 429\), retrying in \d+ ms/,
      );

      // status shows which KEK wraps each version, its state and the service's latency.
      const status = json<{ versions: Array<{ version: string; kek: string }>; keystore: { keks: Array<{ kek: string; state: string; latencyMs: number }> } }>(
        await run('status', '--json'),
      );
      expect(status.versions.map((v) => v.kek)).toEqual([h.currentKek(), h.currentKek()]);
      expect(status.keystore.keks).toMatchObject([{ kek: h.currentKek(), state: 'enabled', reachable: true, versions: ['v1', 'v2'] }]);
      expect(status.keystore.keks[0]!.latencyMs).toBeGreaterThanOrEqual(0);
      const metrics = (await run('metrics', '--no-counts')).stdout;
      expect(metrics).toMatch(new RegExp(`keyctl_kek_usable\\{keyring="default",kek="${h.currentKek()}",state="enabled"\\} 1`));
      expect(metrics).toMatch(/keyctl_kek_probe_duration_seconds\{[^}]*\} \d/);

      // Access denied.
      let limited: RunResult;
      if (h.provider === 'aws-kms') {
        h.kms!.deny('Decrypt');
        limited = await run('status');
        h.kms!.allow('Decrypt');
        expect(limited.stderr).toMatch(/AccessDeniedException: AWS denied kms:Decrypt on arn:aws:kms:\S+ \(v1 of keyring default\)/);
        expect(limited.stderr).toContain('allow "kms:Decrypt"');
      } else {
        h.vault.addToken('read-only-token', [{ path: `transit/keys/${TRANSIT_KEY}`, capabilities: ['read'] }]);
        limited = await keyctl(['status'], { cwd: dir, env: { ...env, VAULT_TOKEN: 'read-only-token' } });
        expect(limited.stderr).toMatch(
          new RegExp(`Vault denied decrypt with transit/${TRANSIT_KEY} \\(v1 of keyring default\\).*lack "update" on transit/decrypt/${TRANSIT_KEY}`),
        );
      }
      expect(limited.code).toBe(ExitCode.KEYSTORE);

      // A blob under another version's encryption context does not unwrap.
      const restore = swapBlobs(dir);
      const swapped = await run('status');
      restore();
      expect(swapped.code).toBe(ExitCode.KEYSTORE);
      expect(swapped.stderr).toMatch(
        h.provider === 'aws-kms'
          ? /InvalidCiphertextException: KMS cannot decrypt the wrapped key \(v1 of keyring default\) under its encryption context/
          : /Vault Transit cannot decrypt the wrapped key: decrypt with transit\/\S+ \(v1 of keyring default\): cipher: message authentication failed/,
      );
      expect(swapped.stderr).toMatch(/moved from another keyring, version or tenant/);
      expect((await run('status')).code).toBe(0);
      if (h.provider === 'aws-kms') {
        // The file cannot choose the KMS key its blob is decrypted with: one outside the account is refused unsent.
        const file = path.join(dir, WRAPPED_FILE);
        const text = readFileSync(file, 'utf8');
        const doc = JSON.parse(text) as { keys: Record<string, { kek: string }> };
        doc.keys.v1!.kek = 'arn:aws:kms:eu-west-1:999999999999:key/planted';
        writeFileSync(file, JSON.stringify(doc), { mode: 0o600 });
        const calls = h.kms!.calls.length;
        const planted = await run('status');
        writeFileSync(file, text, { mode: 0o600 });
        expect(planted.code).toBe(ExitCode.KEYSTORE);
        expect(planted.stderr).toMatch(
          /names arn:aws:kms:eu-west-1:999999999999:key\/planted as its KMS key, which is not a key of the account and region of keystore.keyId/,
        );
        expect(h.kms!.calls.slice(calls).filter((c) => c.op === 'Decrypt' && c.keyId?.includes('999999999999'))).toEqual([]);
      }

      // The KEK made unusable while it still wraps both versions.
      if (h.provider === 'aws-kms') await h.client.send(new DisableKeyCommand({ KeyId: h.currentKek() }));
      else {
        await h.rotateKek();
        await h.call('POST', `transit/keys/${TRANSIT_KEY}/config`, { min_decryption_version: 2 });
      }
      const plain = await run('status');
      expect(plain.code).toBe(ExitCode.KEYSTORE);
      expect(plain.stderr).toMatch(h.provider === 'aws-kms' ? /DisabledException: the KMS key \S+ is disabled/ : /below min_decryption_version/);
      const check = await run('status', '--check');
      expect(check.code, check.stderr).toBe(ExitCode.PROBLEMS_FOUND);
      expect(check.stderr).toMatch(/check failed \[kek-unusable\]: \S+ wraps v1, v2 but is disabled/);
      const checkJson = json<{ ok: boolean; problems: Array<{ code: string }> }>(await run('status', '--check', '--json'));
      expect(checkJson).toMatchObject({ ok: false, problems: [{ code: 'kek-unusable' }] });
      const down = (await run('metrics', '--no-counts')).stdout;
      expect(down).toMatch(/keyctl_keystore_up\{[^}]*\} 0/);
      expect(down).toMatch(/keyctl_kek_usable\{[^}]*state="disabled"\} 0/);

      if (h.provider === 'aws-kms') {
        await h.client.send(new EnableKeyCommand({ KeyId: h.currentKek() }));
        expect((await run('status', '--check')).code).not.toBe(ExitCode.KEYSTORE);
        await h.client.send(new ScheduleKeyDeletionCommand({ KeyId: h.currentKek(), PendingWindowInDays: 7 }));
        const pending = await run('status', '--check');
        expect(pending.code).toBe(ExitCode.PROBLEMS_FOUND);
        expect(pending.stderr).toMatch(/\[kek-unusable\]: \S+ wraps v1, v2 but is pending-deletion/);
        expect(pending.stderr).toMatch(/cancel the deletion now/);
      }

      // The service is gone.
      await h.close();
      const gone = await run('status');
      expect(gone.code).toBe(ExitCode.KEYSTORE);
      expect(gone.stderr).toMatch(/cannot reach (AWS KMS|Vault) at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED \(tried 4 times\)/);
      h = undefined;
    });
  });
}
