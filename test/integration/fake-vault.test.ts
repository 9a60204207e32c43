/**
 * Self-test of the Vault test server (test/fixtures/vault-server.ts), driven by the real node-vault
 * client the product uses, so the fixture's answers are the ones node-vault sees from Vault.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import nodeVault from 'node-vault';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeVault, type FakeVault } from '../fixtures/vault-server.js';

const CAS_MISMATCH = 'check-and-set parameter did not match the current version';

const started: FakeVault[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((v) => v.close()));
});

async function start(opts?: Parameters<typeof startFakeVault>[0]): Promise<FakeVault> {
  const fake = await startFakeVault(opts);
  started.push(fake);
  return fake;
}

function client(fake: FakeVault, token: string, extra: Partial<nodeVault.VaultOptions> = {}): nodeVault.client {
  return nodeVault({ apiVersion: 'v1', endpoint: fake.address, token, ...extra });
}

/** A Vault reply body as the tests read it. */
interface VaultBody {
  warnings: string[];
  data: { data: unknown; metadata: { version: number; destroyed: boolean; deletion_time: string } };
}

/** The status, message and body node-vault rejects with. */
async function failure(p: Promise<unknown>): Promise<{ status: number | undefined; message: string; body: VaultBody }> {
  try {
    await p;
  } catch (err) {
    const e = err as { message: string; response?: { statusCode: number; body: unknown } };
    return { status: e.response?.statusCode, message: e.message, body: e.response?.body as VaultBody };
  }
  throw new Error('expected the request to fail');
}

describe('fake Vault (KV v2) through node-vault', () => {
  it('creates with cas 0, reads back, and rejects a stale check-and-set', async () => {
    const fake = await start();
    const vault = client(fake, fake.rootToken);
    const created = await vault.write('secret/data/keyctl/k', { options: { cas: 0 }, data: { key: 'one' } });
    expect(created.data).toMatchObject({ version: 1, destroyed: false, deletion_time: '', custom_metadata: null });
    expect(Date.parse(created.data.created_time)).not.toBeNaN();

    const read = await vault.read('secret/data/keyctl/k');
    expect(read).toMatchObject({ lease_id: '', renewable: false, lease_duration: 0, wrap_info: null, warnings: null, auth: null });
    expect(read.data.data).toEqual({ key: 'one' });
    expect(read.data.metadata).toMatchObject({ version: 1, destroyed: false, deletion_time: '', custom_metadata: null });

    expect(await failure(vault.write('secret/data/keyctl/k', { options: { cas: 0 }, data: { key: 'two' } }))).toMatchObject({
      status: 400,
      message: CAS_MISMATCH,
      body: { errors: [CAS_MISMATCH] },
    });
    expect((await vault.write('secret/data/keyctl/k', { options: { cas: 1 }, data: { key: 'two' } })).data.version).toBe(2);
    expect((await vault.write('secret/data/keyctl/k', { data: { key: 'three' } })).data.version).toBe(3);
    expect(fake.current('secret', 'keyctl/k')).toEqual({ version: 3, data: { key: 'three' } });
    expect((await vault.read('secret/data/keyctl/k?version=2')).data.data).toEqual({ key: 'two' });

    expect(await failure(vault.read('secret/data/keyctl/missing'))).toEqual({ status: 404, message: 'Status 404', body: { errors: [] } });
    expect(await failure(vault.write('secret/data/keyctl/k', { options: { cas: 3 } }))).toMatchObject({ status: 400, message: 'no data provided' });
    expect(await failure(vault.read('nomount/data/x'))).toMatchObject({
      status: 404,
      message: 'no handler for route "nomount/data/x". route entry not found.',
    });
    const wrongPath = await failure(vault.read('secret/keyctl/k'));
    expect(wrongPath.status).toBe(404);
    expect(wrongPath.body.warnings[0]).toMatch(/^Invalid path for a versioned K\/V secrets engine/);
  });

  it('enforces tokens and policy capabilities, and answers lookup-self', async () => {
    const fake = await start();
    fake.addToken('reader', [{ path: 'secret/data/keyctl/*', capabilities: ['read'] }]);
    fake.addToken('creator', [{ path: 'secret/data/keyctl/*', capabilities: ['create', 'read'] }]);
    fake.addToken('writer', [
      { path: 'secret/data/keyctl/*', capabilities: ['create', 'read', 'update'] },
      { path: 'secret/data/keyctl/locked', capabilities: ['read'] }, // an exact rule beats the glob
    ]);
    const denied = { status: 403, message: 'permission denied', body: { errors: ['permission denied'] } };

    expect(await failure(client(fake, 'nope').read('secret/data/keyctl/a'))).toEqual(denied);
    expect(await failure(nodeVault({ endpoint: fake.address }).read('secret/data/keyctl/a'))).toEqual(denied);
    expect(await failure(client(fake, 'reader').write('secret/data/keyctl/a', { data: { x: 1 } }))).toEqual(denied);

    const creator = client(fake, 'creator');
    expect((await creator.write('secret/data/keyctl/a', { options: { cas: 0 }, data: { x: 1 } })).data.version).toBe(1);
    expect(await failure(creator.write('secret/data/keyctl/a', { options: { cas: 1 }, data: { x: 2 } }))).toEqual(denied);
    expect(await failure(creator.read('secret/data/other/a'))).toEqual(denied);

    const writer = client(fake, 'writer');
    expect((await writer.write('secret/data/keyctl/a', { options: { cas: 1 }, data: { x: 2 } })).data.version).toBe(2);
    expect(await failure(writer.write('secret/data/keyctl/locked', { data: { x: 1 } }))).toEqual(denied);
    expect(await failure(writer.read('secret/metadata/keyctl/a'))).toEqual(denied);

    const self = await client(fake, 'reader').tokenLookupSelf();
    expect(self.data).toMatchObject({ id: 'reader', policies: ['default', 'test-policy'], renewable: true });
    expect(self.data.ttl).toBeGreaterThan(0);
    expect((await client(fake, fake.rootToken).tokenLookupSelf()).data).toMatchObject({ policies: ['root'], ttl: 0 });

    fake.revokeToken('reader');
    expect(await failure(client(fake, 'reader').tokenLookupSelf())).toEqual(denied);
    expect(await failure(client(fake, 'reader').read('secret/data/keyctl/a'))).toEqual(denied);
    expect(fake.requests.some((r) => JSON.stringify(r).includes('reader'))).toBe(false);
  });

  it('keeps version metadata, soft-deletes, destroys and lists', async () => {
    const fake = await start();
    const vault = client(fake, fake.rootToken);
    for (const n of [1, 2, 3]) await vault.write('secret/data/keyctl/k', { data: { n } });
    await vault.write('secret/data/keyctl/sub/x', { data: { n: 0 } });

    const meta = (await vault.read('secret/metadata/keyctl/k')).data;
    expect(meta).toMatchObject({
      current_version: 3,
      oldest_version: 0,
      max_versions: 0,
      cas_required: false,
      delete_version_after: '0s',
      custom_metadata: null,
    });
    expect(Object.keys(meta.versions)).toEqual(['1', '2', '3']);
    expect(meta.versions['1']).toMatchObject({ deletion_time: '', destroyed: false });

    await expect(vault.write('secret/destroy/keyctl/k', { versions: [1] })).resolves.toBe('');
    const destroyed = await failure(vault.read('secret/data/keyctl/k?version=1'));
    expect(destroyed.status).toBe(404);
    expect(destroyed.body.data).toMatchObject({ data: null, metadata: { version: 1, destroyed: true } });
    expect(fake.versions('secret', 'keyctl/k').map((v) => [v.version, v.data, v.destroyed])).toEqual([
      [1, null, true],
      [2, { n: 2 }, false],
      [3, { n: 3 }, false],
    ]);

    await vault.write('secret/delete/keyctl/k', { versions: [2] });
    expect((await failure(vault.read('secret/data/keyctl/k?version=2'))).body.data.metadata.deletion_time).not.toBe('');
    await vault.write('secret/undelete/keyctl/k', { versions: [2] });
    expect((await vault.read('secret/data/keyctl/k?version=2')).data.data).toEqual({ n: 2 });

    await vault.delete('secret/data/keyctl/k'); // soft delete of the latest version
    expect((await failure(vault.read('secret/data/keyctl/k'))).status).toBe(404);
    expect(fake.current('secret', 'keyctl/k')).toEqual({ version: 3, data: null });
    expect(fake.versions('secret', 'keyctl/k')[2]?.data).toEqual({ n: 3 });

    expect((await vault.list('secret/metadata/keyctl')).data.keys).toEqual(['k', 'sub/']);
    const getList = client(fake, fake.rootToken, { noCustomHTTPVerbs: true });
    expect((await getList.list('secret/metadata/')).data.keys).toEqual(['keyctl/']);
    expect((await failure(vault.list('secret/metadata/nothing'))).status).toBe(404);
    expect(fake.requests.filter((r) => r.path === '/v1/secret/metadata/keyctl').map((r) => r.method)).toEqual(['LIST']);
  });

  it('prunes versions beyond maxVersions', async () => {
    const fake = await start({ maxVersions: 3 });
    const vault = client(fake, fake.rootToken);
    for (const n of [1, 2, 3, 4, 5]) await vault.write('secret/data/k', { options: { cas: n - 1 }, data: { n } });
    expect(fake.versions('secret', 'k').map((v) => v.version)).toEqual([3, 4, 5]);
    expect((await vault.read('secret/metadata/k')).data).toMatchObject({ current_version: 5, oldest_version: 3 });
    expect(await failure(vault.read('secret/data/k?version=2'))).toMatchObject({ status: 404, body: { errors: [] } });
    expect((await vault.read('secret/config')).data.max_versions).toBe(3);
  });

  it('keeps namespaces and mounts apart', async () => {
    const fake = await start({ mounts: ['secret', 'kv'] });
    const teamA = client(fake, fake.rootToken, { namespace: 'team-a' });
    const root = client(fake, fake.rootToken);
    await teamA.write('secret/data/k', { data: { ns: 'a' } });
    await root.write('kv/data/k', { data: { mount: 'kv' } });
    expect((await teamA.read('secret/data/k')).data.data).toEqual({ ns: 'a' });
    expect((await failure(root.read('secret/data/k'))).status).toBe(404);
    expect(fake.current('secret', 'k', 'team-a')).toEqual({ version: 1, data: { ns: 'a' } });
    expect(fake.current('secret', 'k')).toBeUndefined();
    expect(fake.current('kv', 'k')).toEqual({ version: 1, data: { mount: 'kv' } });
    expect(fake.requests[0]).toEqual({ method: 'POST', path: '/v1/secret/data/k', namespace: 'team-a' });
    expect(fake.requests[1]).toEqual({ method: 'POST', path: '/v1/kv/data/k' });
  });

  it('fails and hangs requests on demand', async () => {
    const fake = await start();
    const vault = client(fake, fake.rootToken, { requestOptions: { timeout: 300 } });
    fake.failNext(1, 503);
    expect(await failure(vault.read('secret/data/k'))).toMatchObject({ status: 503, message: 'Vault is sealed' });
    fake.failNext(2, 429, '/data/k');
    await vault.write('secret/data/other', { data: { a: 1 } });
    expect((await failure(vault.read('secret/data/k'))).status).toBe(429);
    expect((await failure(vault.write('secret/data/k', { data: { a: 1 } }))).message).toBe('request path "secret/data/k": rate limit quota exceeded');
    fake.failNext(1, 500);
    expect((await failure(vault.read('secret/data/other'))).message).toBe('internal error');

    fake.hangNext(1, '/data/other');
    expect((await failure(vault.read('secret/data/other'))).message).toMatch(/timeout/);
    expect((await vault.read('secret/data/other')).data.data).toEqual({ a: 1 });
  });

  it('holdWrites lets exactly one of two racing check-and-set writes win', async () => {
    const fake = await start();
    const vault = client(fake, fake.rootToken);
    await vault.write('secret/data/race', { data: { v: 'base' } });
    fake.holdWrites('/data/race', 2);
    const first = vault.write('secret/data/race', { options: { cas: 1 }, data: { v: 'a' } });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(fake.current('secret', 'race')?.version).toBe(1); // held until the second write arrives
    const second = vault.write('secret/data/race', { options: { cas: 1 }, data: { v: 'b' } });
    const results = await Promise.allSettled([first, second]);
    // Applied in arrival order: the first wins, the second finds version 2 already there.
    expect(results[0]).toMatchObject({ status: 'fulfilled', value: { data: { version: 2 } } });
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { message: CAS_MISMATCH, response: { statusCode: 400 } } });
    expect(fake.current('secret', 'race')).toEqual({ version: 2, data: { v: 'a' } });
    // Once released, later writes are not held.
    expect((await vault.write('secret/data/race', { data: { v: 'c' } })).data.version).toBe(3);
  });

  it('serves HTTPS with a self-signed certificate trusted through requestOptions.ca', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fake-vault-tls-'));
    try {
      const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-keyout',
          key,
          '-out',
          cert,
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-days',
          '1',
        ],
        { stdio: 'ignore' },
      );
      const fake = await start({ tls: { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') } });
      expect(fake.address).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const ca = readFileSync(cert, 'utf8');
      const vault = client(fake, fake.rootToken, { requestOptions: { ca } });
      await vault.write('secret/data/tls', { options: { cas: 0 }, data: { ok: true } });
      expect((await vault.read('secret/data/tls')).data.data).toEqual({ ok: true });
      const untrusted = await failure(client(fake, fake.rootToken).read('secret/data/tls'));
      expect(untrusted.status).toBeUndefined();
      expect(untrusted.message).toMatch(/self[- ]signed/i);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers sys/internal/ui/mounts/<mount> with the KV version, and serves a KV version 1 mount', async () => {
    const fake = await start();
    fake.enableMount('old-kv', { version: 1 });
    const vault = client(fake, fake.rootToken);
    expect((await vault.read('sys/internal/ui/mounts/secret')).data).toMatchObject({ path: 'secret/', type: 'kv', options: { version: '2' } });
    expect((await vault.read('sys/internal/ui/mounts/old-kv')).data).toMatchObject({ path: 'old-kv/', type: 'kv', options: null });
    // A KV v2 write on a v1 mount stores a plain secret at the literal path.
    await vault.write('old-kv/data/app', { options: { cas: 0 }, data: { a: 1 } });
    expect(fake.kvV1('old-kv').get('data/app')).toEqual({ options: { cas: 0 }, data: { a: 1 } });
    expect((await vault.read('old-kv/data/app')).data).toEqual({ options: { cas: 0 }, data: { a: 1 } });
    // A token with capabilities under a mount may ask about it; others are denied.
    fake.addToken('reader', [{ path: 'secret/data/app/*', capabilities: ['read'] }]);
    expect((await client(fake, 'reader').read('sys/internal/ui/mounts/secret')).data.type).toBe('kv');
    expect(await failure(client(fake, 'reader').read('sys/internal/ui/mounts/old-kv'))).toMatchObject({ status: 403 });
  });

  it('a KV v2 mount just enabled answers 400 "Upgrading …" until its upgrade window ends', async () => {
    const fake = await start();
    fake.enableMount('fresh', { version: 2, upgradeMs: 300 });
    const vault = client(fake, fake.rootToken);
    expect(await failure(vault.write('fresh/data/k', { options: { cas: 0 }, data: { a: 1 } }))).toMatchObject({
      status: 400,
      message: 'Upgrading from non-versioned to versioned data. This backend will be unavailable for a brief period and will resume service shortly.',
    });
    expect(await failure(vault.read('fresh/data/k'))).toMatchObject({ status: 400 });
    expect(fake.current('fresh', 'k')).toBeUndefined();
    await new Promise((r) => setTimeout(r, 350));
    expect((await vault.write('fresh/data/k', { options: { cas: 0 }, data: { a: 1 } })).data.version).toBe(1);
  });
});

describe('fake Vault (Transit) through node-vault', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('encrypts to a new key (created on first use), decrypts, and describes the key', async () => {
    const fake = await start();
    const vault = client(fake, fake.rootToken);
    const out = await vault.write('transit/encrypt/app', { plaintext: b64('hello') });
    expect(out.data.key_version).toBe(1);
    expect(out.data.ciphertext).toMatch(/^vault:v1:[A-Za-z0-9+/]+=*$/);
    // 12-byte nonce, the 5 bytes of ciphertext, a 16-byte tag.
    expect(Buffer.from(out.data.ciphertext.slice('vault:v1:'.length), 'base64')).toHaveLength(12 + 5 + 16);
    const again = await vault.write('transit/encrypt/app', { plaintext: b64('hello') });
    expect(again.data.ciphertext).not.toBe(out.data.ciphertext);
    const back = await vault.write('transit/decrypt/app', { ciphertext: out.data.ciphertext });
    expect(Buffer.from(back.data.plaintext, 'base64').toString()).toBe('hello');

    const key = await vault.read('transit/keys/app');
    expect(key.data).toMatchObject({ name: 'app', type: 'aes256-gcm96', derived: false, latest_version: 1, min_decryption_version: 1 });
    expect(Object.keys(key.data.keys)).toEqual(['1']);
    expect(JSON.stringify(key)).not.toMatch(/"key":/);
    expect(fake.transitKey('app')).toMatchObject({ latestVersion: 1, derived: false });
    expect(await failure(vault.read('transit/keys/nope'))).toMatchObject({ status: 404 });
    expect(await failure(vault.write('transit/decrypt/nope', { ciphertext: out.data.ciphertext }))).toMatchObject({
      status: 400,
      message: 'encryption key not found',
    });
  });

  it('rotates, rewraps an old ciphertext to the newest version, and refuses versions below min_decryption_version', async () => {
    const fake = await start();
    const vault = client(fake, fake.rootToken);
    await vault.write('transit/keys/kek', {});
    const v1 = (await vault.write('transit/encrypt/kek', { plaintext: b64('data key') })).data.ciphertext as string;
    const rotated = await vault.write('transit/keys/kek/rotate', {});
    expect(rotated.data.latest_version).toBe(2);
    expect((await vault.write('transit/encrypt/kek', { plaintext: b64('x') })).data.key_version).toBe(2);
    const v1Again = (await vault.write('transit/encrypt/kek', { plaintext: b64('x'), key_version: 1 })).data.ciphertext as string;
    expect(v1Again).toMatch(/^vault:v1:/);

    const rewrapped = await vault.write('transit/rewrap/kek', { ciphertext: v1 });
    expect(rewrapped.data).toMatchObject({ key_version: 2 });
    expect(rewrapped.data.ciphertext).toMatch(/^vault:v2:/);
    const plain = await vault.write('transit/decrypt/kek', { ciphertext: rewrapped.data.ciphertext });
    expect(Buffer.from(plain.data.plaintext, 'base64').toString()).toBe('data key');

    expect(await failure(vault.write('transit/keys/kek/config', { min_decryption_version: 3 }))).toMatchObject({
      status: 400,
      message: 'cannot set min decryption version of 3, latest key version is 2',
    });
    await vault.write('transit/keys/kek/config', { min_decryption_version: 2 });
    expect(fake.transitKey('kek')).toMatchObject({ latestVersion: 2, minDecryptionVersion: 2 });
    for (const path of ['transit/decrypt/kek', 'transit/rewrap/kek'])
      expect(await failure(vault.write(path, { ciphertext: v1 }))).toMatchObject({
        status: 400,
        message: 'ciphertext or signature version is disallowed by policy (too old)',
      });
    expect(await failure(vault.write('transit/encrypt/kek', { plaintext: b64('x'), key_version: 3 }))).toMatchObject({
      message: 'requested version for encryption is higher than the latest key version',
    });
    expect(await failure(vault.write('transit/keys/kek/config', { min_encryption_version: 1 }))).toMatchObject({
      message: 'cannot set min encryption/decryption values; min encryption version of 1 must be greater than or equal to min decryption version of 2',
    });
    expect(await failure(vault.delete('transit/keys/kek'))).toMatchObject({
      status: 400,
      message: 'error deleting policy kek: deletion is not allowed for this key',
    });
  });

  it('derived keys need the context they were used with', async () => {
    const fake = await start();
    const vault = client(fake, fake.rootToken);
    await vault.write('transit/keys/tenants', { derived: true });
    const ctxA = b64('keyring=default;version=v2;tenant=a');
    const ctxB = b64('keyring=default;version=v2;tenant=b');
    expect(await failure(vault.write('transit/encrypt/tenants', { plaintext: b64('k') }))).toMatchObject({
      status: 400,
      message: expect.stringMatching(/^missing 'context' for key derivation; the key was created using a derived key/),
    });
    const ct = (await vault.write('transit/encrypt/tenants', { plaintext: b64('k'), context: ctxA })).data.ciphertext as string;
    expect(Buffer.from((await vault.write('transit/decrypt/tenants', { ciphertext: ct, context: ctxA })).data.plaintext, 'base64').toString()).toBe('k');
    expect(await failure(vault.write('transit/decrypt/tenants', { ciphertext: ct, context: ctxB }))).toMatchObject({
      status: 400,
      message: 'cipher: message authentication failed',
    });
    expect(await failure(vault.write('transit/decrypt/tenants', { ciphertext: ct }))).toMatchObject({
      message: expect.stringMatching(/^missing 'context' for key derivation/),
    });
    await vault.write('transit/keys/tenants/rotate', {});
    const rewrapped = (await vault.write('transit/rewrap/tenants', { ciphertext: ct, context: ctxA })).data.ciphertext as string;
    expect(rewrapped).toMatch(/^vault:v2:/);
    expect(await failure(vault.write('transit/decrypt/tenants', { ciphertext: rewrapped, context: ctxB }))).toMatchObject({
      message: 'cipher: message authentication failed',
    });
    // An encrypt with a context to a key that does not exist yet creates a derived key.
    await vault.write('transit/encrypt/fresh', { plaintext: b64('k'), context: ctxA });
    expect(fake.transitKey('fresh')).toMatchObject({ derived: true });
    expect((await vault.read('transit/keys/fresh')).data).toMatchObject({ derived: true, kdf: 'hkdf_sha256' });
  });

  it('generates data keys, plaintext or wrapped only, that decrypt to the same bytes', async () => {
    const fake = await start();
    const vault = client(fake, fake.rootToken);
    expect(await failure(vault.write('transit/datakey/plaintext/kek', {}))).toMatchObject({ status: 400, message: 'encryption key not found' });
    await vault.write('transit/keys/kek', {});
    const dk = await vault.write('transit/datakey/plaintext/kek', {});
    expect(Buffer.from(dk.data.plaintext, 'base64')).toHaveLength(32);
    expect(dk.data).toMatchObject({ key_version: 1 });
    expect((await vault.write('transit/decrypt/kek', { ciphertext: dk.data.ciphertext })).data.plaintext).toBe(dk.data.plaintext);
    const wrapped = await vault.write('transit/datakey/wrapped/kek', { bits: 512 });
    expect(wrapped.data.plaintext).toBeUndefined();
    expect(Buffer.from((await vault.write('transit/decrypt/kek', { ciphertext: wrapped.data.ciphertext })).data.plaintext, 'base64')).toHaveLength(64);
    expect(await failure(vault.write('transit/datakey/wrapped/kek', { bits: 100 }))).toMatchObject({ message: 'invalid bit length' });
    expect(await failure(vault.write('transit/datakey/both/kek', {}))).toMatchObject({ message: "Invalid path, must be 'plaintext' or 'wrapped'" });
  });

  it('names what is wrong with a malformed ciphertext, and applies the ACL (create only where a key is made)', async () => {
    const fake = await start();
    const root = client(fake, fake.rootToken);
    const good = (await root.write('transit/encrypt/app', { plaintext: b64('x') })).data.ciphertext as string;
    const cases: Array<[string, string]> = [
      ['no-prefix', 'invalid ciphertext: no prefix'],
      ['vault:v1', 'invalid ciphertext: wrong number of fields'],
      ['vault:vX:abcd', 'invalid ciphertext: version number could not be decoded'],
      [good.replace('vault:v1:', 'vault:v9:'), 'invalid ciphertext: version is too new'],
      ['vault:v1:@@@@', 'invalid ciphertext: could not decode base64'],
      [`${good.slice(0, -8)}AAAAAAA=`, 'cipher: message authentication failed'],
    ];
    for (const [ciphertext, message] of cases)
      expect(await failure(root.write('transit/decrypt/app', { ciphertext })), ciphertext).toMatchObject({ status: 400, message });
    expect(await failure(root.write('transit/encrypt/app', { plaintext: 'not base64!' }))).toMatchObject({
      message: 'failed to base64-decode plaintext',
    });
    expect(await failure(root.write('transit/decrypt/app', { ciphertext: good, context: 'no!' }))).toMatchObject({
      message: 'illegal base64 data at input byte 2',
    });

    fake.addToken('app-token', [
      { path: 'transit/encrypt/*', capabilities: ['update'] },
      { path: 'transit/decrypt/app', capabilities: ['update'] },
    ]);
    const app = client(fake, 'app-token');
    expect((await app.write('transit/encrypt/app', { plaintext: b64('y') })).data.key_version).toBe(1);
    expect(await failure(app.write('transit/encrypt/other', { plaintext: b64('y') }))).toMatchObject({ status: 403 });
    expect(fake.transitKey('other')).toBeUndefined();
    expect(await failure(app.write('transit/rewrap/app', { ciphertext: good }))).toMatchObject({ status: 403 });
    expect(Buffer.from((await app.write('transit/decrypt/app', { ciphertext: good })).data.plaintext, 'base64').toString()).toBe('x');

    fake.failNext(1, 503, '/transit/decrypt/');
    expect(await failure(root.write('transit/decrypt/app', { ciphertext: good }))).toMatchObject({ status: 503, message: 'Vault is sealed' });
  });
});
