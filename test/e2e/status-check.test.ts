/**
 * `status --check`, the monitoring exit code: every unsafe state of issue 16 is a problem with a
 * stable code (text line, `--json` entry, exit 4), and a healthy project has none. On the embedded
 * default (SQLite); rows are aged in the database, or the clock is moved by calling the core
 * status with a later `now`.
 */
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { generateKey as generatePgpKey } from 'openpgp';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { backupName } from '../../src/backup/files.js';
import { loadConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/core/context.js';
import { getStatus } from '../../src/core/status.js';
import { generateKey } from '../../src/crypto/keys.js';
import { openDatabase } from '../../src/db/connect.js';
import { openKeystore } from '../../src/keystore/index.js';
import { json, type RunResult } from '../helpers/cli.js';
import { demoProject } from '../helpers/project.js';

interface Problem {
  code: string;
  message: string;
  hint: string;
}
interface CheckJson {
  ok: boolean;
  problems: Problem[];
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function sqlite(dir: string): Knex {
  return knexFactory({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'keyctl.db') }, useNullAsDefault: true });
}

async function withDb(dir: string, fn: (k: Knex) => Promise<unknown>): Promise<void> {
  const k = sqlite(dir);
  try {
    await fn(k);
  } finally {
    await k.destroy();
  }
}

const ago = (ms: number) => new Date(Date.now() - ms).toISOString();

/** `status --check --json` and `status --check` (text): exit code, the problem codes, and the text lines. */
async function check(
  run: (...a: string[]) => Promise<RunResult>,
): Promise<{ code: number | null; codes: string[]; problems: Problem[]; text: RunResult; ok: boolean }> {
  const j = await run('status', '--check', '--json');
  const parsed = json<CheckJson>(j);
  const text = await run('status', '--check');
  expect(text.code).toBe(j.code);
  return { code: j.code, codes: parsed.problems.map((p) => p.code).sort(), problems: parsed.problems, text, ok: parsed.ok };
}

/** The core status of the project in `dir` as seen at `now` (the machine's clock, moved). */
async function problemsAt(dir: string, now: Date): Promise<string[]> {
  const config = loadConfig({ cwd: dir, env: {} });
  const db = await openDatabase(config.database, { baseDir: config.baseDir, mustExist: true });
  try {
    const report = await getStatus({ config, db, keystore: openKeystore(config, {}), now: () => now, actor: 'monitor@test', log: silentLogger });
    return report.problems.map((p) => p.code).sort();
  } finally {
    await db.close();
  }
}

describe('status --check', () => {
  it('passes on a healthy project: exit 0, "ok": true, no problems', async () => {
    const { run } = await demoProject(dirs, 10);
    const r = await check(run);
    expect(r.code).toBe(0);
    expect(r.ok).toBe(true);
    expect(r.problems).toEqual([]);
  });

  it('keeps the problems it found before, now with codes and hints', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    await withDb(dir, (k) => k('customers').where('id', '<=', 3).update({ notes: 'not encrypted' }));
    const r = await check(run);
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([{ code: 'unparseable-values', message: 'customers.notes: 3 unparseable value(s)', hint: expect.any(String) }]);
    expect(r.text.stderr).toContain('customers.notes: 3 unparseable value(s)');
  });

  it('flags a key the registry does not know, planted as primary in the keyring file', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    const file = path.join(dir, '.keyctl', 'keyring.json');
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { primary: string; keys: Record<string, string> };
    doc.keys.v2 = generateKey().toString('base64');
    doc.primary = 'v2';
    writeFileSync(file, JSON.stringify(doc), { mode: 0o600 });
    const r = await check(run);
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.codes).toEqual(['key-not-in-registry', 'primary-mismatch']);
    expect(r.problems.find((p) => p.code === 'key-not-in-registry')?.message).toContain('v2');
    expect(r.text.stderr).toMatch(/check failed \[key-not-in-registry\]: .*v2/);
    expect(r.text.stderr).toMatch(/check failed \[primary-mismatch\]: /);
  });

  it('flags a compromised key left primary by an emergency rotation that was abandoned', async () => {
    const { run } = await demoProject(dirs, 10);
    expect((await run('generate', '--emergency', '--reason', 'leaked in a log')).code).toBe(0);
    // While the emergency rotation is open and young, the compromised key being primary is expected.
    expect((await check(run)).codes).toEqual([]);
    const abandon = await run('rollback', '--force', '--reason', 'wrong key named');
    expect(abandon.code, abandon.stderr).toBe(0);
    const r = await check(run);
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.codes).toEqual(['compromised-key-in-use']);
    expect(r.problems[0]!.message).toContain('v1');
    expect(r.problems[0]!.hint).toContain('generate --emergency');
  });

  it('flags a compromised key primary again after an emergency rotation was rolled back', async () => {
    const { run } = await demoProject(dirs, 10);
    for (const step of [['generate', '--emergency', '--reason', 'leaked'], ['dual-key'], ['reencrypt'], ['verify']]) {
      const s = await run(...step);
      expect(s.code, `${step.join(' ')}: ${s.stderr}`).toBe(0);
    }
    const back = await run('rollback', '--force', '--reason', 'the new key is wrong');
    expect(back.code, back.stderr).toBe(0);
    const rest = await run('reencrypt');
    expect(rest.code, rest.stderr).toBe(0);
    await run('verify');
    const r = await check(run);
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.codes).toContain('compromised-key-in-use');
  });

  it('flags a rotation stalled in one phase past policy.maxPhaseHours', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    expect((await run('generate')).code).toBe(0);
    expect((await run('dual-key')).code).toBe(0);
    expect((await check(run)).codes).toEqual([]);
    await withDb(dir, (k) => k('keyctl_rotations').update({ phase_changed_at: ago(4 * DAY) }));
    const r = await check(run);
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.codes).toEqual(['rotation-stalled']);
    expect(r.problems[0]!.message).toMatch(/dual_key/);
    expect(r.problems[0]!.hint).toContain('keyctl reencrypt');
    // The clock moved instead of the row: the same finding.
    await withDb(dir, (k) => k('keyctl_rotations').update({ phase_changed_at: ago(0) }));
    expect(await problemsAt(dir, new Date(Date.now() + 71 * HOUR))).toEqual([]);
    expect(await problemsAt(dir, new Date(Date.now() + 73 * HOUR))).toEqual(['rotation-stalled']);
  });

  it('flags a promoted rotation past the rollback window plus policy.retireGraceDays', async () => {
    const { dir, run } = await demoProject(dirs, 10, { rollbackWindowDays: '2' });
    for (const step of ['generate', 'dual-key', 'reencrypt', 'verify', 'promote']) expect((await run(step)).code, step).toBe(0);
    expect((await check(run)).codes).toEqual([]);
    // Inside window + grace (2 + 7 days) nothing is stalled, even though the phase is older than maxPhaseHours.
    expect(await problemsAt(dir, new Date(Date.now() + 8 * DAY))).toEqual([]);
    expect(await problemsAt(dir, new Date(Date.now() + 10 * DAY))).toEqual(['rotation-stalled']);
    await withDb(dir, (k) => k('keyctl_rotations').update({ rollback_deadline: ago(8 * DAY) }));
    const r = await check(run);
    expect(r.codes).toEqual(['rotation-stalled']);
    expect(r.problems[0]!.hint).toContain('keyctl retire');
  });

  it('flags an emergency rotation not finished within policy.emergencyMaxHours (default 24)', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    expect((await run('generate', '--emergency', '--reason', 'leaked')).code).toBe(0);
    expect(await problemsAt(dir, new Date(Date.now() + 23 * HOUR))).toEqual([]);
    expect(await problemsAt(dir, new Date(Date.now() + 25 * HOUR))).toEqual(['emergency-overdue']);
    await withDb(dir, (k) => k('keyctl_rotations').update({ opened_at: ago(25 * HOUR), phase_changed_at: ago(25 * HOUR) }));
    const r = await check(run);
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.codes).toEqual(['emergency-overdue']);
    expect(r.problems[0]!.message).toContain('24 h');
  });

  it('flags a stale or missing backup and no recent recovery test, when backups are configured', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    const pgp = await generatePgpKey({ userIDs: [{ email: 'backup@example.com' }], type: 'ecc', curve: 'curve25519Legacy', format: 'armored' });
    writeFileSync(path.join(dir, 'backup.pub.asc'), pgp.publicKey);
    writeFileSync(path.join(dir, 'backup.sec.asc'), pgp.privateKey);
    writeFileSync(path.join(dir, 'keyctl.yaml'), `${readFileSync(path.join(dir, 'keyctl.yaml'), 'utf8')}backup:\n  recipients: [backup.pub.asc]\n`);
    const none = await check(run);
    expect(none.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(none.codes).toEqual(['backup-stale', 'recover-test-stale']);
    expect(none.problems.find((p) => p.code === 'backup-stale')!.hint).toContain('keyctl backup');
    expect(none.problems.find((p) => p.code === 'recover-test-stale')!.hint).toContain('keyctl recover-test');

    expect((await run('backup')).code).toBe(0);
    expect((await check(run)).codes).toEqual(['recover-test-stale']);
    const rt = await run('recover-test', '--identity', 'backup.sec.asc');
    expect(rt.code, rt.stderr).toBe(0);
    expect((await check(run)).code).toBe(0);

    // Time passes: backup.maxAgeHours (26) first, then backup.recoverTestMaxAgeDays (35).
    expect(await problemsAt(dir, new Date(Date.now() + 27 * HOUR))).toEqual(['backup-stale']);
    expect(await problemsAt(dir, new Date(Date.now() + 36 * DAY))).toEqual(['backup-stale', 'recover-test-stale']);

    // The newest backup file, renamed as if written 30 hours ago.
    const backups = path.join(dir, '.keyctl', 'backups');
    const file = readdirSync(backups).find((n) => n.endsWith('.gpg'))!;
    const old = backupName('default', new Date(Date.now() - 30 * HOUR));
    renameSync(path.join(backups, file), path.join(backups, old));
    const r = await check(run);
    expect(r.codes).toEqual(['backup-stale']);
    expect(r.problems[0]!.message).toContain('backup.maxAgeHours');
  });

  it('flags a registry edited outside keyctl and an audit chain that does not verify', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    expect((await run('generate')).code).toBe(0);
    await withDb(dir, (k) => k('keyctl_key_versions').where({ version: 'v1' }).update({ compromised: false, state: 'archived' }));
    const reg = await check(run);
    expect(reg.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(reg.codes).toContain('registry-tampered');
    expect(reg.codes).not.toContain('audit-chain-broken');

    const { dir: dir2, run: run2 } = await demoProject(dirs, 10);
    expect((await run2('generate')).code).toBe(0);
    await withDb(dir2, (k) => k('rotation_audit').where({ seq: 1 }).update({ actor: 'someone-else@test' }));
    const chain = await check(run2);
    expect(chain.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(chain.codes).toEqual(['audit-chain-broken']);
    expect(chain.problems[0]!.hint).toContain('keyctl audit --verify');
  });

  it('reports a dropped audit table as a problem instead of failing', async () => {
    const { dir, run } = await demoProject(dirs, 10);
    await withDb(dir, (k) => k.raw('DROP TABLE rotation_audit'));
    const r = await check(run);
    expect(r.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(r.codes).toEqual(['audit-chain-broken']);
    expect(r.problems[0]!.message).toContain('rotation_audit');
  });
});
