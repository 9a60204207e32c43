/**
 * Secret hygiene from the operator's side (issue 16): connection strings never show their password
 * (errors, --json, init output, endpoint descriptions), init keeps a literal password out of
 * keyctl.yaml, key files owned by someone else or behind an unsafe directory are refused, and
 * bad input in keyctl.yaml or the database URL is a usage error, not an internal one.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, keyctlInProcess, declareTestSecret, type RunResult } from '../helpers/cli.js';
import { createTestDatabase, dialectAvailable, type TestDatabase } from '../helpers/databases.js';
import { MYSQL_ADMIN_URL } from '../helpers/env.js';

const dirs: string[] = [];
const dbs: TestDatabase[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  for (const db of dbs.splice(0)) await db.drop();
});

function tmpdir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-secrets-'));
  dirs.push(dir);
  return dir;
}

const everything = (r: RunResult) => `${r.stdout}\n${r.stderr}`;

function projectWith(connection: string, client: string): string {
  const dir = tmpdir();
  writeFileSync(
    path.join(dir, 'keyctl.yaml'),
    `database:\n  client: ${client}\n  connection: \${DATABASE_URL}\nkeystore:\n  provider: file\n  path: .keyctl/keyring.json\nkeyring: default\ntargets: []\n`,
  );
  void connection;
  return dir;
}

describe('connection strings are shown without their password', () => {
  const urls: Array<[string, string, string[]]> = [
    ['pg', 'postgres://u@127.0.0.1:1/x?password=Leak8', ['Leak8']],
    ['pg', 'postgres://u@127.0.0.1:1/x?sslmode=disable&SSLPassword=Leak9', ['Leak9']],
    ['mysql', 'mysql://sec:p@ss#Leak1@127.0.0.1:1/db', ['Leak1', 'p@ss']],
    ['mysql', 'mysql://u:Leak2@127.0.0.1:1/db', ['Leak2']],
  ];
  for (const [client, url, secrets] of urls) {
    it(`${url}: text and --json`, async () => {
      for (const s of secrets) declareTestSecret(s, 'database password in a repro URL');
      const dir = projectWith(url, client);
      for (const args of [['status'], ['status', '--json'], ['migrate', '--json']]) {
        const r = await keyctlInProcess(args, { cwd: dir, env: { DATABASE_URL: url } });
        expect(r.code === ExitCode.DATABASE || r.code === ExitCode.USAGE, everything(r)).toBe(true);
        for (const s of secrets) expect(everything(r)).not.toContain(s);
        if (args.includes('--json')) expect(json(r)).toMatchObject({ ok: false });
      }
    });
  }

  it('a URL the WHATWG parser refuses is still masked (and is a usage error)', async () => {
    declareTestSecret('Leak3', 'database password in a repro URL');
    const dir = projectWith('', 'pg');
    const r = await keyctlInProcess(['status', '--json'], { cwd: dir, env: { DATABASE_URL: 'postgres://u:Leak3@127.0.0.1:99999/db' } });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(everything(r)).not.toContain('Leak3');
  });
});

describe('bad input is a usage error, not an internal one', () => {
  it('%zz in a database URL: exit 2 naming the part, never the password', async () => {
    declareTestSecret('Leak4', 'database password in a repro URL');
    for (const url of ['postgres://u@127.0.0.1:1/db%zz', 'mysql://u:Leak4%zz@127.0.0.1:1/db', 'mysql://u%zz@127.0.0.1:1/db']) {
      const dir = projectWith(url, url.startsWith('mysql') ? 'mysql' : 'pg');
      const r = await keyctlInProcess(['status', '--json'], { cwd: dir, env: { DATABASE_URL: url } });
      expect(r.code, everything(r)).toBe(ExitCode.USAGE);
      expect(r.stderr).toMatch(/percent-encoding|%XX/);
      expect(r.stderr).not.toContain('internal error');
      expect(everything(r)).not.toContain('Leak4');
    }
  });

  it('a YAML alias bomb in keyctl.yaml: exit 2 with a clear message', async () => {
    const dir = tmpdir();
    const rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (const [n, p] of [
      ['b', 'a'],
      ['c', 'b'],
      ['d', 'c'],
      ['e', 'd'],
      ['f', 'e'],
      ['g', 'f'],
    ])
      rows.push(`${n}: &${n} [${Array(9).fill(`*${p}`).join(',')}]`);
    writeFileSync(path.join(dir, 'keyctl.yaml'), `${rows.join('\n')}\ndatabase: {client: sqlite, connection: ./k.db}\n`);
    const r = await keyctlInProcess(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('alias');
    expect(r.stderr).not.toContain('internal error');
  });
});

describe('init keeps database passwords out of keyctl.yaml', () => {
  it('a literal password becomes ${DATABASE_URL}; the file stays secret-free; the next command uses the variable', async (ctx) => {
    if (!dialectAvailable('pg')) return ctx.skip();
    const db = await createTestDatabase('pg');
    dbs.push(db);
    // The local PostgreSQL trusts local connections, so any password is accepted (and ignored).
    const u = new URL(db.connection);
    u.username = 'postgres';
    u.password = 'S3cretLeak6';
    declareTestSecret('S3cretLeak6', 'database password given to init');
    const dir = tmpdir();
    const r = await keyctlInProcess(['init', '--json', '--database', u.toString()], { cwd: dir, env: { DATABASE_URL: '' } });
    expect(r.code, everything(r)).toBe(0);
    expect(everything(r)).not.toContain('S3cretLeak6');
    expect(json(r)).toMatchObject({ ok: true, databaseEnv: 'DATABASE_URL' });
    expect(r.stderr).toContain('DATABASE_URL');
    const yaml = readFileSync(path.join(dir, 'keyctl.yaml'), 'utf8');
    expect(yaml).not.toContain('S3cretLeak6');
    expect(yaml).toContain('connection: "${DATABASE_URL}"');
    const s = await keyctlInProcess(['status', '--json'], { cwd: dir, env: { DATABASE_URL: u.toString() } });
    expect(s.code, everything(s)).toBe(0);
    expect(everything(s)).not.toContain('S3cretLeak6');
    const missing = await keyctlInProcess(['status'], { cwd: dir, env: { DATABASE_URL: '' } });
    expect(missing.code).toBe(ExitCode.USAGE);
    expect(missing.stderr).toContain('DATABASE_URL');
  });

  it('refuses when DATABASE_URL already names another database, rather than writing a reference to it', async () => {
    const dir = tmpdir();
    const r = await keyctlInProcess(['init', '--database', 'postgres://u:Leak6b@127.0.0.1:1/a'], {
      cwd: dir,
      env: { DATABASE_URL: 'postgres://u@127.0.0.1:1/other' },
    });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain("--database '${DATABASE_URL}'");
    expect(everything(r)).not.toContain('Leak6b');
  });

  it('keyctl.yaml holding a secret (a ${VAR:-default} with a password) is written 0600, otherwise 0644', async (ctx) => {
    if (!dialectAvailable('pg')) return ctx.skip();
    const db = await createTestDatabase('pg');
    dbs.push(db);
    const u = new URL(db.connection);
    u.password = 'Leak7';
    declareTestSecret('Leak7', 'database password in a default');
    const dir = tmpdir();
    const r = await keyctlInProcess(['init', '--database', `\${KEYCTL_T_UNSET_URL:-${u.toString()}}`], { cwd: dir });
    expect(r.code, everything(r)).toBe(0);
    expect(statSync(path.join(dir, 'keyctl.yaml')).mode & 0o777).toBe(0o600);
    expect(everything(r)).not.toContain('Leak7');
    const plain = tmpdir();
    expect((await keyctlInProcess(['init'], { cwd: plain })).code).toBe(0);
    expect(statSync(path.join(plain, 'keyctl.yaml')).mode & 0o777).toBe(0o644);
  });

  it('an existing keyctl.yaml with a literal password keeps working, with a warning that does not repeat it', async (ctx) => {
    if (!dialectAvailable('pg')) return ctx.skip();
    const db = await createTestDatabase('pg');
    dbs.push(db);
    const u = new URL(db.connection);
    u.password = 'Leak7c';
    declareTestSecret('Leak7c', 'literal database password in keyctl.yaml');
    const dir = tmpdir();
    expect((await keyctlInProcess(['init', '--database', u.toString()], { cwd: dir, env: { DATABASE_URL: '' } })).code).toBe(0);
    // As a keyctl.yaml written by hand (or by an older keyctl) would hold it.
    const file = path.join(dir, 'keyctl.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace(/connection: \S+/, `connection: ${JSON.stringify(u.toString())}`));
    const r = await keyctlInProcess(['status', '--json'], { cwd: dir });
    expect(r.code, everything(r)).toBe(0);
    expect(r.stderr).toMatch(/warning: .*literal database password/);
    expect(everything(r)).not.toContain('Leak7c');
  });

  it('MariaDB with a real password (a user of its own): init, status and errors never show it', async (ctx) => {
    if (!dialectAvailable('mysql')) return ctx.skip();
    const db = await createTestDatabase('mysql');
    dbs.push(db);
    const password = 'p@ss#Leak1/Maria';
    declareTestSecret(password, 'MariaDB test user password');
    const name = new URL(db.connection).pathname.slice(1);
    const user = `ksec_${name.slice(-10)}`;
    const admin = new URL(MYSQL_ADMIN_URL);
    const k = knexFactory({
      client: 'mysql2',
      connection: {
        host: admin.hostname,
        port: Number(admin.port || 3306),
        user: decodeURIComponent(admin.username),
        password: decodeURIComponent(admin.password),
      },
    });
    try {
      await k.raw(`CREATE USER ?@'%' IDENTIFIED BY ?`, [user, password]);
      await k.raw(`GRANT ALL ON \`${name}\`.* TO ?@'%'`, [user]);
      const url = new URL(db.connection);
      url.username = user;
      url.password = encodeURIComponent(password);
      const dir = tmpdir();
      const init = await keyctlInProcess(['init', '--demo', '--rows', '20', '--database', url.toString()], { cwd: dir, env: { DATABASE_URL: '' } });
      expect(init.code, everything(init)).toBe(0);
      const env = { DATABASE_URL: url.toString() };
      for (const args of [['status'], ['status', '--json'], ['migrate', '--json'], ['generate', '--json']]) {
        const r = await keyctlInProcess(args, { cwd: dir, env });
        expect(r.code, everything(r)).toBe(0);
        expect(everything(r)).not.toContain(password);
        expect(everything(r)).not.toContain(encodeURIComponent(password));
      }
      const wrong = new URL(url);
      wrong.password = encodeURIComponent(`${password}x`);
      const refused = await keyctlInProcess(['status', '--json'], { cwd: dir, env: { DATABASE_URL: wrong.toString() } });
      expect(refused.code).toBe(ExitCode.DATABASE);
      expect(everything(refused)).toContain('refused the login');
      expect(everything(refused)).not.toContain('Leak1');
      expect(readFileSync(path.join(dir, 'keyctl.yaml'), 'utf8')).not.toContain('Leak1');
    } finally {
      await k.raw(`DROP USER IF EXISTS ?@'%'`, [user]).catch(() => undefined);
      await k.destroy();
    }
  });
});

describe('key files and their directory must be private and ours', () => {
  async function initialised(): Promise<{ dir: string; keyDir: string; file: string }> {
    const dir = tmpdir();
    const r = await keyctlInProcess(['init'], { cwd: dir });
    expect(r.code, everything(r)).toBe(0);
    return { dir, keyDir: path.join(dir, '.keyctl'), file: path.join(dir, '.keyctl', 'keyring.json') };
  }

  it('a keyring file owned by another (non-root) user is refused, with the chown fix', async () => {
    const { dir, file } = await initialised();
    chownSync(file, 65534, 65534);
    const r = await keyctlInProcess(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('owned by uid 65534');
    expect(r.stderr).toContain('chown');
  });

  it('a keystore directory owned by another user, or writable by group or others, is refused', async () => {
    const { dir, keyDir } = await initialised();
    chownSync(keyDir, 65534, 65534);
    const owned = await keyctlInProcess(['status'], { cwd: dir });
    expect(owned.code).toBe(ExitCode.KEYSTORE);
    expect(owned.stderr).toContain(`directory ${keyDir}`);
    expect(owned.stderr).toContain('owned by uid 65534');
    chownSync(keyDir, process.getuid!(), process.getgid!());
    chmodSync(keyDir, 0o777);
    const open = await keyctlInProcess(['status'], { cwd: dir });
    expect(open.code).toBe(ExitCode.KEYSTORE);
    expect(open.stderr).toContain('writable by group or others');
    expect(open.stderr).toContain(`chmod 700 ${keyDir}`);
    chmodSync(keyDir, 0o770);
    expect((await keyctlInProcess(['generate'], { cwd: dir })).code).toBe(ExitCode.KEYSTORE);
    chmodSync(keyDir, 0o700);
    expect((await keyctlInProcess(['status'], { cwd: dir })).code).toBe(0);
  });

  it('a keystore directory that is a symbolic link is refused', async () => {
    const { dir, keyDir } = await initialised();
    const real = path.join(tmpdir(), 'real-keys');
    renameSync(keyDir, real);
    symlinkSync(real, keyDir);
    const r = await keyctlInProcess(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(r.stderr).toContain('symbolic link');
    expect(r.stderr).toContain(real);
  });

  it('a keystore directory keyctl would create under a foreign directory is refused before any key is written', async () => {
    const dir = tmpdir();
    const shared = path.join(dir, 'shared');
    mkdirSync(shared);
    writeFileSync(
      path.join(dir, 'keyctl.yaml'),
      'database:\n  client: sqlite\n  connection: ./keyctl.db\nkeystore:\n  provider: file\n  path: shared/keyring.json\nkeyring: default\ntargets: []\n',
    );
    chownSync(shared, 65534, 65534);
    chmodSync(shared, 0o777);
    const r = await keyctlInProcess(['init', '--existing-config'], { cwd: dir });
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expect(() => statSync(path.join(shared, 'keyring.json'))).toThrow();
  });
});
