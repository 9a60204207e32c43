/**
 * No key is destroyed while data or backups still need it: the repros of the destruction-safety
 * issue, through the built binary, as an attacker with database access or a careless operator
 * would try them.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { ExitCode } from '../../src/base/exit-codes.js';
import { demoProject, keysHeld } from '../helpers/project.js';
import { json, keyctl, KEYCTL_BIN, withProjectSqlite } from '../helpers/cli.js';
import { dialectAvailable, perTestDatabase } from '../helpers/databases.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const codec = new AesGcmV1Codec();

/** Values (every column) that no held key decrypts. */
async function unreadable(dir: string): Promise<number> {
  const keys = keysHeld(dir);
  const rows = await withProjectSqlite(dir, (k) => k('customers').select<Array<Record<string, string | null>>>('email', 'phone', 'notes'));
  let bad = 0;
  for (const r of rows) {
    for (const v of Object.values(r)) {
      if (v === null) continue;
      const version = v.split(':')[0]!;
      try {
        codec.decrypt(v, () => keys.get(version));
      } catch {
        bad++;
      }
    }
  }
  return bad;
}

describe('the keystore never loses a key because the database says so', () => {
  const tamper = (dir: string) =>
    withProjectSqlite(dir, (k) => k('keyctl_key_versions').where({ version: 'v1' }).update({ state: 'retired', material: 'destroyed' }));

  it('1. a direct UPDATE of the registry (v1 retired, destroyed) is refused by reencrypt, detected by audit --verify, and v1 stays', async () => {
    const { dir, run } = await demoProject(dirs, 100);
    for (const step of ['generate', 'dual-key']) expect((await run(step)).code, step).toBe(0);
    await tamper(dir);
    const re = await run('reencrypt');
    expect(re.code).toBe(ExitCode.REFUSED);
    expect(re.stderr).toContain('keyctl_key_versions of keyring default was changed outside keyctl');
    expect([...keysHeld(dir).keys()].sort()).toEqual(['v1', 'v2']);
    expect(await unreadable(dir)).toBe(0);
    const v = await run('audit', '--verify');
    expect(v.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(v.stderr + v.stdout).toContain('the registry was changed outside keyctl');
    // Every command that acts on the registry refuses; the refusal is in the audit.
    for (const cmd of ['verify', 'promote', 'retire', 'rollback', 'dual-key']) expect((await run(cmd)).code, cmd).toBe(ExitCode.REFUSED);
    const audit = json<{ entries: Array<{ action: string; outcome: string }> }>(await run('audit', '--all', '--format', 'json')).entries;
    expect(audit.filter((e) => e.action === 'integrity' && e.outcome === 'refused').length).toBeGreaterThanOrEqual(1);
    expect([...keysHeld(dir).keys()].sort()).toEqual(['v1', 'v2']);
  });

  it('1b. after promote, the same UPDATE followed by verify leaves the archived v1 in place inside the rollback window', async () => {
    const { dir, run } = await demoProject(dirs, 60);
    for (const step of ['generate', 'dual-key', 'reencrypt', 'verify', 'promote']) expect((await run(step)).code, step).toBe(0);
    await tamper(dir);
    expect((await run('verify')).code).toBe(ExitCode.REFUSED);
    expect([...keysHeld(dir).keys()].sort()).toEqual(['v1', 'v2']);
    // Put the row back: keyctl works again, and rollback inside the window still has v1.
    await withProjectSqlite(dir, (k) => k('keyctl_key_versions').where({ version: 'v1' }).update({ state: 'archived', material: 'present' }));
    expect((await run('audit', '--verify')).code).toBe(0);
    expect((await run('rollback', '--reason', 'check v1 is there')).code).toBe(0);
  });
});

describe('an emptied registry is not rebuilt from the keystore', () => {
  it('1c. DELETE FROM keyctl_key_versions during an emergency rotation: refused, the compromised flag is not lost', async () => {
    const { dir, run } = await demoProject(dirs, 30);
    for (const step of [['generate', '--emergency', '--reason', 'INC-1'], ['dual-key'], ['reencrypt']])
      expect((await run(...step)).code, step.join(' ')).toBe(0);
    await withProjectSqlite(dir, (k) => k('keyctl_key_versions').delete());
    for (const cmd of [['status'], ['rollback', '--reason', 'x'], ['verify']]) {
      const r = await run(...cmd);
      expect(r.code, cmd.join(' ')).toBe(ExitCode.REFUSED);
      expect(r.stderr).toContain('the registry was emptied outside keyctl');
    }
    expect(await withProjectSqlite(dir, (k) => k('keyctl_key_versions').count({ n: '*' }))).toEqual([{ n: 0 }]);
  });
});

describe('the file keystore: compare-and-set under a lock, no key left in temp files', () => {
  it('6. a writer killed between writing its temp file and renaming it leaves no key behind after the next run', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    // What a kill -9 inside writeFileAtomic leaves: a temp file holding a keyring, named after a dead pid.
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid!;
    const leftover = path.join(dir, '.keyctl', `.keyring.json.${dead}.0123456789ab.tmp`);
    const archiveLeftover = path.join(dir, '.keyctl', `.keyring.archive.json.${dead}.0123456789ab.tmp`);
    writeFileSync(leftover, readFileSync(path.join(dir, '.keyctl/keyring.json')), { mode: 0o600 });
    writeFileSync(archiveLeftover, '{"keyring":"default","keys":{}}', { mode: 0o600 });
    expect((await run('status')).code).toBe(0);
    expect(readdirSync(path.join(dir, '.keyctl')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('6b. kill -9 during keystore writes: whatever it leaves, the next command removes every temp file and the keyring is whole', async () => {
    const { dir, run } = await demoProject(dirs, 50);
    expect((await run('generate')).code).toBe(0);
    for (let i = 0; i < 3; i++) {
      // Kill the command at varying points while it writes the keystore (dual-key, then rollback).
      const cmd = i % 2 === 0 ? 'dual-key' : 'rollback';
      const child = spawn(process.execPath, [KEYCTL_BIN, cmd, '--reason', 'chaos'], { cwd: dir, stdio: 'ignore' });
      const closed = new Promise((r) => child.on('close', r));
      await new Promise((r) => setTimeout(r, 150 + 60 * i));
      child.kill('SIGKILL');
      await closed;
      await run('status');
      expect(readdirSync(path.join(dir, '.keyctl')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
      expect(await unreadable(dir)).toBe(0);
    }
  });
});

describe.runIf(dialectAvailable('pg') && spawnSync('strace', ['-V']).status === 0)('two generates racing on PostgreSQL with the file keystore', () => {
  const t = perTestDatabase('pg');

  it('2. one wins, the other is refused, and every command works afterwards (the keyring is consistent)', { timeout: 120_000 }, async () => {
    const dir = t.db.dir;
    writeFileSync(
      path.join(dir, 'keyctl.yaml'),
      `database:\n  client: pg\n  connection: ${JSON.stringify(t.db.connection)}\nkeystore:\n  provider: file\n  path: .keyctl/keyring.json\nkeyring: default\n` +
        `targets:\n  - table: customers\n    primaryKey: id\n    columns: [email, phone, notes]\npolicy:\n  minPropagationSeconds: 0\n`,
    );
    const run = (...args: string[]) => keyctl(args, { cwd: dir, env: { KEYCTL_ACTOR: 'op@test' } });
    expect((await run('init', '--existing-config', '--demo', '--rows', '20')).code).toBe(0);

    // The first generate's keystore write is slowed down (every fsync waits 4 s) …
    const slow = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'inject=fsync:delay_enter=4000000', process.execPath, KEYCTL_BIN, 'generate'], {
      cwd: dir,
      env: { ...process.env, KEYCTL_ACTOR: 'slow@test' },
    });
    let slowErr = '';
    slow.stderr.on('data', (d: Buffer) => (slowErr += d.toString()));
    const slowDone = new Promise<number | null>((r) => slow.on('close', r));
    // … and a second generate starts while the first rotation row is still `generating`.
    const knex = (await import('knex')).default({ client: 'pg', connection: t.db.connection });
    try {
      for (let i = 0; i < 200; i++) {
        const row = await knex('keyctl_rotations').first('phase');
        if (row?.phase === 'generating') break;
        await new Promise((r) => setTimeout(r, 25));
      }
      expect((await knex('keyctl_rotations').first('phase'))?.phase).toBe('generating');
    } finally {
      await knex.destroy();
    }
    const fast = await run('generate');
    const slowCode = await slowDone;
    const codes = [slowCode, fast.code].sort();
    expect(codes, `slow: ${slowErr}\nfast: ${fast.stderr}`).toContain(0);
    expect(
      codes.filter((c) => c === 0),
      `both succeeded\nslow: ${slowErr}\nfast: ${fast.stderr}`,
    ).toHaveLength(1);
    // The loser said why (keystore changed meanwhile, or another operator got there first).
    const loser = slowCode === 0 ? fast.stderr : slowErr;
    expect(loser).toMatch(/changed by someone else|got there first|another rotation/);

    // The keyring and the registry agree: every command works, including rollback.
    const status = await run('status', '--json');
    expect(status.code, status.stderr).toBe(0);
    expect(json<{ rotation: { phase: string } }>(status).rotation.phase).toBe('generated');
    expect((await run('dual-key')).code).toBe(0);
    const rb = await run('rollback', '--reason', 'race test');
    expect(rb.code, rb.stderr).toBe(0);
  });
});
