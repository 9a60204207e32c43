/**
 * What an operator sees when AWS Secrets Manager or Vault misbehaves: the message, the keystore
 * exit code (5), retries in the log, no secret value anywhere in the output, and nothing
 * written half-way.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, keyctl, type RunResult } from '../helpers/cli.js';
import { AWS_ENV, AWS_SECRET, awsHarness, VAULT_PATH, vaultHarness, writeConfig, type KeystoreHarness } from '../helpers/keystores.js';

const open: Array<{ close(): Promise<void> }> = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function sqliteProject(h: KeystoreHarness, policy = ''): { dir: string; run: (args: string[], env?: NodeJS.ProcessEnv) => Promise<RunResult> } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-ksfail-'));
  dirs.push(dir);
  const file = path.join(dir, 'keyctl.db');
  writeConfig(dir, { config: { client: 'sqlite' }, connection: file }, h, policy);
  return { dir, run: (args, env) => keyctl(args, { cwd: dir, env: { ...h.env, ...env } }) };
}

/** Every base64 key the service holds, so outputs can be checked for leaks. */
function keysIn(values: Array<string | undefined>): string[] {
  return values.flatMap((v) => (v ? [...v.matchAll(/"([A-Za-z0-9+/]{43}=)"/g)].map((m) => m[1]!) : []));
}

function expectNoSecrets(r: RunResult, keys: string[]): void {
  for (const k of keys) {
    expect(r.stdout).not.toContain(k);
    expect(r.stderr).not.toContain(k);
  }
}

async function closedPort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe('AWS Secrets Manager failures', () => {
  async function ready(policy = '') {
    const h = await awsHarness();
    open.push(h);
    const p = sqliteProject(h, policy);
    const init = await p.run(['init', '--existing-config', '--demo', '--rows', '20']);
    expect(init.code, init.stderr).toBe(0);
    const allKeys = () => keysIn([...h.server.secrets.values()].flatMap((s) => [...s.versions.values()].map((v) => v.value)));
    return { h, ...p, allKeys };
  }

  it('unreachable endpoint: retried, then exit 5 naming the endpoint; nothing changes', async () => {
    const port = await closedPort();
    const h = await awsHarness();
    open.push(h);
    const p = sqliteProject({ ...h, yaml: h.yaml.replace(h.server.endpoint, `http://127.0.0.1:${port}`) });
    const r = await p.run(['init', '--existing-config']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain(`cannot reach AWS Secrets Manager at http://127.0.0.1:${port}: ECONNREFUSED (tried 4 times)`);
    expect(r.stderr).toMatch(/retrying in \d+ ms \(attempt 2 of 4\)/);
    expect(p.dir && h.server.secrets.size).toBe(0);
  });

  it('denied permission names the missing IAM action; a half-done write leaves AWSCURRENT untouched', async () => {
    const { h, run, allKeys } = await ready();
    const before = h.server.valueAt(AWS_SECRET);
    h.server.deny('UpdateSecretVersionStage');
    const r = await run(['generate', '--json']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(json<{ error: { message: string; hint: string } }>(r).error.message).toMatch(
      /AccessDeniedException: AWS denied secretsmanager:UpdateSecretVersionStage on keyctl\/test\/keyring to arn:aws:iam::\d+:user\/keyctl-test/,
    );
    expect(r.stdout).toContain('allow \\"secretsmanager:UpdateSecretVersionStage\\"');
    // The new document was staged (AWSPENDING) but never made current: readers still see the old one.
    expect(h.server.valueAt(AWS_SECRET)).toBe(before);
    expect(h.server.stagesOf(AWS_SECRET).AWSPENDING).toBeDefined();
    expectNoSecrets(r, allKeys());
  });

  it('missing secret and malformed keyring document: exit 5, with the fix, never the value', async () => {
    const { h, run } = await ready();
    const good = h.server.valueAt(AWS_SECRET)!;
    const leaked = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU2';
    h.server.secrets.delete(AWS_SECRET);
    h.server.seed(AWS_SECRET, JSON.stringify({ keyring: 'default', primary: 'v1', keys: { v1: leaked } }));
    let r = await run(['status']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toMatch(/AWS Secrets Manager secret keyctl\/test\/keyring \(eu-west-1\) \(version .+\): key v1 /);
    expect(r.stderr).toContain('update-secret-version-stage');
    expect(r.stderr).not.toContain(leaked);
    expectNoSecrets(r, keysIn([good]));

    h.server.secrets.delete(AWS_SECRET);
    h.server.seed(AWS_SECRET, 'not json {');
    r = await run(['status']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('is not valid JSON');

    h.server.secrets.delete(AWS_SECRET);
    r = await run(['status']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('AWS Secrets Manager secret keyctl/test/keyring (eu-west-1) holds no keys');
  });

  it('throttling and 5xx are retried with backoff and logged; persistent 5xx ends in exit 5', async () => {
    const { h, run, allKeys } = await ready();
    h.server.failNext('GetSecretValue', 2, 'throttle');
    let r = await run(['status']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/keystore: GetSecretValue keyctl\/test\/keyring failed \(ThrottlingException\), retrying in \d+ ms \(attempt 2 of 4\)/);

    h.server.failNext('*', 4, 'internal');
    r = await run(['status']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('InternalServiceError: AWS Secrets Manager did not complete GetSecretValue on keyctl/test/keyring after 4 tries');
    expectNoSecrets(r, allKeys());
  });

  it('a request that hangs times out after keystore.timeoutSeconds and is retried', { timeout: 30_000 }, async () => {
    const { h, run } = await ready();
    h.server.failNext('GetSecretValue', 1, 'hang');
    const started = Date.now();
    const r = await run(['status']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/GetSecretValue keyctl\/test\/keyring failed \((ETIMEDOUT|TimeoutError|RequestTimeout)\), retrying/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
  });

  it('no credentials: says where the SDK looked and never reads them from keyctl.yaml', async () => {
    const { run } = await ready();
    const env: NodeJS.ProcessEnv = {
      AWS_ACCESS_KEY_ID: '',
      AWS_SECRET_ACCESS_KEY: '',
      AWS_PROFILE: '',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/c',
      AWS_CONFIG_FILE: '/nonexistent/f',
      AWS_EC2_METADATA_DISABLED: 'true',
    };
    const r = await run(['status'], env);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('no AWS credentials found');
    expect(Object.keys(AWS_ENV)).toContain('AWS_ACCESS_KEY_ID');
  });
});

describe('Vault failures', () => {
  async function ready() {
    const h = await vaultHarness();
    open.push(h);
    const p = sqliteProject(h);
    const init = await p.run(['init', '--existing-config', '--demo', '--rows', '20']);
    expect(init.code, init.stderr).toBe(0);
    const allKeys = () => keysIn(h.server.versions('secret', VAULT_PATH).map((v) => JSON.stringify(v.data)));
    return { h, ...p, allKeys };
  }

  it('unreachable address: retried, then exit 5 naming the address', async () => {
    const port = await closedPort();
    const h = await vaultHarness();
    open.push(h);
    const p = sqliteProject({ ...h, yaml: h.yaml.replace(h.server.address, `http://127.0.0.1:${port}`) });
    const r = await p.run(['init', '--existing-config']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain(`cannot reach Vault at http://127.0.0.1:${port}: ECONNREFUSED (tried 4 times)`);
    expect(r.stderr).toMatch(/retrying in \d+ ms/);
  });

  it('a bad token and a policy without update are told apart; nothing is written', async () => {
    const { h, run, allKeys } = await ready();
    let r = await run(['status'], { VAULT_TOKEN: 'not-a-token' });
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('Vault rejected the token (403 permission denied on read secret/keyctl/test): it is invalid, expired or revoked');

    h.server.addToken('reader', [{ path: 'secret/data/keyctl/*', capabilities: ['read'] }]);
    expect((await run(['status'], { VAULT_TOKEN: 'reader' })).code).toBe(0);
    r = await run(['generate', '--json'], { VAULT_TOKEN: 'reader' });
    expect(r.code).toBe(ExitCode.KEYSTORE);
    const err = json<{ error: { message: string; hint: string } }>(r).error;
    expect(err.message).toBe(`Vault denied write secret/${VAULT_PATH}: the token's policies lack "create/update" on secret/data/${VAULT_PATH}`);
    expect(err.hint).toContain(`path "secret/data/${VAULT_PATH}" { capabilities = ["create", "update"] }`);
    expect(h.server.current('secret', VAULT_PATH)!.version).toBe(1);
    expectNoSecrets(r, allKeys());
  });

  it('missing path and malformed keyring document: exit 5, with the fix, never the value', async () => {
    const { h, run, dir } = await ready();
    const leaked = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU2';
    const res = await fetch(`${h.server.address}/v1/secret/data/${VAULT_PATH}`, {
      method: 'POST',
      headers: { 'X-Vault-Token': h.server.rootToken, 'Content-Type': 'application/json' },
      body: JSON.stringify({ data: { keyring: 'default', primary: 'v1', keys: { v1: leaked } } }),
    });
    expect(res.status).toBe(200);
    let r = await run(['status']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toMatch(/Vault KV secret secret\/keyctl\/test at http:\/\/127\.0\.0\.1:\d+ \(version 2\): key v1 /);
    expect(r.stderr).toContain('vault kv rollback -mount=secret -version=1 keyctl/test');
    expect(r.stderr).not.toContain(leaked);

    writeConfig(
      dir,
      { config: { client: 'sqlite' }, connection: path.join(dir, 'keyctl.db') },
      { ...h, yaml: h.yaml.replace(`path: ${VAULT_PATH}`, 'path: keyctl/elsewhere') },
    );
    r = await run(['status']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('Vault KV secret secret/keyctl/elsewhere');
    expect(r.stderr).toContain('holds no keys');
  });

  it('503 (sealed) and 429 are retried and logged; a persistent 500 ends in exit 5', async () => {
    const { h, run, allKeys } = await ready();
    h.server.failNext(1, 503);
    h.server.failNext(1, 429);
    let r = await run(['status']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/keystore: read secret\/keyctl\/test failed \(HTTP (503|429)\), retrying in \d+ ms \(attempt 2 of 4\)/);
    h.server.failNext(4, 500);
    r = await run(['status']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('Vault answered 500 (internal error) to read secret/keyctl/test 4 times');
    expectNoSecrets(r, allKeys());
  });

  it('a request that hangs times out after keystore.timeoutSeconds and is retried', { timeout: 30_000 }, async () => {
    const { h, run } = await ready();
    h.server.hangNext(1, `data/${VAULT_PATH}`);
    const r = await run(['status']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/read secret\/keyctl\/test failed \((ECONNABORTED|ETIMEDOUT)\), retrying/);
  });

  it('TLS: trusts a private CA only through caCert', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'keyctl-vault-tls-'));
    dirs.push(tmp);
    const [key, cert] = [path.join(tmp, 'key.pem'), path.join(tmp, 'cert.pem')];
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
    const { startFakeVault } = await import('../fixtures/vault-server.js');
    const server = await startFakeVault({ tls: { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') } });
    open.push(server);
    const yaml = `keystore:\n  provider: vault\n  address: ${server.address}\n  path: ${VAULT_PATH}\n`;
    const h: KeystoreHarness = {
      provider: 'vault',
      yaml,
      env: { VAULT_TOKEN: server.rootToken },
      published: () => null,
      archive: () => ({}),
      close: async () => undefined,
    };
    const p = sqliteProject(h);
    let r = await p.run(['init', '--existing-config']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain(`TLS: cannot verify Vault's certificate at ${server.address}`);
    expect(r.stderr).toContain('keystore.caCert');
    r = await p.run(['init', '--existing-config'], { VAULT_CACERT: cert });
    expect(r.code, r.stderr).toBe(0);
    expect(server.current('secret', VAULT_PATH)!.version).toBe(1);
  });
});

describe('two keyctl processes change the same Vault keyring at once', () => {
  it('check-and-set: one wins, the other fails cleanly (exit 5) and nothing is lost', async () => {
    const h = await vaultHarness();
    open.push(h);
    const a = sqliteProject(h);
    const b = sqliteProject(h);
    expect((await a.run(['init', '--existing-config', '--demo', '--rows', '20'])).code).toBe(0);
    expect((await b.run(['init', '--existing-config', '--demo', '--rows', '20'])).code).toBe(0);
    const v1 = (h.server.current('secret', VAULT_PATH)!.data!.keys as Record<string, string>).v1;
    // Both read version 1; the server holds the first write until the second arrives.
    h.server.holdWrites(`secret/data/${VAULT_PATH}`, 2);
    const [ra, rb] = await Promise.all([a.run(['generate', '--json']), b.run(['generate', '--json'])]);
    const results = [ra, rb];
    const winner = results.findIndex((r) => r.code === 0);
    expect(winner, `${ra.stderr}\n${rb.stderr}`).toBeGreaterThanOrEqual(0);
    const loser = results[1 - winner]!;
    expect(loser.code).toBe(ExitCode.KEYSTORE);
    expect(json<{ error: { message: string; hint: string } }>(loser).error).toMatchObject({
      message: `check-and-set failed on secret/${VAULT_PATH}: it is at version 2 now, keyctl read version 1 — someone else changed it meanwhile`,
      hint: expect.stringContaining('nothing was written'),
    });
    const now = h.server.current('secret', VAULT_PATH)!;
    expect(now.version).toBe(2);
    const keys = now.data!.keys as Record<string, string>;
    expect(keys.v1).toBe(v1);
    // The winner's new key is the one in Vault, and its database knows it by the same fingerprint.
    expect(json<{ fingerprint: string }>(results[winner]!).fingerprint).toBeDefined();
    const { fingerprint } = await import('../../src/crypto/keys.js');
    expect(fingerprint(Buffer.from(keys.v2!, 'base64'))).toBe(json<{ fingerprint: string }>(results[winner]!).fingerprint);
    // The loser's project is unharmed: status works and still shows v1 as primary.
    const status = await [a, b][1 - winner]!.run(['status', '--json']);
    expect(json<{ primary: string }>(status).primary).toBe('v1');
  });
});

describe('two keyctl processes change the same AWS keyring at once', () => {
  it('the AWSCURRENT stage check: one wins, the other fails cleanly (exit 5) and its project still works', async () => {
    const h = await awsHarness();
    open.push(h);
    const a = sqliteProject(h);
    const b = sqliteProject(h);
    expect((await a.run(['init', '--existing-config', '--demo', '--rows', '20'])).code).toBe(0);
    expect((await b.run(['init', '--existing-config', '--demo', '--rows', '20'])).code).toBe(0);
    // Both have staged their new keyring as AWSPENDING before either moves AWSCURRENT.
    h.server.holdCalls('UpdateSecretVersionStage', AWS_SECRET, 2);
    const [ra, rb] = await Promise.all([a.run(['generate', '--json']), b.run(['generate', '--json'])]);
    const results = [ra, rb];
    const winners = results.filter((r) => r.code === 0);
    expect(winners, `${ra.stderr}\n${rb.stderr}`).toHaveLength(1);
    const loser = results.find((r) => r.code !== 0)!;
    expect(loser.code).toBe(ExitCode.KEYSTORE);
    const keys = JSON.parse(h.server.valueAt(AWS_SECRET)!) as { keys: Record<string, string> };
    const { fingerprint } = await import('../../src/crypto/keys.js');
    expect(fingerprint(Buffer.from(keys.keys.v2!, 'base64'))).toBe(json<{ fingerprint: string }>(winners[0]!).fingerprint);
    expect(h.server.stagesOf(AWS_SECRET).AWSPENDING, 'no change is left staged as the current one').not.toBe(h.server.stagesOf(AWS_SECRET).AWSCURRENT);
    const status = await [a, b][results.indexOf(loser)]!.run(['status', '--json']);
    expect(json<{ primary: string }>(status).primary).toBe('v1');
  });
});

describe('AWS Secrets Manager: ListSecrets lags behind (eventual consistency)', () => {
  const TEN_MINUTES = 600_000;
  async function project(policy = '') {
    const h = await awsHarness();
    open.push(h);
    const p = sqliteProject(h, policy);
    const run = async (...args: string[]): Promise<RunResult> => {
      const r = await p.run(args);
      expect(r.code, `keyctl ${args.join(' ')}\n${r.stderr}`).toBe(0);
      return r;
    };
    await run('init', '--existing-config', '--demo', '--rows', '20');
    const rotateToVerified = async () => {
      await run('generate');
      await run('dual-key');
      await run('reencrypt');
      await run('verify');
    };
    return { h, ...p, run, rotateToVerified };
  }

  it('promote then retire within minutes: the archive the listing does not show yet is found by its name', async () => {
    const { h, run, rotateToVerified } = await project();
    h.server.setListingLag(TEN_MINUTES);
    await rotateToVerified();
    await run('promote');
    expect(h.archive()).toEqual({ v1: 'archived' });
    await run('retire', '--force', '--reason', 'listing lag');
    // v1 is kept as a retired key (retiredKeyRetentionDays), in the same archive secret.
    expect(h.archive()).toEqual({ v1: 'retired' });
    expect(h.published()).toEqual({ primary: 'v2', keys: ['v2'] });
    expect(h.server.secrets.get(`${AWS_SECRET}/archive/v1`)!.versions.size).toBe(2);
    expect(json<{ primary: string }>(await run('status', '--json')).primary).toBe('v2');
  });

  it('rollback then a new promote: the archive scheduled for deletion is restored, not created again', async () => {
    const { h, run, rotateToVerified } = await project('  retiredKeyRetentionDays: 0\n');
    await rotateToVerified();
    await run('promote');
    const v1 = JSON.parse(h.server.valueAt(`${AWS_SECRET}/archive/v1`)!).keys.v1.key as string;
    await run('rollback', '--reason', 'listing lag');
    await run('reencrypt');
    await run('verify');
    expect(h.server.secrets.get(`${AWS_SECRET}/archive/v1`)!.deletedDate, 'v1 is published again: its archive is deleted').toBeDefined();
    // The deletion is younger than the listing's lag from here on.
    h.server.setListingLag(TEN_MINUTES);
    await rotateToVerified();
    await run('promote');
    const archived = h.server.secrets.get(`${AWS_SECRET}/archive/v1`)!;
    expect(archived.deletedDate, 'restored').toBeUndefined();
    expect(h.archive()).toEqual({ v1: 'archived' });
    expect(JSON.parse(h.server.valueAt(`${AWS_SECRET}/archive/v1`)!).keys.v1).toMatchObject({ key: v1, status: 'archived' });
    expect(h.published()).toEqual({ primary: 'v3', keys: ['v3'] });
    expect(h.server.calls.some((c) => c.op === 'RestoreSecret' && c.secretId === `${AWS_SECRET}/archive/v1`)).toBe(true);
  });
});

describe('the AWS staging-label race, whatever error the service answers', () => {
  it('a conflict answered as InvalidRequestException is still reported as a change by someone else', async () => {
    const h = await awsHarness();
    open.push(h);
    h.server.setStageConflict({ errorType: 'InvalidRequestException' });
    const a = sqliteProject(h);
    const b = sqliteProject(h);
    expect((await a.run(['init', '--existing-config', '--demo', '--rows', '20'])).code).toBe(0);
    expect((await b.run(['init', '--existing-config', '--demo', '--rows', '20'])).code).toBe(0);
    h.server.holdCalls('UpdateSecretVersionStage', AWS_SECRET, 2);
    const results = await Promise.all([a.run(['generate', '--json']), b.run(['generate', '--json'])]);
    const winners = results.filter((r) => r.code === 0);
    expect(winners, results.map((r) => r.stderr).join('\n')).toHaveLength(1);
    const loser = results.find((r) => r.code !== 0)!;
    expect(loser.code).toBe(ExitCode.KEYSTORE);
    const err = json<{ error: { message: string; hint: string } }>(loser).error;
    expect(err.message).toMatch(
      /^AWS Secrets Manager secret keyctl\/test\/keyring \(eu-west-1\) was changed by someone else since keyctl read it \(AWSCURRENT is version \S+, keyctl read \S+\)$/,
    );
    expect(err.hint).toContain('was not made current');
    const keys = JSON.parse(h.server.valueAt(AWS_SECRET)!) as { keys: Record<string, string> };
    const { fingerprint } = await import('../../src/crypto/keys.js');
    expect(fingerprint(Buffer.from(keys.keys.v2!, 'base64'))).toBe(json<{ fingerprint: string }>(winners[0]!).fingerprint);
  });

  it('a label move that took effect but whose answer was lost is not mistaken for a lost race', async () => {
    const h = await awsHarness();
    open.push(h);
    const p = sqliteProject(h);
    expect((await p.run(['init', '--existing-config', '--demo', '--rows', '20'])).code).toBe(0);
    // The first UpdateSecretVersionStage moves AWSCURRENT and answers 500; the retry then finds the label gone from the version read.
    h.server.failNext('UpdateSecretVersionStage', 1, 'applied-internal');
    const r = await p.run(['generate', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("but AWSCURRENT is on keyctl's version: it was applied");
    expect(h.published()).toEqual({ primary: 'v1', keys: ['v1', 'v2'] });
    expect(h.server.stagesOf(AWS_SECRET).AWSPENDING, 'the AWSPENDING label was removed').toBeUndefined();
    expect(json<{ primary: string }>(await p.run(['status', '--json'])).primary).toBe('v1');
  });
});

describe('Vault mounts that are not ready for keyctl', () => {
  it('a KV v2 mount just enabled: writes answered "Upgrading …" are retried with backoff until it is ready', async () => {
    const h = await vaultHarness();
    open.push(h);
    h.server.enableMount('fresh', { version: 2, upgradeMs: 2500 });
    const p = sqliteProject({ ...h, yaml: h.yaml.replace('mount: secret', 'mount: fresh') });
    const r = await p.run(['init', '--existing-config', '--demo', '--rows', '20']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/keystore: (read|write) fresh\/keyctl\/test(-archive)? failed \(fresh is being upgraded to KV version 2\), retrying in \d+ ms/);
    expect(h.server.current('fresh', VAULT_PATH)!.version).toBe(1);
    expect(json<{ primary: string }>(await p.run(['status', '--json'])).primary).toBe('v1');
  });

  it('a KV version 1 mount is refused before the first write, and nothing is written there', async () => {
    const h = await vaultHarness();
    open.push(h);
    h.server.enableMount('legacy', { version: 1 });
    const p = sqliteProject({ ...h, yaml: h.yaml.replace('mount: secret', 'mount: legacy') });
    const r = await p.run(['init', '--existing-config', '--json']);
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(json<{ error: { message: string; hint: string } }>(r).error).toMatchObject({
      message: 'keystore.mount legacy is a KV version 1 mount; keyctl needs KV version 2 (versions and check-and-set) and wrote nothing',
      hint: 'upgrade it with `vault kv enable-versioning legacy` (its secrets are kept), or point keystore.mount at a KV version 2 mount',
    });
    expect([...h.server.kvV1('legacy').keys()], 'no stray secret holding a key').toEqual([]);
    // A project set up on the KV v2 mount, then pointed at the v1 one: status says why it finds no keyring.
    const q = sqliteProject(h);
    expect((await q.run(['init', '--existing-config'])).code).toBe(0);
    writeConfig(
      q.dir,
      { config: { client: 'sqlite' }, connection: path.join(q.dir, 'keyctl.db') },
      { ...h, yaml: h.yaml.replace('mount: secret', 'mount: legacy') },
    );
    const status = await q.run(['status']);
    expect(status.code).toBe(ExitCode.KEYSTORE);
    expect(status.stderr).toContain('keystore.mount legacy is a KV version 1 mount');
  });
});

describe('where the network keystores take their settings from', () => {
  it('Vault: VAULT_ADDR, VAULT_NAMESPACE and a token file instead of keyctl.yaml entries', async () => {
    const h = await vaultHarness();
    open.push(h);
    const yaml = `keystore:\n  provider: vault\n  path: ${VAULT_PATH}\n  tokenFile: vault-token\n`;
    const p = sqliteProject({ ...h, yaml });
    writeFileSync(path.join(p.dir, 'vault-token'), `${h.server.rootToken}\n`, { mode: 0o600 });
    const r = await p.run(['init', '--existing-config'], { VAULT_TOKEN: '', VAULT_ADDR: h.server.address, VAULT_NAMESPACE: 'team-a' });
    expect(r.code, r.stderr).toBe(0);
    expect(h.server.current('secret', VAULT_PATH, 'team-a')!.version).toBe(1);
    expect(h.server.current('secret', VAULT_PATH)).toBeUndefined();
    expect(h.server.requests.every((q) => q.namespace === 'team-a')).toBe(true);
    const none = await p.run(['status'], { VAULT_TOKEN: '', VAULT_ADDR: '' });
    expect(none.code).toBe(ExitCode.KEYSTORE);
    expect(none.stderr).toContain('no Vault address: keystore.address is not set and neither is VAULT_ADDR');
  });

  it('AWS: a secret created beforehand without a value (by Terraform, say) is filled by init', async () => {
    const h = await awsHarness();
    open.push(h);
    const { SecretsManagerClient, CreateSecretCommand } = await import('@aws-sdk/client-secrets-manager');
    const sm = new SecretsManagerClient({ region: 'eu-west-1', endpoint: h.server.endpoint, credentials: { accessKeyId: 'AKID', secretAccessKey: 'x' } });
    await sm.send(new CreateSecretCommand({ Name: AWS_SECRET, Description: 'made by terraform' }));
    const p = sqliteProject(h);
    const r = await p.run(['init', '--existing-config']);
    expect(r.code, r.stderr).toBe(0);
    expect(h.published()).toEqual({ primary: 'v1', keys: ['v1'] });
    expect(h.server.secrets.get(AWS_SECRET)!.description).toBe('made by terraform');
    expect(h.server.secrets.get(AWS_SECRET)!.tags).toMatchObject({ 'keyctl:keyring': 'default' });
    // And a second init finds the keyring there and adopts it instead of making another key.
    const again = sqliteProject(h);
    const r2 = await again.run(['init', '--existing-config', '--json']);
    expect(json<{ keySource: string }>(r2).keySource).toBe('existing');
    expect(h.server.secrets.get(AWS_SECRET)!.versions.size).toBe(1);
  });
});
