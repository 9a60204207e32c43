/**
 * Backups of an envelope keystore (aws-kms, vault-transit): every backup holds the wrapped blobs
 * as stored; with `backup.unwrappedKeys: false` it holds nothing else, and `recover-test` and
 * `restore` unwrap them through the key service. gpg opens the files, as for any backup.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { json } from '../helpers/cli.js';
import { perTestDatabase } from '../helpers/databases.js';
import { type EnvelopeHarness, kmsHarness, succeeding, transitHarness, wrappedFile } from '../helpers/envelope.js';
import { GpgHome } from '../helpers/gpg.js';
import { writeConfig } from '../helpers/keystores.js';

const harnesses = { 'aws-kms': kmsHarness, 'vault-transit': transitHarness } as const;
let home: GpgHome;
let pub = '';
let sec = '';

beforeAll(() => {
  home = new GpgHome();
  home.run(['--passphrase', '', '--quick-gen-key', 'backup@example.com', 'future-default', 'default', 'never']);
  const out = mkdtempSync(path.join(os.tmpdir(), 'keyctl-envbk-'));
  pub = path.join(out, 'backup.pub.asc');
  sec = path.join(out, 'backup.sec.asc');
  writeFileSync(pub, home.run(['--armor', '--export', 'backup@example.com']));
  writeFileSync(sec, home.run(['--armor', '--passphrase', '', '--export-secret-keys', 'backup@example.com']));
}, 60_000);
afterAll(() => home.close());

interface BackupJson {
  formatVersion: number;
  keys: Array<{ version: string; key?: string; wrapped?: { kek: string; blob: string } }>;
}

for (const provider of ['aws-kms', 'vault-transit'] as const) {
  describe(`${provider} backups`, () => {
    const t = perTestDatabase('sqlite');
    let h: EnvelopeHarness | undefined;
    afterEach(async () => {
      await h?.close();
      h = undefined;
    });

    it('hold the wrapped blobs; with unwrappedKeys: false only them, and recover-test and restore unwrap through the key service', async () => {
      h = await harnesses[provider]();
      const dir = t.db.dir;
      const backup = (unwrapped: boolean) => `backup:\n  recipients: [${JSON.stringify(pub)}]\n  unwrappedKeys: ${unwrapped}\n`;
      writeConfig(dir, t.db, h, backup(true));
      const run = succeeding(dir, h.env);
      await run('init', '--existing-config', '--demo', '--rows', '30');
      await run('generate');
      const stored = wrappedFile(dir)!.keys;
      const open = (file: string) => JSON.parse(home.run(['--decrypt', file])) as BackupJson;

      const both = open(json<{ file: string }>(await run('backup', '--json')).file);
      expect(both.formatVersion).toBe(1);
      expect(both.keys.map((k) => [k.version, typeof k.key, k.wrapped])).toEqual([
        ['v1', 'string', { kek: stored.v1!.kek, blob: stored.v1!.blob }],
        ['v2', 'string', { kek: stored.v2!.kek, blob: stored.v2!.blob }],
      ]);

      writeConfig(dir, t.db, h, backup(false));
      const file = json<{ file: string }>(await run('backup', '--json')).file;
      const only = open(file);
      expect(only.formatVersion).toBe(2);
      expect(only.keys.map((k) => [k.version, k.key, k.wrapped?.blob])).toEqual([
        ['v1', undefined, stored.v1!.blob],
        ['v2', undefined, stored.v2!.blob],
      ]);
      expect((await run('recover-test', '--identity', sec, '--backup', file)).stdout).toMatch(/recover-test passed/);

      // The wrapped keyring is lost; restore brings back the same keys.
      for (const f of readdirSync(path.join(dir, '.keyctl'))) if (f.startsWith('keyring.wrapped')) rmSync(path.join(dir, '.keyctl', f));
      expect(wrappedFile(dir)).toBeNull();
      await run('restore', '--backup', file, '--identity', sec, '--yes');
      const back = wrappedFile(dir)!;
      expect(back.primary).toBe('v1');
      // Wrapped again under the configured KEK (the backed-up blobs were unwrapped to check them).
      expect(Object.values(back.keys).map((e) => e.kek)).toEqual([h.currentKek(), h.currentKek()]);
      expect(json(await run('status', '--json'))).toMatchObject({
        primary: 'v1',
        versions: [
          { version: 'v1', inKeystore: true },
          { version: 'v2', inKeystore: true },
        ],
      });

      // A blobs-only backup made before a KEK rotation: restoring a lost archive from it wraps
      // under the KEK of today, never puts back a blob of the old KEK that rewrap reported unused.
      for (const step of ['dual-key', 'reencrypt', 'verify', 'promote']) await run(step);
      const before = json<{ file: string }>(await run('backup', '--json')).file;
      const newKek = await h.rotateKek();
      expect(json<{ unusedKeks: string[] }>(await run('rewrap', '--json')).unusedKeks).toHaveLength(1);
      rmSync(path.join(dir, '.keyctl', 'keyring.wrapped.archive.json'));
      await run('restore', '--backup', before, '--identity', sec, '--yes');
      expect(wrappedFile(dir, 'archive')!.keys.v1!.kek).toBe(newKek);
      expect(wrappedFile(dir)!.keys.v2!.kek).toBe(newKek);
    });
  });
}
