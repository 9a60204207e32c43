import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/base/errors.js';
import { renderConfig } from '../../src/core/init.js';

const FILE = '/srv/app/keyctl.yaml';

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfig(text, FILE, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    return [e.message, ...e.problems];
  }
  throw new Error('expected a ConfigError');
}

const ISSUE_EXAMPLE = `
database:
  client: sqlite        # sqlite | pg | mysql
  connection: ./keyctl.db
keystore:
  provider: file
  path: .keyctl/keyring.json
keyring: default
targets:
  - table: customers
    primaryKey: id
    columns: [email, phone, notes]
policy:
  rotationIntervalDays: 90
`;

describe('config', () => {
  it('accepts the documented example and fills defaults', () => {
    const c = parseConfig(ISSUE_EXAMPLE, FILE, {});
    expect(c.database).toMatchObject({ client: 'sqlite', connection: './keyctl.db' });
    expect(c.keystore).toEqual({ provider: 'file', path: '.keyctl/keyring.json' });
    expect(c.targets).toEqual([
      { table: 'customers', primaryKey: 'id', codec: 'aes-gcm', blindIndexes: [], plaintext: 'error', columns: ['email', 'phone', 'notes'] },
    ]);
    expect(c.policy.rotationIntervalDays).toBe(90);
    expect(c.policy.rollbackWindowDays).toBe(30);
    expect(c.baseDir).toBe('/srv/app');
  });

  it('the file init writes is valid', () => {
    for (const demo of [true, false]) {
      const c = parseConfig(renderConfig({ client: 'sqlite', connection: './keyctl.db', keyring: 'default', demo }), FILE, {});
      expect(c.targets.length).toBe(demo ? 1 : 0);
    }
  });

  it('interpolates ${VAR} and ${VAR:-default}, and names a missing variable with its key path', () => {
    const text = ISSUE_EXAMPLE.replace('client: sqlite        # sqlite | pg | mysql', 'client: pg')
      .replace('./keyctl.db', '${DATABASE_URL}')
      .replace('keyring: default', 'keyring: ${KR:-orders}');
    const c = parseConfig(text, FILE, { DATABASE_URL: 'postgres://u:p@db:5432/app' });
    expect(c.database.connection).toBe('postgres://u:p@db:5432/app');
    expect(c.keyring).toBe('orders');
    const problems = problemsOf(text, {});
    expect(problems.join('\n')).toContain('keyctl.yaml: database.connection: environment variable DATABASE_URL is not set');
  });

  it('keeps $${ as a literal', () => {
    const c = parseConfig(
      ISSUE_EXAMPLE.replace('./keyctl.db', () => './$${weird}.db'),
      FILE,
      {},
    );
    expect(c.database.connection).toBe('./${weird}.db');
  });

  it('reports every problem with file, key path, expected and found', () => {
    const problems = problemsOf(`
database:
  client: postgres
  conection: x
keystore:
  provider: file
  pth: a
targets:
  - table: customers
    columns: email
policy:
  rotationIntervalDays: "ninety"
extra: 1
`);
    const text = problems.join('\n');
    expect(text).toContain('/srv/app/keyctl.yaml: database.client: expected "sqlite" | "pg" | "mysql", found "postgres"');
    expect(text).toContain('database.connection: required string is missing');
    expect(text).toContain('database.conection: unknown key (did you mean "connection"?)');
    expect(text).toContain('keystore.pth: unknown key (did you mean "path"?)');
    expect(text).toContain('targets[0].columns: expected array, found "email"');
    expect(text).toContain('policy.rotationIntervalDays: expected number, found "ninety"');
    expect(text).toMatch(/extra: unknown key \(allowed here: database, keystore/);
  });

  it("checks a target's shape: codec, prefix, from, and row-context templates with their positions", () => {
    const base =
      'database:\n  client: sqlite\n  connection: ./k.db\nkeystore:\n  provider: file\n  path: .keyctl/k.json\ntargets:\n  - table: users\n    columns: [email]\n';
    const ok = parseConfig(
      `${base}    aad: "{table}.{column}:{tenant_id}/{id}"\n    derive:\n      info: "{user_id}"\n    from:\n      codec: aes-gcm\n      versions: [v1]\n`,
      FILE,
      {},
    );
    expect(ok.targets[0]).toMatchObject({
      aad: '{table}.{column}:{tenant_id}/{id}',
      derive: { info: '{user_id}' },
      from: { codec: 'aes-gcm', versions: ['v1'] },
    });
    expect(ok.warnings).toBeUndefined();
    const fernet = parseConfig(`${base}    codec: fernet\n    prefix: "FERNET_V1:"\n`, FILE, {});
    expect(fernet.targets[0]).toMatchObject({ codec: 'fernet', prefix: 'FERNET_V1:' });
    expect(problemsOf(`${base}    aad: "{tenant_id"\n`).join('\n')).toMatch(/targets\[0\]\.aad: .*\{.*at character 1/);
    expect(problemsOf(`${base}    aad: "{email}:{id}"\n`).join('\n')).toMatch(/targets\[0\]\.aad: a context template cannot read an encrypted column/);
    expect(problemsOf(`${base}    codec: fernet\n    aad: "{id}"\n`).join('\n')).toMatch(/aad and derive are for codec: aes-gcm/);
    expect(problemsOf(`${base}    prefix: "FERNET_V1:"\n`).join('\n')).toMatch(/targets\[0\]\.prefix: prefix is for codec: fernet/);
    expect(problemsOf(`${base}    from:\n      codec: aes-gcm\n      versions: [v1]\n`).join('\n')).toMatch(/targets\[0\]\.from: .*set aad or derive/);
    expect(problemsOf(`${base}    codec: fernet\n    from:\n      codec: fernet\n      versions: [v1]\n`).join('\n')).toMatch(
      /from: fernet migrates to aes-gcm/,
    );
    expect(problemsOf(`${base}    codec: fernet\n    prefix: "v2:"\n`).join('\n')).toMatch(/targets\[0\]\.prefix: a prefix starting like a key version/);
    expect(problemsOf(`${base}  - table: users\n    columns: [phone]\n`).join('\n')).toMatch(/targets: each table is one target/);
    const indexed = parseConfig(
      `${base}    blindIndexes:\n      - column: email_bidx\n        source: email\n        normalize: [trim, lowercase]\n`,
      FILE,
      {},
    );
    expect(indexed.targets[0]!.blindIndexes).toEqual([{ column: 'email_bidx', source: 'email', normalize: ['trim', 'lowercase'] }]);
    expect(problemsOf(`${base}    blindIndexes:\n      - column: email_bidx\n        source: phone\n`).join('\n')).toMatch(
      /blindIndexes: a blind index's source must be one of the target's columns/,
    );
    expect(problemsOf(`${base}    blindIndexes:\n      - column: email\n        source: email\n`).join('\n')).toMatch(
      /blindIndexes: each blind index needs its own column/,
    );
    expect(problemsOf(`${base}    blindIndexes:\n      - column: bidx\n        source: email\n        normalize: [upper]\n`).join('\n')).toMatch(
      /normalize\[0\]/,
    );
    // Parses, but binds every row alike: accepted with a warning naming the key.
    const weak = parseConfig(`${base}    aad: "{table}.{column}"\n`, FILE, {});
    expect(weak.warnings?.join('\n')).toMatch(/targets\[0\]\.aad: /);
  });

  it('names an unknown keystore provider', () => {
    const text = problemsOf(ISSUE_EXAMPLE.replace('provider: file', 'provider: s3')).join('\n');
    expect(text).toContain('keystore.provider: expected "file" | "env" | "aws-secrets-manager" | "vault" | "aws-kms" | "vault-transit", found "s3"');
  });

  it('checks the network keystores: required fields, ranges, and archivePrefix with an ARN', () => {
    const aws = (ks: string) => problemsOf(ISSUE_EXAMPLE.replace(/keystore:\n( {2}.*\n)+/, `keystore:\n${ks}`)).join('\n');
    expect(aws('  provider: aws-secrets-manager\n')).toContain('keystore.secretId');
    expect(aws('  provider: aws-secrets-manager\n  secretId: k\n  recoveryWindowDays: 3\n')).toContain('keystore.recoveryWindowDays');
    expect(aws('  provider: aws-secrets-manager\n  secretId: arn:aws:secretsmanager:eu-west-1:1:secret:k-abcdef\n')).toContain(
      'archivePrefix is required when secretId is an ARN',
    );
    expect(aws('  provider: aws-secrets-manager\n  secretId: k\n  accessKeyId: AKIA\n')).toContain('accessKeyId');
    expect(aws('  provider: vault\n')).toContain('keystore.path');
    expect(aws('  provider: vault\n  path: /keyctl/x/\n')).toContain('a Vault path such as keyctl/payments');
    expect(aws('  provider: vault\n  path: keyctl/x\n  token: s.abc\n')).toContain('token');
    const ok = parseConfig(ISSUE_EXAMPLE.replace(/keystore:\n( {2}.*\n)+/, 'keystore:\n  provider: vault\n  path: keyctl/x\n'), FILE, {});
    expect(ok.keystore).toMatchObject({ provider: 'vault', mount: 'secret', path: 'keyctl/x', timeoutSeconds: 10, maxAttempts: 4 });
  });

  it('reports YAML syntax errors with line and column', () => {
    const problems = problemsOf('database:\n  client: sqlite\n connection: [\n');
    expect(problems[0]).toContain('is not valid YAML');
    expect(problems.slice(1).join('\n')).toMatch(/keyctl\.yaml:\d+:\d+: YAML syntax error/);
  });

  it('rejects an empty file and a list at the top level', () => {
    expect(problemsOf('')[0]).toContain('expected a mapping');
    expect(problemsOf('- a\n- b\n')[0]).toContain('found a list of 2');
  });

  it('finds the file via --config, then KEYCTL_CONFIG, then the working directory; a missing one suggests init', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-cfg-'));
    writeFileSync(path.join(dir, 'other.yaml'), ISSUE_EXAMPLE.replace('keyring: default', 'keyring: other'));
    writeFileSync(path.join(dir, 'keyctl.yaml'), ISSUE_EXAMPLE);
    expect(loadConfig({ cwd: dir, env: {} }).keyring).toBe('default');
    expect(loadConfig({ cwd: dir, env: { KEYCTL_CONFIG: 'other.yaml' } }).keyring).toBe('other');
    expect(loadConfig({ cwd: dir, env: { KEYCTL_CONFIG: 'nope.yaml' }, explicitPath: 'other.yaml' }).keyring).toBe('other');
    const empty = mkdtempSync(path.join(os.tmpdir(), 'keyctl-cfg-'));
    try {
      loadConfig({ cwd: empty, env: {} });
      throw new Error('expected failure');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).hint).toContain('keyctl init');
    }
  });
});
