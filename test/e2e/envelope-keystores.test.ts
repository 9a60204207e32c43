/**
 * Whole rotations with the data keys wrapped by AWS KMS or Vault Transit (keystore providers
 * aws-kms and vault-transit): only wrapped blobs are stored, an application unwraps them with the
 * exact encryption context, and `keyctl rewrap` moves every blob to a new key-encryption key —
 * interrupted by kill -9 and resumed — without touching a data row.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fingerprint } from '../../src/crypto/keys.js';
import { json, KEYCTL_BIN, keyctl } from '../helpers/cli.js';
import { dialectAvailable, knexForProject, perTestDatabase } from '../helpers/databases.js';
import {
  archived,
  type EnvelopeHarness,
  kmsHarness,
  kmsHarnessAt,
  published,
  succeeding,
  transitHarness,
  WRAPPED_FILE,
  wrappedFile,
} from '../helpers/envelope.js';
import { motoEnabled, motoNotice, startMoto } from '../helpers/moto.js';
import { CreateKeyCommand, DecryptCommand, DisableKeyCommand } from '@aws-sdk/client-kms';
import { writeConfig } from '../helpers/keystores.js';

const ROWS = 120;
const harnesses = { 'aws-kms': kmsHarness, 'vault-transit': transitHarness } as const;

interface StatusJson {
  primary: string;
  versions: Array<{ version: string; fingerprint: string; kek?: string | null }>;
}

/** Every encrypted value of the demo table, to show rewrap changes none. */
async function tableDigest(dir: string, dialect: string, connection: string): Promise<string> {
  const k = knexForProject(dialect, dir, connection);
  try {
    const rows = (await k('customers').select('id', 'email', 'phone', 'notes').orderBy('id')) as Array<Record<string, unknown>>;
    return JSON.stringify(rows);
  } finally {
    await k.destroy();
  }
}

for (const provider of ['aws-kms', 'vault-transit'] as const) {
  for (const dialect of ['sqlite', 'pg'] as const) {
    describe.runIf(dialectAvailable(dialect))(`${provider} keystore on ${dialect}`, () => {
      const t = perTestDatabase(dialect);
      let h: EnvelopeHarness | undefined;
      afterEach(async () => {
        await h?.close();
        h = undefined;
      });

      it('rotates with only wrapped keys stored, then rewraps under a new KEK, killed midway and resumed, touching no data row', async () => {
        h = await harnesses[provider]();
        const dir = t.db.dir;
        writeConfig(dir, t.db, h, '  retiredKeyRetentionDays: 0\n');
        const run = succeeding(dir, h.env);
        const status = async () => json<StatusJson>(await run('status', '--json'));

        await run('init', '--existing-config', '--demo', '--rows', String(ROWS));
        expect(published(dir)).toEqual({ primary: 'v1', keys: ['v1'] });
        expect(wrappedFile(dir)!.keys.v1!.kek).toBe(h.currentKek());
        // An application unwraps v1 with the documented context and gets the key keyctl registered.
        const v1 = await h.unwrapAsApplication(dir, 'v1');
        expect(fingerprint(v1)).toBe((await status()).versions.find((v) => v.version === 'v1')!.fingerprint);
        // The key itself is stored nowhere keyctl writes.
        const stored = readFileSync(path.join(dir, WRAPPED_FILE), 'utf8');
        expect(stored).not.toContain(v1.toString('base64'));
        expect(stored).not.toContain(v1.toString('hex'));
        if (h.provider === 'aws-kms') expect(h.kms!.calls.map((c) => c.op)).toContain('GenerateDataKey');

        await run('generate');
        expect(published(dir)).toEqual({ primary: 'v1', keys: ['v1', 'v2'] });
        expect(wrappedFile(dir)!.keys.v1!.blob, 'an unchanged key keeps its blob').toBe(JSON.parse(stored).keys.v1.blob);
        await run('dual-key');
        expect(json(await run('reencrypt', '--batch-size', '50', '--json'))).toMatchObject({ remaining: 0 });
        expect(json(await run('verify', '--json'))).toMatchObject({ passed: true, byVersion: { v2: ROWS * 3 } });
        await run('promote');
        expect(published(dir)).toEqual({ primary: 'v2', keys: ['v2'] });
        expect(archived(dir)).toEqual({ v1: 'archived' });
        const retired = await run('retire', '--force', '--reason', 'e2e');
        expect(retired.stdout).toMatch(/wrapped blob is gone from .*a copy of an older file .* still unwraps/s);
        expect(archived(dir)).toEqual({});
        expect(JSON.stringify(wrappedFile(dir))).not.toContain('"v1"');

        // A second rotation left at dual-key: two published data keys to rewrap.
        await run('generate');
        await run('dual-key');
        const oldKek = h.currentKek();
        const newKek = await h.rotateKek();
        expect(newKek).not.toBe(oldKek);
        const before = await tableDigest(dir, t.db.config.client, t.db.connection);

        const dry = json<{ entries: Array<{ version: string; state: string }> }>(await run('rewrap', '--dry-run', '--json'));
        expect(dry.entries.map((e) => [e.version, e.state])).toEqual([
          ['v2', 'would-rewrap'],
          ['v3', 'would-rewrap'],
        ]);
        expect(Object.values(wrappedFile(dir)!.keys).map((e) => e.kek)).toEqual([oldKek, oldKek]);

        // kill -9 while the service holds the second rewrap: v2 is done, v3 is not.
        if (h.provider === 'aws-kms') h.kms!.failNext('ReEncrypt', 1, 'hang', 1);
        else h.vault.hangNext(1, '/transit/rewrap/', 1);
        const child = spawn(process.execPath, [KEYCTL_BIN, 'rewrap'], { cwd: dir, env: { ...process.env, ...h.env }, stdio: 'ignore' });
        const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
        for (let i = 0; i < 400 && wrappedFile(dir)!.keys.v2!.kek !== newKek; i++) await new Promise((r) => setTimeout(r, 25));
        await new Promise((r) => setTimeout(r, 200));
        child.kill('SIGKILL');
        await exited;
        const halfway = wrappedFile(dir)!.keys;
        expect([halfway.v2!.kek, halfway.v3!.kek]).toEqual([newKek, oldKek]);

        const resumed = json<{ entries: Array<{ version: string; state: string }>; unusedKeks: string[]; keksInUse: string[] }>(await run('rewrap', '--json'));
        expect(resumed.entries.map((e) => [e.version, e.state])).toEqual([
          ['v2', 'current'],
          ['v3', 'rewrapped'],
        ]);
        expect(resumed.unusedKeks).toEqual([oldKek]);
        expect(resumed.keksInUse).toEqual([newKek]);
        expect(Object.values(wrappedFile(dir)!.keys).map((e) => e.kek)).toEqual([newKek, newKek]);
        expect(await tableDigest(dir, t.db.config.client, t.db.connection), 'rewrap touches no data row').toBe(before);
        // The rewrapped blobs still give the registered keys, to keyctl and to an application.
        const s = await status();
        for (const v of ['v2', 'v3']) expect(fingerprint(await h.unwrapAsApplication(dir, v))).toBe(s.versions.find((x) => x.version === v)!.fingerprint);
        expect(json(await run('rewrap', '--json'))).toMatchObject({ entries: [{ state: 'current' }, { state: 'current' }], unusedKeks: [] });

        await run('reencrypt', '--batch-size', '50');
        expect(json(await run('verify', '--json'))).toMatchObject({ passed: true, byVersion: { v3: ROWS * 3 } });
        const audit = json<{ entries: Array<{ action: string; outcome: string; details?: { version?: string } }> }>(
          await run('audit', '--all', '--format', 'json'),
        ).entries;
        expect(audit.filter((e) => e.action === 'rewrap').map((e) => [e.outcome, e.details?.version])).toEqual([
          ['ok', 'v2'],
          ['ok', 'v3'],
        ]);
        expect(JSON.stringify(audit)).not.toMatch(/[A-Za-z0-9+/]{43}=/);
      });
    });
  }
}

motoNotice('the aws-kms keystore check against a second KMS');

describe.runIf(motoEnabled)('aws-kms keystore against moto (python3 -m moto.server), a second KMS implementation', () => {
  const t = perTestDatabase('sqlite');
  let h: EnvelopeHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('generates, rotates the KEK and rewraps, and reports a disabled KEK, as against the local KMS', { timeout: 120_000 }, async () => {
    const moto = await startMoto();
    h = await kmsHarnessAt(moto.endpoint, '', undefined, async () => moto.stop());
    const dir = t.db.dir;
    writeConfig(dir, t.db, h);
    const run = succeeding(dir, h.env);
    await run('init', '--existing-config', '--demo', '--rows', '30');
    await run('generate');
    const oldKek = h.currentKek();
    expect(Object.values(wrappedFile(dir)!.keys).map((e) => e.kek)).toEqual([oldKek, oldKek]);
    const newKek = await h.rotateKek();
    const r = json<{ entries: Array<{ state: string }>; unusedKeks: string[] }>(await run('rewrap', '--json'));
    expect(r.entries.map((e) => e.state)).toEqual(['rewrapped', 'rewrapped']);
    expect(r.unusedKeks).toEqual([oldKek]);
    const s = json<StatusJson>(await run('status', '--json'));
    expect(s.versions.map((v) => v.kek)).toEqual([newKek, newKek]);
    for (const v of ['v1', 'v2']) expect(fingerprint(await h.unwrapAsApplication(dir, v))).toBe(s.versions.find((x) => x.version === v)!.fingerprint);
    if (h.provider !== 'aws-kms') throw new Error('unreachable');
    // moto's DisableKey takes a key id, not an ARN.
    await h.client.send(new DisableKeyCommand({ KeyId: newKek.split('/').pop() }));
    const check = await keyctl(['status', '--check'], { cwd: dir, env: h.env });
    expect(check.code, check.stderr).toBe(4);
    expect(check.stderr).toMatch(/\[kek-unusable\]: \S+ wraps v1, v2 but is disabled/);
  });
});

describe('tenants in an aws-kms keystore', () => {
  const t = perTestDatabase('sqlite');
  let h: EnvelopeHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("wraps each tenant's data keys under its own context, in its own file, and rewraps every tenant", { timeout: 120_000 }, async () => {
    h = await kmsHarness();
    const dir = t.db.dir;
    writeFileSync(
      path.join(dir, 'keyctl.yaml'),
      `database:\n  client: sqlite\n  connection: ${JSON.stringify(t.db.connection)}\n${h.yaml}keyring: default\n` +
        'tenancy:\n  column: tenant_id\n  keyring: "tenant-{tenant}"\n' +
        'targets:\n  - table: customers\n    primaryKey: id\n    columns: [email, phone, notes]\npolicy:\n  minPropagationSeconds: 0\n',
    );
    const run = succeeding(dir, h.env);
    await run('init', '--existing-config', '--demo', '--tenants', '2', '--rows', '40');
    const tenantFile = (tenant: string) => JSON.parse(readFileSync(path.join(dir, '.keyctl', 'tenants', `tenant-${tenant}.json`), 'utf8'));
    const t1 = tenantFile('t001');
    expect(t1).toMatchObject({ format: 'keyctl-envelope/1', keyring: 'tenant-t001', primary: 'v1' });
    // The tenant is in the context: a Decrypt without it, or with the other tenant's, fails.
    if (h.provider !== 'aws-kms') throw new Error('unreachable');
    const decrypt = (ctx: Record<string, string>) =>
      h!.provider === 'aws-kms'
        ? h!.client.send(new DecryptCommand({ KeyId: t1.keys.v1.kek, CiphertextBlob: Buffer.from(t1.keys.v1.blob, 'base64'), EncryptionContext: ctx }))
        : Promise.reject(new Error('unreachable'));
    const base = { 'keyctl:keyring': 'tenant-t001', 'keyctl:version': 'v1' };
    await expect(decrypt(base)).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    await expect(decrypt({ ...base, 'keyctl:tenant': 't002' })).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    expect((await decrypt({ ...base, 'keyctl:tenant': 't001' })).Plaintext).toHaveLength(32);

    const newKek = await h.rotateKek();
    const all = json<{ tenants: Array<{ tenant: string; exitCode: number; result: { entries: Array<{ state: string }> } }> }>(
      await run('rewrap', '--all-tenants', '--json'),
    );
    expect(all.tenants.map((x) => [x.tenant, x.exitCode, x.result.entries.map((e) => e.state)])).toEqual([
      ['t001', 0, ['rewrapped']],
      ['t002', 0, ['rewrapped']],
    ]);
    for (const tenant of ['t001', 't002']) expect(tenantFile(tenant).keys.v1.kek).toBe(newKek);
    await run('verify', '--all-tenants');
  });
});

/** The wrapped keys as `storage: database` keeps them: keyctl_wrapped_keys rows of one document. */
async function storedRows(dir: string, dialect: string, connection: string, place = 'published'): Promise<Record<string, { kek: string; blob: string }>> {
  const k = knexForProject(dialect, dir, connection);
  try {
    const rows = (await k('keyctl_wrapped_keys').where({ keyring: 'default', place }).orderBy('version')) as Array<{
      version: string;
      kek: string;
      blob: string;
    }>;
    return Object.fromEntries(rows.map((r) => [r.version, { kek: r.kek, blob: r.blob }]));
  } finally {
    await k.destroy();
  }
}

for (const dialect of ['sqlite', 'pg'] as const) {
  describe.runIf(dialectAvailable(dialect))(`aws-kms keystore with storage: database on ${dialect}`, () => {
    const t = perTestDatabase(dialect);
    let h: EnvelopeHarness | undefined;
    afterEach(async () => {
      await h?.close();
      h = undefined;
    });

    it('keeps only wrapped blobs in keyctl_wrapped_keys through a rotation and a rewrap killed midway', async () => {
      h = await kmsHarness('  storage: database\n');
      const dir = t.db.dir;
      writeConfig(dir, t.db, h, '  retiredKeyRetentionDays: 0\n');
      const run = succeeding(dir, h.env);
      const rows = (place?: string) => storedRows(dir, t.db.config.client, t.db.connection, place);
      await run('init', '--existing-config', '--demo', '--rows', '60');
      expect(wrappedFile(dir), 'no wrapped keyring file').toBeNull();
      expect(Object.keys(await rows())).toEqual(['v1']);
      const v1 = await h.unwrapAsApplicationFrom((await rows()).v1!, 'v1');
      expect(JSON.stringify(await rows())).not.toContain(v1.toString('base64'));
      for (const step of ['generate', 'dual-key', 'reencrypt', 'verify', 'promote']) await run(step);
      expect(Object.keys(await rows())).toEqual(['v2']);
      expect(Object.keys(await rows('archive'))).toEqual(['v1']);
      expect((await run('retire', '--force', '--reason', 'e2e')).stdout).toMatch(/wrapped blob is gone from keyctl_wrapped_keys/);
      expect(await rows('archive')).toEqual({});
      await run('generate');

      const oldKek = h.currentKek();
      const newKek = await h.rotateKek();
      if (h.provider !== 'aws-kms') throw new Error('unreachable');
      h.kms!.failNext('ReEncrypt', 1, 'hang', 1);
      const child = spawn(process.execPath, [KEYCTL_BIN, 'rewrap'], { cwd: dir, env: { ...process.env, ...h.env }, stdio: 'ignore' });
      const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
      for (let i = 0; i < 400 && (await rows()).v2?.kek !== newKek; i++) await new Promise((r) => setTimeout(r, 25));
      await new Promise((r) => setTimeout(r, 200));
      child.kill('SIGKILL');
      await exited;
      expect(Object.values(await rows()).map((e) => e.kek)).toEqual([newKek, oldKek]);
      const resumed = json<{ entries: Array<{ version: string; state: string }> }>(await run('rewrap', '--json'));
      expect(resumed.entries.map((e) => [e.version, e.state])).toEqual([
        ['v2', 'current'],
        ['v3', 'rewrapped'],
      ]);
      expect(Object.values(await rows()).map((e) => e.kek)).toEqual([newKek, newKek]);
      const s = json<StatusJson>(await run('status', '--json'));
      expect(s.versions.filter((v) => v.kek).map((v) => v.kek)).toEqual([newKek, newKek]);
      const human = (await run('status')).stdout;
      expect(human).toContain(`KEK ${newKek} wraps v2, v3: enabled, answered in`);

      // --to another KMS key: every blob moves there; the alias's key is then unused.
      const third = (await h.client.send(new CreateKeyCommand({ Description: 'keyctl KEK 3' }))).KeyMetadata!;
      const to = json<{ entries: Array<{ state: string; to: string }>; unusedKeks: string[] }>(await run('rewrap', '--to', third.KeyId!, '--json'));
      expect(to.entries.map((e) => [e.state, e.to])).toEqual([
        ['rewrapped', third.Arn],
        ['rewrapped', third.Arn],
      ]);
      expect(to.unusedKeks).toEqual([newKek]);
      expect(Object.values(await rows()).map((e) => e.kek)).toEqual([third.Arn, third.Arn]);
      const after = json<StatusJson>(await run('status', '--json'));
      expect(after.versions.map((v) => v.fingerprint)).toEqual(s.versions.map((v) => v.fingerprint));
    });
  });
}

describe('keyctl rewrap on a keystore that does not wrap its keys', () => {
  const t = perTestDatabase('sqlite');
  it('is refused with what to use instead', async () => {
    const dir = t.db.dir;
    expect((await keyctl(['init', '--demo', '--rows', '5'], { cwd: dir })).code).toBe(0);
    const r = await keyctl(['rewrap'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/keystore provider file stores the keys themselves, not wrapped/);
    expect(r.stderr).toMatch(/use keystore provider aws-kms or vault-transit/);
  });
});
