/**
 * The command line as a newcomer, an operator and cron see it: stdout, stderr and exit codes.
 * Most tests run keyctl in-process (main() with captured streams, the same code the launcher
 * runs); the launcher itself is checked as a child process.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import { generateKey as generatePgpKey } from 'openpgp';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { FernetCodec, fernetKeyToString } from '../../src/crypto/fernet.js';
import { fingerprint, generateKey } from '../../src/crypto/keys.js';
import { json, KEYCTL_BIN, keyctl, keyctlInProcess, startKeyctlInProcess } from '../helpers/cli.js';
import { createTestDatabase, DIALECTS, dialectAvailable, type TestDatabase } from '../helpers/databases.js';

/** The start of an ANSI colour or cursor sequence (ESC [). */
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[`);

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
  it('the launcher (bin/keyctl.js, a child process) runs the built CLI: --version prints the package version', async () => {
    const r = await keyctl(['--version'], { cwd: tmpdir() });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
  });

  it("the launcher runs dist/bundle/ only when it was written after tsc's dist/cli/ and npm's last change to node_modules, else dist/cli/", () => {
    // A copy of the launcher beside two stand-in builds that each say which one ran.
    const root = tmpdir();
    mkdirSync(path.join(root, 'bin'));
    copyFileSync(KEYCTL_BIN, path.join(root, 'bin', 'keyctl.js'));
    const stand = (dir: string) => {
      mkdirSync(path.join(root, 'dist', dir), { recursive: true });
      const file = path.join(root, 'dist', dir, 'main.js');
      writeFileSync(file, `export async function main(io) { io.stdout.write('${dir}\\n'); return 0; }\n`);
      return file;
    };
    const cli = stand('cli');
    const run = () => spawnSync(process.execPath, [path.join(root, 'bin', 'keyctl.js')], { cwd: root, encoding: 'utf8' });
    const at = (file: string, seconds: number) => utimesSync(file, seconds, seconds);

    expect(run().stdout).toBe('cli\n'); // no bundle
    const bundle = stand('bundle');
    at(cli, 1_000);
    at(bundle, 2_000);
    expect(run().stdout).toBe('bundle\n'); // bundled after tsc
    at(cli, 3_000);
    expect(run().stdout).toBe('cli\n'); // tsc ran again after the bundle
    at(bundle, 3_000);
    expect(run().stdout).toBe('bundle\n');
    // npm changed node_modules after the bundle copied Knex and the drivers out of it.
    mkdirSync(path.join(root, 'node_modules'));
    const installed = path.join(root, 'node_modules', '.package-lock.json');
    writeFileSync(installed, '{}\n');
    at(installed, 4_000);
    expect(run().stdout).toBe('cli\n');
    at(bundle, 4_000);
    expect(run().stdout).toBe('bundle\n');
  });

  it.runIf(process.platform === 'linux')(
    "run as a program, the launcher sets glibc's malloc tunables unless they are set, in the same process, and keyctl passes on only the operator's own",
    () => {
      // A copy of the launcher linked from a bin directory as npm links it, beside a stand-in build
      // that reports its pid, its arguments, the environment the process started with (what glibc
      // read) and the environment keyctl hands on to what it runs.
      const root = tmpdir();
      mkdirSync(path.join(root, 'bin'));
      mkdirSync(path.join(root, 'dist', 'cli'), { recursive: true });
      copyFileSync(KEYCTL_BIN, path.join(root, 'bin', 'keyctl.js'));
      chmodSync(path.join(root, 'bin', 'keyctl.js'), 0o755);
      mkdirSync(path.join(root, 'node_modules', '.bin'), { recursive: true });
      const linked = path.join(root, 'node_modules', '.bin', 'keyctl');
      symlinkSync('../../bin/keyctl.js', linked);
      writeFileSync(
        path.join(root, 'dist', 'cli', 'main.js'),
        `import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
export async function main(io) {
  const child = execFileSync('sh', ['-c', 'printf %s "\${GLIBC_TUNABLES-unset}"'], { encoding: 'utf8' });
  const started = readFileSync('/proc/self/environ', 'latin1').split('\\0');
  const at = (name) => started.find((e) => e.startsWith(name + '='))?.slice(name.length + 1) ?? null;
  io.stdout.write(JSON.stringify({ pid: process.pid, args: io.argv.slice(2), glibcSaw: at('GLIBC_TUNABLES'), passedOn: io.env.GLIBC_TUNABLES ?? null, marker: io.env.KEYCTL_LAUNCHER_GLIBC_TUNABLES ?? null, childSees: child }));
  return 0;
}
`,
      );
      const { GLIBC_TUNABLES: _own, KEYCTL_LAUNCHER_GLIBC_TUNABLES: _marker, ...env } = process.env;
      const PATH = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`;
      const args = ['reencrypt', 'a b', '', '$HOME', '--x=*'];
      const run = (file: string, argv: string[], extra: Record<string, string> = {}) => {
        const r = spawnSync(file, argv, { cwd: root, encoding: 'utf8', env: { ...env, PATH, ...extra } });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        return { spawned: r.pid, ...JSON.parse(r.stdout) } as Record<string, unknown>;
      };

      const LAUNCHER = 'glibc.malloc.trim_threshold=67108864:glibc.malloc.mmap_threshold=33554432';
      const asProgram = run(linked, args);
      // glibc 2.36 writes a NUL after each tunable it parses into the environment block it started
      // with, so the first is what /proc shows of it.
      expect(asProgram.glibcSaw).toMatch(/^glibc\.malloc\.trim_threshold=67108864\b/);
      expect(asProgram.args).toEqual(args);
      // The shell was replaced, not left as a parent: the process spawnSync started is the one that ran keyctl.
      expect(asProgram.pid).toBe(asProgram.spawned);
      expect([asProgram.passedOn, asProgram.marker, asProgram.childSees]).toEqual([null, null, 'unset']);

      // What the shell line hands to `node`, exactly (a stand-in node first on PATH).
      const fakeBin = path.join(root, 'fake-node');
      mkdirSync(fakeBin);
      writeFileSync(path.join(fakeBin, 'node'), '#!/bin/sh\nprintf "%s|" "$$" "$GLIBC_TUNABLES" "$KEYCTL_LAUNCHER_GLIBC_TUNABLES" "$@"\n');
      chmodSync(path.join(fakeBin, 'node'), 0o755);
      const shown = spawnSync(linked, args, { cwd: root, encoding: 'utf8', env: { ...env, PATH: `${fakeBin}${path.delimiter}${PATH}` } });
      expect(shown.stdout).toBe([shown.pid, LAUNCHER, '1', linked, ...args].map((x) => `${x}|`).join(''));

      // An operator's own setting wins, even empty, and is passed on.
      const own = run(linked, ['--version'], { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' });
      expect([own.glibcSaw, own.passedOn, own.marker]).toEqual(['glibc.malloc.arena_max=2', 'glibc.malloc.arena_max=2', null]);
      expect(own.childSees).toBe('glibc.malloc.arena_max=2');
      const empty = run(linked, ['--version'], { GLIBC_TUNABLES: '' });
      expect([empty.glibcSaw, empty.passedOn]).toEqual(['', '']);
      // A marker that came from outside (copied from an environment dump) does not take it away.
      const copied = run(linked, ['--version'], { GLIBC_TUNABLES: 'glibc.malloc.arena_max=2', KEYCTL_LAUNCHER_GLIBC_TUNABLES: '1' });
      expect([copied.passedOn, copied.marker, copied.childSees]).toEqual(['glibc.malloc.arena_max=2', null, 'glibc.malloc.arena_max=2']);

      // The shell line under each POSIX shell this machine has, with the stand-in node.
      for (const shell of ['dash', 'bash', 'busybox']) {
        if (spawnSync('sh', ['-c', `command -v ${shell}`]).status !== 0) continue;
        const argv = shell === 'busybox' ? ['sh', linked, ...args] : shell === 'bash' ? ['--posix', linked, ...args] : [linked, ...args];
        const r = spawnSync(shell, argv, { cwd: root, encoding: 'utf8', env: { ...env, PATH: `${fakeBin}${path.delimiter}${PATH}` } });
        expect(r.stdout, shell).toBe([r.pid, LAUNCHER, '1', linked, ...args].map((x) => `${x}|`).join(''));
      }

      // Without Node.js on PATH the shell stops there (exit 127, as `#!/usr/bin/env node` did) and
      // reads no further into the file.
      const noNode = spawnSync(linked, args, { cwd: root, encoding: 'utf8', env: { ...env, PATH: fakeBin.replace('fake-node', 'nowhere') } });
      expect(noNode.status).toBe(127);
      expect(noNode.stdout).toBe('');
      expect(noNode.stderr.trim().split('\n')).toHaveLength(1);
      expect(noNode.stderr).toContain('node');

      // `node bin/keyctl.js` skips the shell line: nothing set.
      const viaNode = run(process.execPath, [path.join(root, 'bin', 'keyctl.js'), ...args]);
      expect([viaNode.glibcSaw, viaNode.passedOn, viaNode.marker]).toEqual([null, null, null]);
      // …and a marker copied into its environment beside an operator's own value takes nothing away.
      const viaNodeCopied = run(process.execPath, [path.join(root, 'bin', 'keyctl.js'), '--version'], {
        GLIBC_TUNABLES: 'glibc.malloc.arena_max=2',
        KEYCTL_LAUNCHER_GLIBC_TUNABLES: '1',
      });
      expect([viaNodeCopied.passedOn, viaNodeCopied.childSees]).toEqual(['glibc.malloc.arena_max=2', 'glibc.malloc.arena_max=2']);
      expect(viaNode.args).toEqual(args);
    },
  );

  it('--help lists the commands and the exit codes; every command has help', async () => {
    const r = await keyctlInProcess(['--help'], { cwd: tmpdir() });
    expect(r.code).toBe(0);
    for (const word of ['init', 'status', 'migrate', 'Exit codes:', '--json', '--no-color', '--config']) expect(r.stdout).toContain(word);
    for (const cmd of ['init', 'status', 'migrate']) {
      const h = await keyctlInProcess([cmd, '--help'], { cwd: tmpdir() });
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`Usage: keyctl ${cmd}`);
    }
  });

  it('an unknown command or option is a usage error (exit 2)', async () => {
    const r = await keyctlInProcess(['frobnicate'], { cwd: tmpdir() });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
    const o = await keyctlInProcess(['status', '--bogus'], { cwd: tmpdir() });
    expect(o.code).toBe(ExitCode.USAGE);
  });
});

describe('a new user on the embedded default (SQLite + file keystore)', () => {
  it('init --demo --rows 1000, then status --json reports 1000 values under v1 per column', async () => {
    const dir = tmpdir();
    const init = await keyctlInProcess(['init', '--demo', '--rows', '1000'], { cwd: dir });
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toContain('wrote keyctl.yaml');
    expect(statMode(path.join(dir, '.keyctl', 'keyring.json'))).toBe(0o600);
    expect(statMode(path.join(dir, '.keyctl'))).toBe(0o700);

    const r = await keyctlInProcess(['status', '--json'], { cwd: dir });
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
    const human = await keyctlInProcess(['status'], { cwd: dir });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('customers.email');
    expect(human.stdout).not.toMatch(ANSI);
    const key = JSON.parse(readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8')).keys.v1 as string;
    for (const out of [init.stdout, init.stderr, r.stdout, r.stderr, human.stdout, human.stderr]) expect(out).not.toContain(key);
    expect(readFileSync(path.join(dir, 'keyctl.db')).includes(Buffer.from(key))).toBe(false);
  });

  it('refuses to init twice; --force rewrites the config and keeps the keys', async () => {
    const dir = tmpdir();
    expect((await keyctlInProcess(['init'], { cwd: dir })).code).toBe(0);
    const before = readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8');
    const again = await keyctlInProcess(['init'], { cwd: dir });
    expect(again.code).toBe(ExitCode.REFUSED);
    expect(again.stderr).toContain('already exists');
    expect(again.stderr).toContain('--force');
    const forced = await keyctlInProcess(['init', '--force', '--json'], { cwd: dir });
    expect(forced.code, forced.stderr).toBe(0);
    expect(json(forced)).toMatchObject({ ok: true, keySource: 'existing', primary: 'v1' });
    expect(readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8')).toBe(before);
  });

  it('init --key-from-env adopts an existing key as v1', async () => {
    const dir = tmpdir();
    const key = generateKey();
    const r = await keyctlInProcess(['init', '--key-from-env', 'APP_KEY', '--json'], { cwd: dir, env: { APP_KEY: key.toString('base64') } });
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ keySource: 'adopted', fingerprint: fingerprint(key) });
    expect(r.stdout + r.stderr).not.toContain(key.toString('base64'));
    const s = json<StatusJson>(await keyctlInProcess(['status', '--json'], { cwd: dir }));
    expect(s.versions[0]!.fingerprint).toBe(fingerprint(key));
  });

  it("init adopts an application's Fernet key, and status, reencrypt and verify work on its tokens", async () => {
    const dir = tmpdir();
    let key = generateKey();
    // A Fernet key is base64url: make sure this one has a character standard base64 would not take.
    while (!/[-_]/.test(fernetKeyToString(key))) key = generateKey();
    const adopted = await keyctlInProcess(['init', '--key-from-env', 'FERNET_KEY', '--json'], { cwd: dir, env: { FERNET_KEY: fernetKeyToString(key) } });
    expect(adopted.code, adopted.stderr).toBe(0);
    expect(json(adopted)).toMatchObject({ keySource: 'adopted', fingerprint: fingerprint(key) });
    expect(adopted.stdout + adopted.stderr).not.toContain(fernetKeyToString(key));
    const config = path.join(dir, 'keyctl.yaml');
    writeFileSync(
      config,
      readFileSync(config, 'utf8')
        .replace('targets: []', 'targets:\n  - table: profiles\n    columns: [ssn]\n    codec: fernet\n    prefix: "FERNET_V1:"')
        .replace('minPropagationSeconds: 300', 'minPropagationSeconds: 0'),
    );
    const fernet = new FernetCodec({ prefix: 'FERNET_V1:' });
    const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'keyctl.db') }, useNullAsDefault: true });
    try {
      await knex.schema.createTable('profiles', (tb) => {
        tb.increments('id').primary();
        tb.text('ssn');
      });
      await knex('profiles').insert(Array.from({ length: 50 }, (_, i) => ({ id: i + 1, ssn: fernet.encrypt(`ssn ${i + 1}`, 'v1', key) })));
    } finally {
      await knex.destroy();
    }
    const text = await keyctlInProcess(['status'], { cwd: dir });
    expect(text.stdout).toContain('50 Fernet token(s) in profiles.ssn: placed by trying keys newest first, 50 HMAC(s) (1.0 per token)');
    expect(json<{ targets: Array<{ counts: object; fernet: object }> }>(await keyctlInProcess(['status', '--json'], { cwd: dir })).targets).toEqual([
      expect.objectContaining({ counts: { v1: 50 }, fernet: { tokens: 50, keysTried: 50 } }),
    ]);
    expect((await keyctlInProcess(['generate'], { cwd: dir })).code).toBe(0);
    expect((await keyctlInProcess(['dual-key'], { cwd: dir })).code).toBe(0);
    const run = await keyctlInProcess(['reencrypt', '--json'], { cwd: dir });
    expect(run.code, run.stderr).toBe(0);
    expect(json<{ tables: Array<{ keysTried: number }> }>(run).tables[0]!.keysTried).toBe(100);
    const verified = await keyctlInProcess(['verify'], { cwd: dir });
    expect(verified.code, verified.stderr).toBe(0);
  });

  it('status --check passes when healthy and exits 4 on unparseable values', async () => {
    const dir = tmpdir();
    expect((await keyctlInProcess(['init', '--demo', '--rows', '20'], { cwd: dir })).code).toBe(0);
    expect((await keyctlInProcess(['status', '--check'], { cwd: dir })).code).toBe(0);
    const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'keyctl.db') }, useNullAsDefault: true });
    await knex('customers').where('id', '<=', 3).update({ notes: 'not encrypted' });
    await knex.destroy();
    const r = await keyctlInProcess(['status', '--check'], { cwd: dir });
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.stderr).toContain('customers.notes: 3 unparseable value(s)');
    const j = await keyctlInProcess(['status', '--check', '--json'], { cwd: dir });
    expect(j.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(json<{ problems: Array<{ code: string; message: string }> }>(j).problems).toMatchObject([
      { code: 'unparseable-values', message: 'customers.notes: 3 unparseable value(s)' },
    ]);
  });

  it('works with the env keystore (read-only) and KEYCTL_CONFIG', async () => {
    const dir = tmpdir();
    const key = generateKey();
    writeFileSync(path.join(dir, 'prod.yaml'), 'database:\n  client: sqlite\n  connection: app.db\nkeystore:\n  provider: env\n');
    writeFileSync(path.join(dir, 'app.db'), '');
    const env = { KEYCTL_CONFIG: path.join(dir, 'prod.yaml'), KEYCTL_KEY_V1: key.toString('base64') };
    const r = await keyctlInProcess(['status', '--json'], { cwd: tmpdir(), env });
    expect(r.code, r.stderr).toBe(0);
    expect(json<StatusJson>(r).versions[0]!.fingerprint).toBe(fingerprint(key));
    const bad = await keyctlInProcess(['status'], { cwd: tmpdir(), env: { ...env, KEYCTL_KEY_V1: 'c2hvcnQ=' } });
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
    const r = await keyctlInProcess(['status'], { cwd: tmpdir() });
    expect(r.code).toBe(ExitCode.USAGE);
    expectShort(r.stderr);
    expect(r.stderr).toContain('no keyctl configuration found');
    expect(r.stderr).toContain('keyctl init');
  });

  it('malformed YAML names the line', async () => {
    const dir = tmpdir();
    writeFileSync(path.join(dir, 'keyctl.yaml'), 'database:\n  client: sqlite\n connection: [\n');
    const r = await keyctlInProcess(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.USAGE);
    expectShort(r.stderr);
    expect(r.stderr).toMatch(/keyctl\.yaml:\d+:\d+: YAML syntax error/);
  });

  it('unknown keys are named with a suggestion', async () => {
    const dir = tmpdir();
    writeFileSync(
      path.join(dir, 'keyctl.yaml'),
      'database:\n  client: sqlite\n  connection: x.db\nkeystore:\n  provider: file\npolicy:\n  rotationIntervallDays: 30\n',
    );
    const r = await keyctlInProcess(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.USAGE);
    expectShort(r.stderr);
    expect(r.stderr).toContain('keyctl.yaml: policy.rotationIntervallDays: unknown key (did you mean "rotationIntervalDays"?)');
  });

  it('a wrong database URL names client, host and port, without the password', async () => {
    const dir = tmpdir();
    writeFileSync(path.join(dir, 'keyctl.yaml'), 'database:\n  client: pg\n  connection: ${DATABASE_URL}\nkeystore:\n  provider: file\n');
    const r = await keyctlInProcess(['status'], { cwd: dir, env: { DATABASE_URL: 'postgres://app:s3cret@127.0.0.1:1/app' } });
    expect(r.code).toBe(ExitCode.DATABASE);
    expectShort(r.stderr);
    expect(r.stderr).toContain('PostgreSQL at 127.0.0.1:1');
    expect(r.stderr).toContain('connection refused');
    expect(r.stderr).not.toContain('s3cret');
    const j = await keyctlInProcess(['status', '--json'], { cwd: dir, env: { DATABASE_URL: 'mysql://root@127.0.0.1:1/app' } });
    expect(j.code).toBe(ExitCode.USAGE);
    expect(json(j)).toMatchObject({ ok: false, error: { kind: 'usage' } });
    expect(j.stderr).toContain('scheme "mysql" but database.client is "pg"');
  });

  it('a world-readable key file is refused with the chmod fix', async () => {
    const dir = tmpdir();
    expect((await keyctlInProcess(['init'], { cwd: dir })).code).toBe(0);
    const file = path.join(dir, '.keyctl', 'keyring.json');
    chmodSync(file, 0o644);
    const r = await keyctlInProcess(['status'], { cwd: dir });
    expect(r.code).toBe(ExitCode.KEYSTORE);
    expectShort(r.stderr);
    expect(r.stderr).toContain('mode 0644');
    expect(r.stderr).toContain(`chmod 600 ${file}`);
  });

  it('a bad base64 key is refused without echoing it', async () => {
    for (const bad of ['not-base64!!', Buffer.alloc(16).toString('base64')]) {
      const dir = tmpdir();
      const r = await keyctlInProcess(['init', '--key-from-env', 'OLD_KEY'], { cwd: dir, env: { OLD_KEY: bad } });
      expect(r.code).toBe(ExitCode.USAGE);
      expectShort(r.stderr);
      expect(r.stderr).toContain('OLD_KEY');
      expect(r.stderr).toContain('32 bytes');
      expect(r.stderr).not.toContain(bad);
    }
  });

  it('--json errors are one JSON object on stdout', async () => {
    const r = await keyctlInProcess(['status', '--json'], { cwd: tmpdir() });
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
      const init = await keyctlInProcess(['init', '--demo', '--rows', '1000', '--database', '${APP_DATABASE_URL}'], { cwd: tdb.dir, env });
      expect(init.code, init.stderr).toBe(0);
      const config = readFileSync(path.join(tdb.dir, 'keyctl.yaml'), 'utf8');
      expect(config).toContain('${APP_DATABASE_URL}');
      expect(config).toContain(`client: ${dialect}`);
      const r = await keyctlInProcess(['status', '--json'], { cwd: tdb.dir, env });
      expect(r.code, r.stderr).toBe(0);
      expect(json<StatusJson>(r).targets.map((t) => t.counts)).toEqual([{ v1: 1000 }, { v1: 1000 }, { v1: 1000 }]);
      expect((await keyctlInProcess(['migrate', '--json'], { cwd: tdb.dir, env })).stdout).toContain('"applied": []');
    });
  });
}

function statMode(p: string): number {
  return statSync(p).mode & 0o777;
}

describe('keyctl without a command', () => {
  it('shows the help on stderr and exits 2', async () => {
    const r = await keyctlInProcess([], { cwd: tmpdir() });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('Usage: keyctl');
  });
});

describe('option values are parsed by the command specs', () => {
  it('a bad number names the flag and what it expects (exit 2), also as one JSON object with --json after it', async () => {
    const cwd = tmpdir();
    const r = await keyctlInProcess(['reencrypt', '--batch-size', '0'], { cwd });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toBe('keyctl: error: --batch-size expects a whole number ≥ 1, found "0"\nkeyctl: hint: e.g. --batch-size 500\n');
    // Numbers written as keyctl prints them are taken as they are meant.
    const grouped = await keyctlInProcess(['reencrypt', '--max-rate', '1,000', '--batch-size', '1,000,0'], { cwd });
    expect(grouped.stderr.split('\n')[0]).toBe('keyctl: error: --batch-size expects a whole number ≥ 1, found "1,000,0"');
    const j = await keyctlInProcess(['reencrypt', '--shard', '4/4', '--json'], { cwd });
    expect(j.code).toBe(ExitCode.USAGE);
    expect(json(j)).toMatchObject({
      ok: false,
      error: { kind: 'usage', message: '--shard expects I/N with 0 ≤ I < N, found "4/4"', hint: expect.stringContaining('--shard 0/4') },
    });
    const rows = await keyctlInProcess(['init', '--demo', '--rows', '1e3'], { cwd });
    expect(rows.code).toBe(ExitCode.USAGE);
    expect(rows.stderr).toContain('keyctl: error: --rows expects a whole number, found "1e3"\nkeyctl: hint: e.g. keyctl init --demo --rows 1000');
    for (const [args, message] of [
      [['reencrypt', '--chunk-time', '61'], '--chunk-time expects seconds between 0 and 60, found "61"'],
      [['verify', '--sample', 'all'], '--sample expects a whole number ≥ 1, found "all"'],
      [['audit', '--rotation', 'latest'], '--rotation expects a rotation id (a number), found "latest"'],
    ] as const) {
      const e = await keyctlInProcess([...args], { cwd });
      expect([e.code, e.stderr.split('\n')[0]]).toEqual([ExitCode.USAGE, `keyctl: error: ${message}`]);
    }
  });
});

describe('reencrypt interrupted through the injected signal hook (in-process)', () => {
  async function dualKeyProject(): Promise<string> {
    const cwd = tmpdir();
    for (const args of [['init', '--demo', '--rows', '3000'], ['generate'], ['dual-key']]) {
      const r = await keyctlInProcess(args, { cwd });
      expect(r.code, r.stderr).toBe(0);
    }
    return cwd;
  }

  async function untilRewriting(run: { readonly stderr: string }): Promise<void> {
    while (!/ rewritten, /.test(run.stderr)) await new Promise((resolve) => setTimeout(resolve, 2));
  }

  it('one SIGINT finishes the batch, prints the resume line and returns 7; the same command then completes', async () => {
    const cwd = await dualKeyProject();
    const run = startKeyctlInProcess(['reencrypt', '--batch-size', '50', '--crypto-workers', '0'], { cwd });
    await untilRewriting(run);
    run.signal('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(ExitCode.INTERRUPTED);
    expect(run.exitedNow).toBeUndefined();
    expect(r.stderr).toContain('keyctl: SIGINT: finishing the current batch and saving the cursor');
    expect(r.stdout).toContain('resume with: keyctl reencrypt --batch-size 50 --crypto-workers 0');
    const resumed = await keyctlInProcess(['reencrypt', '--crypto-workers', '0', '--json'], { cwd });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(json(resumed)).toMatchObject({ remaining: 0, interrupted: false });
  });

  it('a second signal exits 7 at once through the injected exit; the handlers are gone afterwards', async () => {
    const cwd = await dualKeyProject();
    const run = startKeyctlInProcess(['reencrypt', '--batch-size', '50', '--crypto-workers', '0'], { cwd });
    await untilRewriting(run);
    run.signal('SIGTERM');
    run.signal('SIGINT');
    expect(run.exitedNow).toBe(ExitCode.INTERRUPTED);
    expect(run.stderr).toContain('keyctl: stopping now; the last committed batch is saved. Run the same command to resume.');
    expect((await run.done).code).toBe(ExitCode.INTERRUPTED);
    run.signal('SIGINT');
    expect(run.stderr.match(/stopping now/g)).toHaveLength(1);
  });
});

describe('restore asks through the injected stdin', () => {
  it("writes nothing on 'n', restores on 'y'", async () => {
    const cwd = tmpdir();
    const pgp = await generatePgpKey({ userIDs: [{ email: 'backup@example.com' }], type: 'ecc', curve: 'curve25519Legacy', format: 'armored' });
    writeFileSync(path.join(cwd, 'backup.pub.asc'), pgp.publicKey);
    writeFileSync(path.join(cwd, 'backup.sec.asc'), pgp.privateKey);
    expect((await keyctlInProcess(['init'], { cwd })).code).toBe(0);
    const backup = await keyctlInProcess(['backup', '--recipient', 'backup.pub.asc', '--json'], { cwd });
    expect(backup.code, backup.stderr).toBe(0);
    const file = json<{ file: string }>(backup).file;
    const keyring = path.join(cwd, '.keyctl', 'keyring.json');
    const original = readFileSync(keyring, 'utf8');
    rmSync(keyring);

    const args = ['restore', '--backup', file, '--identity', 'backup.sec.asc'];
    const no = await keyctlInProcess(args, { cwd, stdinIsTTY: true, input: 'n\n' });
    expect(no.code, no.stderr).toBe(0);
    expect(no.stderr).toContain('write these keys to the keystore? [y/N] ');
    expect(no.stdout).toContain('not restored: nothing was written');
    expect(existsSync(keyring)).toBe(false);

    const yes = await keyctlInProcess(args, { cwd, stdinIsTTY: true, input: 'y\n' });
    expect(yes.code, yes.stderr).toBe(0);
    expect(yes.stdout).toContain('restored v1 into the keystore');
    expect(JSON.parse(readFileSync(keyring, 'utf8'))).toEqual(JSON.parse(original));
  });
});
