/**
 * backup / recover-test / restore end to end, with key pairs made by the real `gpg` binary:
 * keyctl encrypts to a key gpg exported, gpg decrypts keyctl's file, and keyctl decrypts with a
 * secret key gpg exported (with and without a passphrase). On the embedded default (SQLite).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { backupName } from '../../src/backup/files.js';
import { encryptBinary } from '../../src/crypto/binary.js';
import { BlindIndexer } from '../../src/crypto/blind-index.js';
import { encryptForRow } from '../../src/crypto/context.js';
import { FernetCodec } from '../../src/crypto/fernet.js';
import { fingerprint } from '../../src/crypto/keys.js';
import { json, keyctl, KEYCTL_BIN } from '../helpers/cli.js';
import { GpgHome } from '../helpers/gpg.js';

const PASSPHRASE = 'correct horse battery staple';
let home: GpgHome;
const gpg = (args: string[], input?: string): string => home.run(args, input);
let keys: { pub: string; sec: string; pubLocked: string; secLocked: string; pubOther: string; secOther: string };

beforeAll(() => {
  home = new GpgHome();
  const out = mkdtempSync(path.join(os.tmpdir(), 'keyctl-gpgkeys-'));
  const make = (uid: string, pass: string) => {
    gpg(['--passphrase', pass, '--quick-gen-key', uid, 'future-default', 'default', 'never']);
    const pub = path.join(out, `${uid.replace(/\W/g, '_')}.pub.asc`);
    const sec = path.join(out, `${uid.replace(/\W/g, '_')}.sec.asc`);
    writeFileSync(pub, gpg(['--armor', '--export', uid]));
    writeFileSync(sec, gpg(['--armor', '--passphrase', pass, '--export-secret-keys', uid]));
    return { pub, sec };
  };
  const a = make('backup@example.com', '');
  const b = make('vault@example.com', PASSPHRASE);
  const c = make('stranger@example.com', '');
  keys = { pub: a.pub, sec: a.sec, pubLocked: b.pub, secLocked: b.sec, pubOther: c.pub, secOther: c.sec };
}, 60_000);

afterAll(() => home.close());

async function project(opts: { rows?: number; keyring?: string; backup?: string } = {}): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-e2e-bk-'));
  expect((await keyctl(['init', '--demo', '--rows', String(opts.rows ?? 40)], { cwd: dir })).code).toBe(0);
  if (opts.keyring) {
    const cfg = path.join(dir, 'keyctl.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('keyring: default', `keyring: ${opts.keyring}`));
    const kr = path.join(dir, '.keyctl', 'keyring.json');
    writeFileSync(kr, readFileSync(kr, 'utf8').replace('"default"', JSON.stringify(opts.keyring)), { mode: 0o600 });
  }
  appendFileSync(
    path.join(dir, 'keyctl.yaml'),
    `backup:\n  recipients: [${JSON.stringify(keys.pub)}, ${JSON.stringify(keys.pubLocked)}]\n${opts.backup ?? ''}`,
  );
  return dir;
}

const backupsIn = (dir: string) =>
  readdirSync(path.join(dir, '.keyctl', 'backups'))
    .filter((n) => n.endsWith('.gpg'))
    .sort();

describe('keyctl backup', () => {
  it('writes a file gpg decrypts into the documented JSON, with a checksum sha256sum accepts, 0600, one line, audited without key material', async () => {
    const dir = await project();
    const r = await keyctl(['backup'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    const [name] = backupsIn(dir);
    const file = path.join(dir, '.keyctl', 'backups', name!);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(name).toMatch(/^keyctl-backup-default-\d{8}T\d{9}Z\.gpg$/);
    const doc = JSON.parse(gpg(['--decrypt', file])) as {
      format: string;
      keyring: string;
      primary: string;
      keys: Array<{ version: string; key: string; fingerprint: string }>;
    };
    expect(doc).toMatchObject({ format: 'keyctl-key-backup', formatVersion: 1, keyring: 'default', primary: 'v1' });
    const keyring = JSON.parse(readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8')) as { keys: Record<string, string> };
    expect(doc.keys.map((k) => [k.version, k.key])).toEqual([['v1', keyring.keys.v1]]);
    const check = spawnSync('sha256sum', ['-c', `${name}.sha256`], { cwd: path.dirname(file), encoding: 'utf8' });
    expect(check.stdout).toContain(`${name}: OK`);
    const audit = json<{ entries: Array<{ action: string; outcome: string; details: Record<string, unknown> }> }>(
      await keyctl(['audit', '--all', '--format', 'json'], { cwd: dir }),
    );
    const row = audit.entries.find((e) => e.action === 'backup')!;
    expect(row).toMatchObject({ outcome: 'ok', details: { file: name, versions: ['v1'] } });
    expect(String(row.details.sha256)).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(audit)).not.toContain(keyring.keys.v1);
  });

  it('runs as cron would: no TTY, no stdin, minimal environment, one line', async () => {
    const dir = await project();
    const r = spawnSync(
      'env',
      [
        '-i',
        'PATH=/usr/bin:/bin',
        'HOME=/tmp',
        'bash',
        '-c',
        `cd ${JSON.stringify(dir)} && ${JSON.stringify(process.execPath)} ${JSON.stringify(KEYCTL_BIN)} backup </dev/null`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    // Under cron every line starts with the UTC time, for the mail and the log it ends up in.
    expect(r.stdout).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ backup .*\.gpg \(v1; 2 recipient\(s\)/);
    expect(r.stdout + r.stderr).not.toMatch(/\u001b\[/); // no colour, no spinner
  });

  it('prunes backups past retention but never the newest keepAtLeast valid ones', async () => {
    const dir = await project({ backup: '  retentionDays: 7\n  keepAtLeast: 3\n' });
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const bdir = path.join(dir, '.keyctl', 'backups');
    const [today] = backupsIn(dir);
    const day = 86_400_000;
    const plant = (daysAgo: number, valid: boolean) => {
      const name = backupName('default', new Date(Date.now() - daysAgo * day));
      copyFileSync(path.join(bdir, today!), path.join(bdir, name));
      const sum = readFileSync(path.join(bdir, `${today}.sha256`), 'utf8').split(' ')[0]!;
      writeFileSync(path.join(bdir, `${name}.sha256`), `${valid ? sum : '0'.repeat(64)}  ${name}\n`);
      return name;
    };
    // Older than 7 days: 20 and 30 days (valid), 10 days (checksum broken).
    const d10 = plant(10, false);
    const d20 = plant(20, true);
    const d30 = plant(30, true);
    const d40 = plant(40, true);
    rmSync(path.join(bdir, today!));
    rmSync(path.join(bdir, `${today}.sha256`));
    // Now: the newest valid backups are 20, 30 and 40 days old, all past retention; none may go.
    const r1 = json<{ pruned: string[] }>(await keyctl(['--json', 'backup'], { cwd: dir }));
    // Kept: the new one, 20 and 30 (three valid). Pruned: 40 (valid, but a fourth) and 10 (invalid).
    expect(r1.pruned.sort()).toEqual([d10, d40].sort());
    expect(backupsIn(dir)).toContain(d20);
    expect(backupsIn(dir)).toContain(d30);
    expect(backupsIn(dir)).toHaveLength(3);
    expect(existsSync(path.join(bdir, `${d40}.sha256`))).toBe(false);
  });

  it('a failed backup prunes nothing; a bad recipient exits with its own code before writing', async () => {
    const dir = await project({ backup: '  retentionDays: 1\n  keepAtLeast: 1\n' });
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const bdir = path.join(dir, '.keyctl', 'backups');
    const [today] = backupsIn(dir);
    const old = backupName('default', new Date(Date.now() - 5 * 86_400_000));
    copyFileSync(path.join(bdir, today!), path.join(bdir, old));
    copyFileSync(path.join(bdir, `${today}.sha256`), path.join(bdir, `${old}.sha256`));
    const notAKey = path.join(dir, 'not-a-key.asc');
    writeFileSync(notAKey, 'hello\n');
    const r = await keyctl(['backup', '--recipient', notAKey], { cwd: dir });
    expect(r.code).toBe(ExitCode.PGP_KEY);
    expect(r.stderr).toContain(`recipient ${notAKey} is not an armored OpenPGP public key`);
    const secret = await keyctl(['backup', '--recipient', keys.sec], { cwd: dir });
    expect(secret.code).toBe(ExitCode.PGP_KEY);
    expect(secret.stderr).toContain('holds a secret key; a recipient must be a public key');
    expect(backupsIn(dir)).toEqual([old, today].sort());
  });

  it('a second run while one holds the lock exits with LOCKED; a stale lock is taken over', async () => {
    const dir = await project();
    const bdir = path.join(dir, '.keyctl', 'backups');
    mkdirSync(bdir, { recursive: true, mode: 0o700 });
    const lock = path.join(bdir, '.keyctl-backup.lock');
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString() }));
    const r = await keyctl(['backup'], { cwd: dir });
    expect(r.code).toBe(ExitCode.LOCKED);
    expect(r.stderr).toContain(`another keyctl backup is running in ${bdir} (pid ${process.pid}`);
    expect(backupsIn(dir)).toEqual([]);
    // The holder died without cleaning up.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    writeFileSync(lock, JSON.stringify({ pid: Number(dead.stdout), host: os.hostname(), startedAt: new Date().toISOString() }));
    const r2 = await keyctl(['backup'], { cwd: dir });
    expect(r2.code, r2.stderr).toBe(0);
    expect(existsSync(lock)).toBe(false);
  });

  it('a recipient file holding two public keys encrypts to both, and says so (issue 16)', async () => {
    const dir = await project();
    // One armor block holding both keys (gpg --export A B), and two blocks (cat a.asc b.asc).
    const oneBlock = path.join(dir, 'one-block.asc');
    writeFileSync(oneBlock, gpg(['--armor', '--export', 'backup@example.com', 'stranger@example.com']));
    const one = json<{ recipients: unknown[] }>(await keyctl(['backup', '--recipient', oneBlock, '--json'], { cwd: dir }));
    expect(one.recipients).toHaveLength(2);
    const both = path.join(dir, 'two-keys.asc');
    writeFileSync(both, readFileSync(keys.pub, 'utf8') + readFileSync(keys.pubOther, 'utf8'));
    const r = json<{ file: string; recipients: Array<{ file: string; fingerprint: string }> }>(
      await keyctl(['backup', '--recipient', both, '--json'], { cwd: dir }),
    );
    expect(r.recipients.map((x) => x.file)).toEqual([both, both]);
    expect(new Set(r.recipients.map((x) => x.fingerprint)).size).toBe(2);
    // Each holder of a secret key opens the backup, the second key's too.
    for (const sec of [keys.sec, keys.secOther]) {
      const t = await keyctl(['recover-test', '--identity', sec, '--backup', r.file], { cwd: dir });
      expect(t.code, `${sec}: ${t.stderr}`).toBe(0);
    }
  });

  it('an unreachable keystore and an unwritable output have their own exit codes', async () => {
    const dir = await project();
    const blocker = path.join(dir, 'a-file');
    writeFileSync(blocker, '');
    const out = await keyctl(['backup', '--out', path.join(blocker, 'backups')], { cwd: dir });
    expect(out.code).toBe(ExitCode.BACKUP);
    expect(out.stderr).toContain(`cannot write to the backup directory ${path.join(blocker, 'backups')}`);
    rmSync(path.join(dir, '.keyctl', 'keyring.json'));
    const ks = await keyctl(['backup'], { cwd: dir });
    expect(ks.code).toBe(ExitCode.KEYSTORE);
    expect(ks.stderr).toMatch(/holds no keys/);
  });
});

describe('keyctl recover-test', () => {
  it('passes with the secret key gpg exported, with and without a passphrase, and audits the outcome', async () => {
    const dir = await project();
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const plain = await keyctl(['recover-test', '--identity', keys.sec, '--sample', '10'], { cwd: dir });
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/recover-test passed: .* restores v1; 30 sampled value\(s\) decrypted/);
    const locked = await keyctl(['recover-test', '--identity', keys.secLocked], { cwd: dir });
    expect(locked.code).toBe(ExitCode.PGP_KEY);
    expect(locked.stderr).toContain('is protected by a passphrase');
    const wrong = await keyctl(['recover-test', '--identity', keys.secLocked, '--passphrase-env', 'PP'], { cwd: dir, env: { PP: 'nope' } });
    expect(wrong.code).toBe(ExitCode.PGP_KEY);
    expect(wrong.stderr).toContain('wrong passphrase');
    const ok = await keyctl(['recover-test', '--identity', keys.secLocked, '--passphrase-env', 'PP'], { cwd: dir, env: { PP: PASSPHRASE } });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout + ok.stderr).not.toMatch(/@example\.com|Customer/); // no plaintext of the rows
    const audit = json<{ entries: Array<{ action: string; outcome: string }> }>(await keyctl(['audit', '--all', '--format', 'json'], { cwd: dir }));
    expect(audit.entries.filter((e) => e.action === 'recover-test').map((e) => e.outcome)).toEqual(['ok', 'failed', 'failed', 'ok']);
  });

  it('a wrong identity, a corrupted backup, another keyring and an old backup each fail, naming what failed', async () => {
    const dir = await project({ backup: '  maxAgeHours: 0.0003\n' });
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const [name] = backupsIn(dir);
    const file = path.join(dir, '.keyctl', 'backups', name!);

    const stranger = await keyctl(['recover-test', '--identity', keys.secOther], { cwd: dir });
    expect(stranger.code).toBe(ExitCode.PGP_KEY);
    expect(stranger.stderr).toContain(`identity ${keys.secOther} cannot open ${file}: it was encrypted to key ID(s)`);

    await new Promise((r) => setTimeout(r, 1500)); // older than maxAgeHours (1.08 s)
    const old = await keyctl(['recover-test', '--identity', keys.sec], { cwd: dir });
    expect(old.code).toBe(ExitCode.BACKUP);
    expect(old.stdout).toMatch(/recover-test FAILED[\s\S]*- age: .* h old \(backup\.maxAgeHours: 0\.0003\)/);

    const other = await project({ keyring: 'billing' });
    expect((await keyctl(['backup'], { cwd: other })).code).toBe(0);
    const otherFile = path.join(other, '.keyctl', 'backups', backupsIn(other)[0]!);
    const foreign = await keyctl(['recover-test', '--identity', keys.sec, '--backup', otherFile], { cwd: dir });
    expect(foreign.code).toBe(ExitCode.BACKUP);
    expect(foreign.stdout).toContain('- keyring: backup is of keyring "billing", keyctl.yaml names "default"');

    const bytes = readFileSync(file);
    const at = bytes.length - 40;
    bytes[at] = bytes[at]! ^ 0x01;
    writeFileSync(file, bytes);
    const corrupt = await keyctl(['recover-test', '--identity', keys.sec], { cwd: dir });
    expect(corrupt.code).toBe(ExitCode.BACKUP);
    expect(corrupt.stderr).toContain('failed its checksum');
  });

  it('catches a backup that lacks a version still in use by some rows', async () => {
    const dir = await project();
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const [before] = backupsIn(dir);
    // (dual-key needs a backup holding v2: backups follow the key.)
    for (const step of ['generate', 'backup', 'dual-key', 'reencrypt']) expect((await keyctl([step], { cwd: dir })).code).toBe(0);
    const r = await keyctl(['recover-test', '--identity', keys.sec, '--backup', path.join(dir, '.keyctl', 'backups', before!)], { cwd: dir });
    expect(r.code).toBe(ExitCode.BACKUP);
    expect(r.stdout).toMatch(/- versions in use: the backup lacks v2 \(120 value\(s\) in the database\)/);
    // A fresh backup has both.
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const fresh = await keyctl(['recover-test', '--identity', keys.sec], { cwd: dir });
    expect(fresh.code, fresh.stdout).toBe(0);
    expect(fresh.stdout).toContain('restores v1, v2');
  });
  it('passes over plaintext of a table being onboarded (plaintext: encrypt), and fails on it otherwise', async () => {
    const dir = await project({ rows: 10 });
    const cfg = path.join(dir, 'keyctl.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('columns: [email, phone, notes]', 'columns: [email, phone, notes]\n    plaintext: encrypt'));
    const db = new Database(path.join(dir, 'keyctl.db'));
    try {
      db.prepare("UPDATE customers SET email = 'never-encrypted@example.com' WHERE id <= 3").run();
    } finally {
      db.close();
    }
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const r = await keyctl(['recover-test', '--identity', keys.sec, '--sample', '10'], { cwd: dir });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('restores v1; 27 sampled value(s) decrypted with the recovered keys (3 plaintext value(s) not encrypted yet passed over)');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace('\n    plaintext: encrypt', ''));
    const strict = await keyctl(['recover-test', '--identity', keys.sec, '--sample', '10'], { cwd: dir });
    expect(strict.code).toBe(ExitCode.BACKUP);
    expect(strict.stdout).toContain('customers.email pk=1: malformed');
  });
});

describe('recover-test on every column shape', () => {
  it('decrypts sampled Fernet tokens, bound values, per-row-key values, binary values and blind-indexed columns with the recovered keys', async () => {
    const dir = await project({ rows: 5 });
    const cfg = path.join(dir, 'keyctl.yaml');
    writeFileSync(
      cfg,
      readFileSync(cfg, 'utf8').replace(
        'columns: [email, phone, notes]',
        [
          'columns: [email, phone, notes]',
          '  - table: tokens',
          '    columns: [secret]',
          '    codec: fernet',
          '    prefix: "FERNET_V1:"',
          '  - table: bound',
          '    columns: [secret]',
          '    aad: "{table}.{column}:{tenant_id}/{id}"',
          '    derive:',
          '      info: "{tenant_id}"',
          '    blindIndexes:',
          '      - column: secret_bidx',
          '        source: secret',
          '  - table: blobs',
          '    columns: [secret]',
        ].join('\n'),
      ),
    );
    const k1 = Buffer.from((JSON.parse(readFileSync(path.join(dir, '.keyctl', 'keyring.json'), 'utf8')) as { keys: { v1: string } }).keys.v1, 'base64');
    const fernet = new FernetCodec({ prefix: 'FERNET_V1:' });
    const spec = { aad: '{table}.{column}:{tenant_id}/{id}', derive: '{tenant_id}' };
    const bidx = new BlindIndexer('bound', 'secret');
    const db = new Database(path.join(dir, 'keyctl.db'));
    try {
      db.exec(
        'CREATE TABLE tokens (id INTEGER PRIMARY KEY, secret TEXT); CREATE TABLE bound (id INTEGER PRIMARY KEY, tenant_id INTEGER, secret TEXT, secret_bidx TEXT); CREATE TABLE blobs (id INTEGER PRIMARY KEY, secret BLOB)',
      );
      for (let id = 1; id <= 5; id++) {
        db.prepare('INSERT INTO tokens VALUES (?, ?)').run(id, fernet.encrypt(`token ${id}`, 'v1', k1));
        const row = { id, tenant_id: 7 };
        db.prepare('INSERT INTO bound VALUES (?, 7, ?, ?)').run(
          id,
          encryptForRow(`bound ${id}`, 'v1', k1, spec, row, { table: 'bound', column: 'secret' }),
          bidx.value(`bound ${id}`, 'v1', k1),
        );
        db.prepare('INSERT INTO blobs VALUES (?, ?)').run(id, encryptBinary(Buffer.from([id, 0, 0xb1]), 'v1', k1));
      }
    } finally {
      db.close();
    }
    const status = json<{ targets: Array<{ column: string; counts: object; unparseable: number }> }>(await keyctl(['status', '--json'], { cwd: dir }));
    expect(status.targets.map((t) => [t.column, t.counts, t.unparseable])).toEqual([
      ...['email', 'phone', 'notes'].map((c) => [c, { v1: 5 }, 0]),
      ...['secret', 'secret', 'secret'].map((c) => [c, { v1: 5 }, 0]),
    ]);
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const r = await keyctl(['recover-test', '--identity', keys.sec, '--sample', '10'], { cwd: dir });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('restores v1; 30 sampled value(s) decrypted with the recovered keys');
    // A bound value copied to another row does not decrypt there: recover-test names it.
    const again = new Database(path.join(dir, 'keyctl.db'));
    try {
      again.prepare('UPDATE bound SET secret = (SELECT secret FROM bound WHERE id = 1) WHERE id = 2').run();
    } finally {
      again.close();
    }
    const bad = await keyctl(['recover-test', '--identity', keys.sec, '--sample', '10'], { cwd: dir });
    expect(bad.code).toBe(ExitCode.BACKUP);
    expect(bad.stdout).toContain('bound.secret pk=2: authentication-failed');
  });
});

describe('keyctl restore', () => {
  it('brings a lost keystore back, and refuses to overwrite a different key under the same version', async () => {
    const dir = await project();
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const file = path.join(dir, '.keyctl', 'backups', backupsIn(dir)[0]!);
    const keyringFile = path.join(dir, '.keyctl', 'keyring.json');
    const original = readFileSync(keyringFile, 'utf8');
    const noTty = await keyctl(['restore', '--backup', file, '--identity', keys.sec], { cwd: dir });
    expect(noTty.code).toBe(ExitCode.USAGE);
    expect(noTty.stderr).toContain('pass --yes');

    rmSync(keyringFile);
    const r = await keyctl(['restore', '--backup', file, '--identity', keys.sec, '--yes'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('restored v1 into the keystore');
    expect(JSON.parse(readFileSync(keyringFile, 'utf8'))).toEqual(JSON.parse(original));
    expect(statSync(keyringFile).mode & 0o777).toBe(0o600);
    expect((await keyctl(['verify'], { cwd: dir })).code).toBe(0);

    const doc = JSON.parse(original) as { keys: Record<string, string> };
    doc.keys.v1 = Buffer.alloc(32, 7).toString('base64');
    writeFileSync(keyringFile, JSON.stringify(doc), { mode: 0o600 });
    const clash = await keyctl(['restore', '--backup', file, '--identity', keys.sec, '--yes'], { cwd: dir });
    expect(clash.code).not.toBe(0);
    expect(clash.stderr).toMatch(/v1/);
    expect(JSON.parse(readFileSync(keyringFile, 'utf8'))).toEqual(doc);
  });
});

describe('backups follow the key', () => {
  it('3. with backup recipients set, dual-key refuses until a backup holds the new key; the emergency path too', async () => {
    const dir = await project();
    const run = (...args: string[]) => keyctl(args, { cwd: dir, env: { KEYCTL_ACTOR: 'op@test' } });
    // An old backup (holding v1 only) does not count.
    expect((await run('backup')).code).toBe(0);
    expect((await run('generate')).code).toBe(0);
    const refused = await run('dual-key');
    expect(refused.code).toBe(ExitCode.REFUSED);
    expect(refused.stderr).toContain('no backup holds v2 yet');
    expect(refused.stderr).toContain('keyctl backup');
    expect((await run('backup')).code).toBe(0);
    // A backup whose file was damaged afterwards does not count either.
    const newest = path.join(dir, '.keyctl', 'backups', backupsIn(dir).at(-1)!);
    appendFileSync(newest, 'x');
    expect((await run('dual-key')).code).toBe(ExitCode.REFUSED);
    expect((await run('backup')).code).toBe(0);
    const ok = await run('dual-key', '--json');
    expect(ok.code, ok.stderr).toBe(0);

    // The emergency runbook backs the new key up before dual-key.
    const dir2 = await project();
    const r = await keyctl(['runbook', 'run', 'emergency-rotation', '--yes', '--set', 'incident=INC-3', '--set', 'compromised=v1', '--set', 'reason=leak'], {
      cwd: dir2,
    });
    expect(r.code).toBe(ExitCode.REFUSED); // stops at the deploy confirmation (a person)
    expect(r.stderr).toMatch(/✓ backup-new-key/);
    const backups = backupsIn(dir2);
    expect(backups).toHaveLength(1);
    expect(
      (JSON.parse(gpg(['--decrypt', path.join(dir2, '.keyctl', 'backups', backups[0]!)])) as { keys: Array<{ version: string }> }).keys.map((k) => k.version),
    ).toEqual(['v1', 'v2']);
  });
});

describe('retired keys outlive the database backups that need them', () => {
  it('4. under the default policy retire keeps the old key (archived, in every key backup, the pruning rule is in test/unit) and status says until when', async () => {
    const dir = await project();
    const cfg = path.join(dir, 'keyctl.yaml');
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace(/rollbackWindowDays: \d+/, 'rollbackWindowDays: 0'));
    const run = (...args: string[]) => keyctl(args, { cwd: dir, env: { KEYCTL_ACTOR: 'op@test' } });
    expect((await run('generate')).code).toBe(0);
    expect((await run('backup')).code).toBe(0);
    for (const step of ['dual-key', 'reencrypt', 'verify', 'promote', 'retire']) expect((await run(step)).code, step).toBe(0);
    const status = json<{ versions: Array<{ version: string; state: string; material: string; destroyAfter?: string | null }> }>(await run('status', '--json'));
    const v1 = status.versions.find((v) => v.version === 'v1')!;
    expect(v1).toMatchObject({ state: 'retired', material: 'present' });
    expect(new Date(v1.destroyAfter!).getTime() - Date.now()).toBeGreaterThan(399 * 86_400_000);
    expect((await run('status')).stdout).toMatch(/v1 +│ retired.*archived until \d{4}-\d{2}-\d{2}, then `keyctl purge`/);
    const archive = JSON.parse(readFileSync(path.join(dir, '.keyctl', 'keyring.archive.json'), 'utf8')) as { keys: Record<string, { status: string }> };
    expect(archive.keys.v1?.status).toBe('retired');

    // New key backups still hold v1, so an old database backup can be read after a keystore loss.
    expect((await run('backup')).code).toBe(0);
    const newest = backupsIn(dir).at(-1)!;
    const doc = JSON.parse(gpg(['--decrypt', path.join(dir, '.keyctl', 'backups', newest)])) as { keys: Array<{ version: string; state: string }> };
    expect(doc.keys.map((k) => `${k.version}:${k.state}`)).toEqual(['v1:retired', 'v2:primary']);
    // Nothing is due for destruction yet.
    const dry = json<{ due: string[]; kept: Array<{ version: string }> }>(await run('purge', '--dry-run', '--json'));
    expect(dry).toMatchObject({ due: [], kept: [{ version: 'v1' }] });
    expect((await run('purge')).code).toBe(0);
    expect(JSON.parse(readFileSync(path.join(dir, '.keyctl', 'keyring.archive.json'), 'utf8')).keys.v1).toBeDefined();
  });
});

describe('keyctl restore of a forged backup', () => {
  it('5. refuses a version the registry does not know (an added v5), writes nothing, audits the refusal; --allow-unknown --reason is explicit', async () => {
    const dir = await project();
    expect((await keyctl(['backup'], { cwd: dir })).code).toBe(0);
    const name = backupsIn(dir)[0]!;
    const file = path.join(dir, '.keyctl', 'backups', name);
    // Someone re-encrypts the backup with an added v5 (and its correct fingerprint).
    const doc = JSON.parse(gpg(['--decrypt', file])) as { keys: Array<Record<string, unknown>> };
    const rogue = Buffer.alloc(32, 5);
    doc.keys.push({ ...doc.keys[0], version: 'v5', key: rogue.toString('base64'), fingerprint: fingerprint(rogue), state: 'decrypt-only' });
    const forged = path.join(dir, '.keyctl', 'backups', name.replace('.gpg', '1.gpg'));
    execFileSync('gpg', ['--batch', '--quiet', '--trust-model', 'always', '--recipient', 'backup@example.com', '--output', forged, '--encrypt'], {
      env: { ...process.env, GNUPGHOME: home.dir },
      input: JSON.stringify(doc),
    });
    writeFileSync(`${forged}.sha256`, `${execFileSync('sha256sum', [forged], { encoding: 'utf8' }).split(' ')[0]}  ${path.basename(forged)}\n`);
    const keyringFile = path.join(dir, '.keyctl', 'keyring.json');
    const before = readFileSync(keyringFile, 'utf8');

    const r = await keyctl(['restore', '--backup', forged, '--identity', keys.sec, '--yes'], { cwd: dir });
    expect(r.code).toBe(ExitCode.REFUSED);
    expect(r.stderr).toMatch(/holds v5 \(fingerprint [0-9a-f]{16}\), which the database registry does not know/);
    expect(readFileSync(keyringFile, 'utf8')).toBe(before);
    const audit = json<{ entries: Array<{ action: string; outcome: string }> }>(await keyctl(['audit', '--all', '--format', 'json'], { cwd: dir })).entries;
    expect(audit.filter((e) => e.action === 'restore').map((e) => e.outcome)).toEqual(['refused']);

    expect((await keyctl(['restore', '--backup', forged, '--identity', keys.sec, '--yes', '--allow-unknown'], { cwd: dir })).code).toBe(ExitCode.USAGE);
    const allowed = await keyctl(
      ['restore', '--backup', forged, '--identity', keys.sec, '--yes', '--allow-unknown', '--reason', 'v5 is the key from the old cluster, CHG-9'],
      { cwd: dir },
    );
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(Object.keys((JSON.parse(readFileSync(keyringFile, 'utf8')) as { keys: Record<string, string> }).keys)).toContain('v5');
  });
});

describe('the key-recovery-test runbook', () => {
  it("from cron (--yes, no terminal): backup, recover-test against it, one evidence line; then routine-rotation's checks pass", async () => {
    const dir = await project();
    const r = await keyctl(['runbook', 'run', 'key-recovery-test', '--yes', '--set', `identity=${keys.sec}`], { cwd: dir, env: { KEYCTL_ACTOR: 'cron@ops' } });
    expect(r.code, r.stderr).toBe(0);
    const [name] = backupsIn(dir);
    const sha = readFileSync(path.join(dir, '.keyctl', 'backups', `${name}.sha256`), 'utf8').split(' ')[0];
    expect(r.stdout.trim().split('\n').at(-1)).toMatch(
      new RegExp(
        `^KEY-RECOVERY-TEST PASS keyring=default at=\\S+Z backup=${name!.replace(/\./g, '\\.')} sha256=${sha} versions=v1 actor=cron@ops audit_id=\\d+$`,
      ),
    );
    const steps = json<{ entries: Array<{ action: string; outcome: string; details: Record<string, unknown> }> }>(
      await keyctl(['audit', '--all', '--format', 'json'], { cwd: dir }),
    )
      .entries.filter((e) => e.action === 'runbook-step')
      .map((e) => `${String(e.details.step)}:${e.outcome}`);
    expect(steps).toEqual(['keystore-reachable:ok', 'backup:ok', 'recover-test:ok']);

    // The routine rotation's preflight now finds a fresh backup and a recent recovery test.
    const plan = await keyctl(['runbook', 'run', 'routine-rotation', '--yes'], { cwd: dir });
    expect(plan.stderr).toMatch(/✓ backup-fresh: keyctl-backup-default-\S+\.gpg \(0\.\d h old\)/);
    expect(plan.stderr).toMatch(/✓ recover-test-recent: passed \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ by \S+/);
    expect(plan.code).toBe(ExitCode.REFUSED); // stops at the first confirm step (deploy), after generate
    expect(plan.stderr).toContain('step deploy needs a person to confirm');
  });
});
