/**
 * End-to-end: the built bin/keyctl.js as a child process, checked on stdout, stderr and exit
 * codes — what a newcomer, an operator and cron see.
 */
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { fingerprint, generateKey } from '../../src/crypto/keys.js';
import { json, keyctl } from '../helpers/cli.js';
import { createTestDatabase, DIALECTS, dialectAvailable, type TestDatabase } from '../helpers/databases.js';

const ANSI = /\u001b\[/;

function tmpdir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'keyctl-e2e-'));
}

interface StatusJson {
  keyring: string;
  primary: string;
  versions: Array<{ version: string; state: string; fingerprint: string }>;
  rotation: null | { id: number; phase: string };
  targets: Array<{ table: string; column: string; counts: Record<string, number>; null: number; unparseable: number }>;
  nextRotationDue: string;
  overdue: boolean;
}

describe('keyctl basics', () => {
  it('--version prints the package version', async () => {
    const r = await keyctl(['--version'], { cwd: tmpdir() });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
  });

  it('--help lists the commands and the exit codes; every command has help', async () => {
    const r = await keyctl(['--help'], { cwd: tmpdir() });
    expect(r.code).toBe(0);
    for (const word of ['init', 'status', 'migrate', 'Exit codes:', '--json', '--no-color', '--config']) expect(r.stdout).toContain(word);
    for (const cmd of ['init', 'status', 'migrate']) {
      const h = await keyctl([cmd, '--help'], { cwd: tmpdir() });
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`Usage: keyctl ${cmd}`);
    }
  });

  it('an unknown command or option is a usage error (exit 2)', async () => {
    const r = await keyctl(['frobnicate'], { cwd: tmpdir() });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
    const o = await keyctl(['status', '--bogus'], { cwd: tmpdir() });
    expect(o.code).toBe(ExitCode.USAGE);
  });
});

describe('a new user on the embedded default (SQLite + file keystore)', () => {
  it('init --demo --rows 1000, then status --json reports 1000 values under v1 per column', async () => {
    const dir = tmpdir();
    const init = await keyctl(['init', '--demo', '--rows', '1000'], { cwd: dir });
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain('wrote keyctl.yaml');
    expect(statMode(path.join(dir, '.keyctl', 'keyring.json'))).toBe(0o600);
    expect(statMode(path.join(dir, '.keyctl'))).toBe(0o700);

    const r = await keyctl(['status', '--json'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const s = json<StatusJson>(r);
    expect(s.keyring).toBe('default');
    expect(s.primary).toBe('v1');
    expect(s.versions).toEqual([expect.objectContaining({ version: 'v1', state: 'primary', fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/) })]);
    expect(s.rotation).toBeNull();
    expect(s.targets.map((t) => [t.table, t.column, t.counts, t.null, t.unparseable])).toEqual([
      ['customers', 'email', { v1: 1000 }, 0, 0],
      ['customers', 'phone', { v1: 1000 }, 0, 0],
      ['customers', 'notes', { v1: 1000 }, 0, 0],
    ]);
    expect(s.overdue).toBe(false);
    const due = new Date(s.nextRotationDue).getTime();
    expect(Math.abs(due - (Date.now() + 90 * 86_400_000))).toBeLessThan(3_600_000);

    // Human output without a TTY: no colour codes, and the key never appears anywhere.
    const human = await keyctl(['status'], { cwd: dir });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('customers.email');
    expect(human.stdout).not.toMatch(ANSI);
    const key = JSON.parse(readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8')).keys.v1 as string;
    for (const out of [init.stdout, init.stderr, r.stdout, r.stderr, human.stdout, human.stderr]) expect(out).not.toContain(key);
    expect(readFileSync(path.join(dir, 'keyctl.db')).includes(Buffer.from(key))).toBe(false);
  });

  it('refuses to init twice; --force rewrites the config and keeps the keys', async () => {
    const dir = tmpdir();
    expect((await keyctl(['init'], { cwd: dir })).code).toBe(0);
    const before = readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8');
    const again = await keyctl(['init'], { cwd: dir });
    expect(again.code).toBe(ExitCode.REFUSED);
    expect(again.stderr).toContain('already exists');
    expect(again.stderr).toContain('--force');
    const forced = await keyctl(['init', '--force', '--json'], { cwd: dir });
    expect(forced.code, forced.stderr).toBe(0);
    expect(json(forced)).toMatchObject({ ok: true, keySource: 'existing', primary: 'v1' });
    expect(readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8')).toBe(before);
  });

  it('init --key-from-env adopts an existing key as v1', async () => {
    const dir = tmpdir();
    const key = generateKey();
    const r = await keyctl(['init', '--key-from-env', 'APP_KEY', '--json'], { cwd: dir, env: { APP_KEY: key.toString('base64') } });
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ keySource: 'adopted', fingerprint: fingerprint(key) });
    expect(r.stdout + r.stderr).not.toContain(key.toString('base64'));
    const s = json<StatusJson>(await keyctl(['status', '--json'], { cwd: dir }));
    expect(s.versions[0]!.fingerprint).toBe(fingerprint(key));
  });

  it('status --check passes when healthy and exits 4 on unparseable values', async () => {
    const dir = tmpdir();
    expect((await keyctl(['init', '--demo', '--rows', '20'], { cwd: dir })).code).toBe(0);
    expect((await keyctl(['status', '--check'], { cwd: dir })).code).toBe(0);
    const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'keyctl.db') }, useNullAsDefault: true });
    await knex('customers').where('id', '<=', 3).update({ notes: 'not encrypted' });
    await knex.destroy();
    const r = await keyctl(['status', '--check'], { cwd: dir });
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.stderr).toContain('customers.notes: 3 unparseable value(s)');
    const j = await keyctl(['status', '--check', '--json'], { cwd: dir });
    expect(j.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(json<{ problems: string[] }>(j).problems).toEqual(['customers.notes: 3 unparseable value(s)']);
  });

  it('works with the env keystore (read-only) and KEYCTL_CONFIG', async () => {
    const dir = tmpdir();
    const key = generateKey();
    writeFileSync(path.join(dir, 'prod.yaml'), 'database:\n  client: sqlite\n  connection: app.db\nkeystore:\n  provider: env\n');
    writeFileSync(path.join(dir, 'app.db'), '');
    const env = { KEYCTL_CONFIG: path.join(dir, 'prod.yaml'), KEYCTL_KEY_V1: key.toString('base64') };
    const r = await keyctl(['status', '--json'], { cwd: tmpdir(), env });
    expect(r.code, r.stderr).toBe(0);
    expect(json<StatusJson>(r).versions[0]!.fingerprint).toBe(fingerprint(key));
    const bad = await keyctl(['status'], { cwd: tmpdir(), env: { ...env, KEYCTL_KEY_V1: 'c2hvcnQ=' } });
    expect(bad.code).toBe(ExitCode.KEYSTORE);
    expect(bad.stderr).toContain('KEYCTL_KEY_V1 decodes to 5 bytes, expected 32');
    expect(bad.stderr).not.toContain('c2hvcnQ=');
  });
});

describe('bad input, as a new user would try it: one screen saying what to fix, non-zero exit', () => {
  function expectShort(stderr: string): void {
    expect(stderr.split('\n').length).toBeLessThan(25);
    expect(stderr).toMatch(/^keyctl: error: /);
    expect(stderr).toContain('keyctl: hint: ');
    expect(stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/); // no stack traces
  }

  it('no config suggests keyctl init', async () => {
    const r = await keyctl(['status'], { cwd: tmpdir() });
    expect(r.code).toBe(ExitCode.USAGE);
    expectShort(r.stderr);
    expect(r.stderr).toContain('no keyctl configuration found');
    expect(r.stderr).toContain('keyctl init');
  });

  it('malformed YAML names the line', async () => {
    const dir = tmpdir();
    writeFileSync(path.join(dir, 'keyctl.yaml'), 'database:\n  client: sqlite\n connection: [\n');
    const r = await keyctl(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.USAGE);
    expectShort(r.stderr);
    expect(r.stderr).toMatch(/keyctl\.yaml:\d+:\d+: YAML syntax error/);
  });

  it('unknown keys are named with a suggestion', async () => {
    const dir = tmpdir();
    writeFileSync(path.join(dir, 'keyctl.yaml'), 'database:\n  client: sqlite\n  connection: x.db\nkeystore:\n  provider: file\npolicy:\n  rotationIntervallDays: 30\n');
    const r = await keyctl(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.USAGE);
    expectShort(r.stderr);
    expect(r.stderr).toContain('keyctl.yaml: policy.rotationIntervallDays: unknown key (did you mean "rotationIntervalDays"?)');
  });

  it('a wrong database URL names client, host and port, without the password', async () => {
    const dir = tmpdir();
    writeFileSync(path.join(dir, 'keyctl.yaml'), 'database:\n  client: pg\n  connection: ${DATABASE_URL}\nkeystore:\n  provider: file\n');
    const r = await keyctl(['status'], { cwd: dir, env: { DATABASE_URL: 'postgres://app:s3cret@127.0.0.1:1/app' } });
    expect(r.code).toBe(ExitCode.DATABASE);
    expectShort(r.stderr);
    expect(r.stderr).toContain('PostgreSQL at 127.0.0.1:1');
    expect(r.stderr).toContain('connection refused');
    expect(r.stderr).not.toContain('s3cret');
    const j = await keyctl(['status', '--json'], { cwd: dir, env: { DATABASE_URL: 'mysql://root@127.0.0.1:1/app' } });
    expect(j.code).toBe(ExitCode.USAGE);
    expect(json(j)).toMatchObject({ ok: false, error: { kind: 'usage' } });
    expect(j.stderr).toContain('scheme "mysql" but database.client is "pg"');
  });

  it('a world-readable key file is refused with the chmod fix', async () => {
    const dir = tmpdir();
    expect((await keyctl(['init'], { cwd: dir })).code).toBe(0);
    const file = path.join(dir, '.keyctl', 'keyring.json');
    chmodSync(file, 0o644);
    const r = await keyctl(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expectShort(r.stderr);
    expect(r.stderr).toContain('mode 0644');
    expect(r.stderr).toContain(`chmod 600 ${file}`);
  });

  it('a bad base64 key is refused without echoing it', async () => {
    for (const bad of ['not-base64!!', Buffer.alloc(16).toString('base64')]) {
      const dir = tmpdir();
      const r = await keyctl(['init', '--key-from-env', 'OLD_KEY'], { cwd: dir, env: { OLD_KEY: bad } });
      expect(r.code).toBe(ExitCode.USAGE);
      expectShort(r.stderr);
      expect(r.stderr).toContain('OLD_KEY');
      expect(r.stderr).toContain('32 bytes');
      expect(r.stderr).not.toContain(bad);
    }
  });

  it('--json errors are one JSON object on stdout', async () => {
    const r = await keyctl(['status', '--json'], { cwd: tmpdir() });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(json(r)).toMatchObject({ ok: false, error: { kind: 'config', exitCode: 2 } });
  });
});

for (const dialect of DIALECTS.filter((d) => d !== 'sqlite')) {
  describe.skipIf(!dialectAvailable(dialect))(`init and status on ${dialect}`, () => {
    let tdb: TestDatabase | undefined;
    afterEach(async () => {
      await tdb?.drop();
      tdb = undefined;
    });

    it('init --demo --database ${URL} then status --json reports 1000 values under v1', async () => {
      tdb = await createTestDatabase(dialect);
      const env = { APP_DATABASE_URL: tdb.connection };
      const init = await keyctl(['init', '--demo', '--rows', '1000', '--database', '${APP_DATABASE_URL}'], { cwd: tdb.dir, env });
      expect(init.code, init.stderr).toBe(0);
      const config = readFileSync(path.join(tdb.dir, 'keyctl.yaml'), 'utf8');
      expect(config).toContain('${APP_DATABASE_URL}');
      expect(config).toContain(`client: ${dialect}`);
      const r = await keyctl(['status', '--json'], { cwd: tdb.dir, env });
      expect(r.code, r.stderr).toBe(0);
      expect(json<StatusJson>(r).targets.map((t) => t.counts)).toEqual([{ v1: 1000 }, { v1: 1000 }, { v1: 1000 }]);
      expect((await keyctl(['migrate', '--json'], { cwd: tdb.dir, env })).stdout).toContain('"applied": []');
    });
  });
}

function statMode(p: string): number {
  return statSync(p).mode & 0o777;
}

describe('keyctl without a command', () => {
  it('shows the help on stderr and exits 2', async () => {
    const r = await keyctl([], { cwd: tmpdir() });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('Usage: keyctl');
  });
});
