import { chmodSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { KeystoreError, KeystoreReadOnlyError } from '../../src/base/errors.js';
import { fingerprint, generateKey } from '../../src/crypto/keys.js';
import { EnvKeystore } from '../../src/keystore/env.js';
import { FileKeystore } from '../../src/keystore/file.js';
import { rememberReads } from '../../src/keystore/remembered.js';

function tmp(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'keyctl-ks-'));
}

async function failure<T extends Error>(p: Promise<unknown>, type: new (...a: never[]) => T): Promise<T> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(type);
    return err as T;
  }
  throw new Error('expected a failure');
}

describe('file keystore', () => {
  it('creates the keyring 0600 inside a 0700 directory and reads it back', async () => {
    const dir = tmp();
    const file = path.join(dir, '.keyctl', 'keyring.json');
    const ks = new FileKeystore(file);
    expect(await ks.read()).toBeNull();
    const key = generateKey();
    await ks.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const snap = await ks.read();
    expect(snap?.doc.primary).toBe('v1');
    expect(snap?.doc.keys.get('v1')?.equals(key)).toBe(true);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ keyring: 'default', primary: 'v1', keys: { v1: key.toString('base64') } });
    // No temp files are left behind.
    expect(readdirSync(path.dirname(file))).toEqual(['keyring.json']);
  });

  it('fails at once, naming the directory, for a keyring below /proc (a recursive mkdir there never returns)', async () => {
    const ks = new FileKeystore('/proc/keyctl-nope/deeper/keyring.json');
    const started = Date.now();
    const err = await failure(ks.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', generateKey()]]) }, null, 'create'), KeystoreError);
    expect(err.message).toContain('/proc/keyctl-nope/deeper');
    expect(Date.now() - started).toBeLessThan(5000);
  }, 15_000);

  it('refuses a group- or world-readable file and shows the chmod fix', async () => {
    const file = path.join(tmp(), 'keyring.json');
    const ks = new FileKeystore(file);
    await ks.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', generateKey()]]) }, null, 'create');
    for (const mode of [0o644, 0o640, 0o604]) {
      chmodSync(file, mode);
      const err = await failure(ks.read(), KeystoreError);
      expect(err.message).toContain(`mode 0${mode.toString(8)}`);
      expect(err.hint).toContain(`chmod 600 ${file}`);
    }
    chmodSync(file, 0o600);
    expect(await ks.read()).not.toBeNull();
  });

  it('refuses to overwrite a keyring changed since it was read (optimistic revision check)', async () => {
    const file = path.join(tmp(), 'keyring.json');
    const ks = new FileKeystore(file);
    const doc = { keyring: 'default', primary: 'v1', keys: new Map([['v1', generateKey()]]) };
    await ks.write(doc, null, 'create');
    const snap = (await ks.read())!;
    await ks.write({ ...doc, keys: new Map([...doc.keys, ['v2', generateKey()]]) }, snap.revision, 'add v2');
    await failure(ks.write(doc, snap.revision, 'stale'), KeystoreError);
    await failure(ks.write(doc, null, 'create again'), KeystoreError);
    expect((await ks.read())!.doc.keys.size).toBe(2);
  });

  it('rejects corrupt documents without quoting key material', async () => {
    const file = path.join(tmp(), 'keyring.json');
    const secret = Buffer.alloc(31, 7).toString('base64');
    for (const body of [
      'not json',
      '[]',
      '{"keyring":"default","primary":"v1","keys":{}}',
      JSON.stringify({ keyring: 'default', primary: 'v1', keys: { v1: secret } }),
      JSON.stringify({ keyring: 'default', primary: 'one', keys: {} }),
    ]) {
      writeFileSync(file, body, { mode: 0o600 });
      const err = await failure(new FileKeystore(file).read(), KeystoreError);
      expect(err.message).not.toContain(secret);
      expect(err.message).toContain(file);
    }
  });

  it('does not follow a symbolic link', async () => {
    const dir = tmp();
    const real = path.join(dir, 'real.json');
    writeFileSync(real, '{}', { mode: 0o600 });
    symlinkSync(real, path.join(dir, 'link.json'));
    await failure(new FileKeystore(path.join(dir, 'link.json')).read(), KeystoreError);
  });
});

describe('a keystore that remembers its reads (a pass over many tenants)', () => {
  it('reads each document once, writes through with the revision it read, and a change made meanwhile is refused, not overwritten', async () => {
    const file = path.join(tmp(), '.keyctl', 'keyring.json');
    const direct = new FileKeystore(file);
    const k1 = generateKey();
    await direct.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, null, 'create');
    const ks = rememberReads(new FileKeystore(file));
    const first = await ks.read();
    expect(await ks.read()).toBe(first);
    expect(await ks.readArchive('default')).toBe(await ks.readArchive('default'));
    // Another process adds a key: the remembered snapshot is older than the file …
    const k2 = generateKey();
    await direct.write(
      {
        keyring: 'default',
        primary: 'v1',
        keys: new Map([
          ['v1', k1],
          ['v2', k2],
        ]),
      },
      first!.revision,
      'other',
    );
    expect([...(await ks.read())!.doc.keys.keys()]).toEqual(['v1']);
    // … so a write from it fails the check-and-set and the other process's key stays.
    await failure(ks.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', k1]]) }, first!.revision, 'stale'), KeystoreError);
    expect([...(await direct.read())!.doc.keys.keys()]).toEqual(['v1', 'v2']);
    // A write (even a refused one) forgets what was read: the next read is the file's.
    expect([...(await ks.read())!.doc.keys.keys()]).toEqual(['v1', 'v2']);
  });
});

describe('env keystore', () => {
  const k1 = generateKey();
  const k2 = generateKey();

  it('reads KEYCTL_KEY_V<N> and KEYCTL_PRIMARY', async () => {
    const ks = new EnvKeystore({
      env: { KEYCTL_KEY_V1: k1.toString('base64'), KEYCTL_KEY_V2: k2.toString('base64'), KEYCTL_PRIMARY: 'v2' },
      prefix: 'KEYCTL_',
      keyring: 'default',
    });
    const snap = (await ks.read())!;
    expect(snap.doc.primary).toBe('v2');
    expect([...snap.doc.keys.keys()].sort()).toEqual(['v1', 'v2']);
    expect(snap.doc.keys.get('v1')?.equals(k1)).toBe(true);
    expect(snap.revision).not.toContain(k1.toString('base64'));
  });

  it('accepts a bare number as primary and defaults the primary when there is one key', async () => {
    expect(
      (await new EnvKeystore({
        env: { KEYCTL_KEY_V1: k1.toString('base64'), KEYCTL_KEY_V2: k2.toString('base64'), KEYCTL_PRIMARY: '1' },
        prefix: 'KEYCTL_',
        keyring: 'd',
      }).read())!.doc.primary,
    ).toBe('v1');
    expect((await new EnvKeystore({ env: { KEYCTL_KEY_V3: k1.toString('base64') }, prefix: 'KEYCTL_', keyring: 'd' }).read())!.doc.primary).toBe('v3');
    expect(await new EnvKeystore({ env: {}, prefix: 'KEYCTL_', keyring: 'd' }).read()).toBeNull();
  });

  it('names the variable of a bad key without printing it', async () => {
    const bad = Buffer.alloc(16, 9).toString('base64');
    const err = await failure(new EnvKeystore({ env: { KEYCTL_KEY_V1: bad }, prefix: 'KEYCTL_', keyring: 'd' }).read(), KeystoreError);
    expect(err.message).toContain('KEYCTL_KEY_V1');
    expect(err.message).toContain('decodes to 16 bytes');
    expect(err.message + err.hint).not.toContain(bad);
    const err2 = await failure(new EnvKeystore({ env: { KEYCTL_KEY_V1: 'not base64!' }, prefix: 'KEYCTL_', keyring: 'd' }).read(), KeystoreError);
    expect(err2.message).toContain('not standard base64');
  });

  it('explains a missing or dangling primary', async () => {
    const two = { KEYCTL_KEY_V1: k1.toString('base64'), KEYCTL_KEY_V2: k2.toString('base64') };
    expect((await failure(new EnvKeystore({ env: two, prefix: 'KEYCTL_', keyring: 'd' }).read(), KeystoreError)).hint).toContain('KEYCTL_PRIMARY=v2');
    expect(
      (await failure(new EnvKeystore({ env: { ...two, KEYCTL_PRIMARY: 'v5' }, prefix: 'KEYCTL_', keyring: 'd' }).read(), KeystoreError)).message,
    ).toContain('KEYCTL_KEY_V5 is not set');
  });

  it('is read-only: a write says which variables to set instead', async () => {
    const ks = new EnvKeystore({ env: { KEYCTL_KEY_V1: k1.toString('base64') }, prefix: 'KEYCTL_', keyring: 'd' });
    const err = await failure(
      ks.write(
        {
          keyring: 'd',
          primary: 'v2',
          keys: new Map([
            ['v1', k1],
            ['v2', k2],
          ]),
        },
        null,
        'add key v2',
      ),
      KeystoreReadOnlyError,
    );
    expect(err.message).toContain('read-only');
    expect(err.hint).toContain('KEYCTL_KEY_V2');
    expect(err.hint).toContain('KEYCTL_PRIMARY=v2');
    expect(err.message + err.hint).not.toContain(k2.toString('base64'));
  });
});

describe('fingerprint', () => {
  it('is 16 hex characters, stable, and differs between keys', () => {
    const k = Buffer.alloc(32, 1);
    expect(fingerprint(k)).toMatch(/^[0-9a-f]{16}$/);
    expect(fingerprint(k)).toBe(fingerprint(Buffer.alloc(32, 1)));
    expect(fingerprint(k)).not.toBe(fingerprint(Buffer.alloc(32, 2)));
  });
});

describe('the AWS audit anchor secret name', () => {
  it('is <secretId>/audit-anchor, and for an ARN the secret name without its random suffix', async () => {
    const { anchorSecretName } = await import('../../src/keystore/aws.js');
    expect(anchorSecretName('keyctl/payments')).toBe('keyctl/payments/audit-anchor');
    expect(anchorSecretName('arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyctl/payments-AbCdEf')).toBe('keyctl/payments/audit-anchor');
    expect(anchorSecretName('arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyctl/payments-AbCdEf')).not.toContain(':');
  });
});
