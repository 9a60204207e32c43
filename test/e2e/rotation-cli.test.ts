/** The rotation commands through the built binary: exit codes, JSON, signals, the README demo. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, keyctl, keyctlInProcess, withProjectSqlite, KEYCTL_BIN } from '../helpers/cli.js';

function tmpdir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'keyctl-e2e-rot-'));
}

describe('rotation through the CLI (SQLite + file keystore)', () => {
  it('runs the cycle with --json, refuses out-of-order steps with exit 3, and keeps an intact audit chain', async () => {
    const dir = tmpdir();
    const run = (...args: string[]) => keyctlInProcess(args, { cwd: dir, env: { KEYCTL_ACTOR: 'e2e@test' } });
    expect((await run('init', '--demo', '--rows', '500')).code).toBe(0);

    const early = await run('promote');
    expect(early.code).toBe(ExitCode.REFUSED);
    expect(early.stderr).toContain('no rotation is open');
    expect(early.stderr).toContain('keyctl generate');

    const g = await run('generate', '--json');
    expect(g.code, g.stderr).toBe(0);
    expect(json(g)).toMatchObject({ ok: true, newVersion: 'v2', rotation: { phase: 'generated' } });

    const wrong = await run('verify');
    expect(wrong.code).toBe(ExitCode.REFUSED);
    expect(wrong.stderr).toMatch(/next: `keyctl dual-key`/);

    expect((await run('dual-key')).code).toBe(0);
    const re = await run('reencrypt', '--batch-size', '120', '--json');
    expect(re.code, re.stderr).toBe(0);
    expect(json(re)).toMatchObject({ remaining: 0, rotation: { phase: 'reencrypted' } });
    expect(json<{ tables: Array<{ rowsScanned: number }> }>(re).tables[0]!.rowsScanned).toBe(500);

    const v = await run('verify', '--json');
    expect(v.code).toBe(0);
    expect(json(v)).toMatchObject({ passed: true, byVersion: { v2: 1500 }, checked: { v2: 1500 } });
    expect((await run('promote')).code).toBe(0);
    const ret = await run('retire');
    expect(ret.code).toBe(ExitCode.REFUSED);
    expect(ret.stderr).toContain('--force --reason');
    expect((await run('retire', '--force', '--reason', 'e2e')).code).toBe(0);

    const status = json<{ primary: string; rotation: unknown; targets: Array<{ counts: Record<string, number> }> }>(await run('status', '--json'));
    expect(status.primary).toBe('v2');
    expect(status.rotation).toBeNull();
    expect(status.targets.map((t) => t.counts)).toEqual([{ v2: 500 }, { v2: 500 }, { v2: 500 }]);

    const audit = await run('audit', '--format', 'json');
    const entries = json<{ entries: Array<{ action: string; outcome: string; actor: string }> }>(audit).entries;
    expect(entries.map((e) => `${e.action}:${e.outcome}`)).toEqual([
      'generate:ok',
      'verify:refused',
      'dual-key:ok',
      'reencrypt-start:ok',
      'reencrypt:ok',
      'verify:ok',
      'promote:ok',
      'retire:refused',
      'retire:ok',
    ]);
    expect(new Set(entries.map((e) => e.actor))).toEqual(new Set(['e2e@test']));
    const md = await run('audit', '--format', 'markdown');
    expect(md.stdout).toMatch(/^## Rotation #1 of keyring default/);
    expect(md.stdout).toContain('| generate |');

    expect((await run('audit', '--verify')).code).toBe(0);
    await withProjectSqlite(dir, (k) => k('rotation_audit').where({ action: 'promote' }).update({ actor: 'someone-else' }));
    const broken = await run('audit', '--verify');
    expect(broken.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(broken.stdout).toContain('was edited');
  });

  it('reencrypt lists values it cannot decrypt (never their content) and exits 4', async () => {
    const dir = tmpdir();
    const run = (...args: string[]) => keyctlInProcess(args, { cwd: dir });
    expect((await run('init', '--demo', '--rows', '50')).code).toBe(0);
    await withProjectSqlite(dir, (k) => k('customers').where({ id: 7 }).update({ notes: 'secret plain text' }));
    await run('generate');
    await run('dual-key');
    const dry = await run('reencrypt', '--dry-run');
    expect(dry.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(dry.stdout).toContain('customers.notes pk=7: malformed');
    const re = await run('reencrypt');
    expect(re.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(re.stdout + re.stderr).not.toContain('secret plain text');
    expect(re.stdout).toContain('cannot be decrypted');
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal} finishes the batch, prints how to resume, exits 7; the same command then completes`, async () => {
      const dir = tmpdir();
      expect((await keyctlInProcess(['init', '--demo', '--rows', '20000'], { cwd: dir })).code).toBe(0);
      await keyctlInProcess(['generate'], { cwd: dir });
      await keyctlInProcess(['dual-key'], { cwd: dir });
      const child = spawn(process.execPath, [KEYCTL_BIN, 'reencrypt', '--batch-size', '50'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      let signalled = false;
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (!signalled && / rewritten, /.test(stderr)) {
          signalled = true;
          child.kill(signal);
        }
      });
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(signalled).toBe(true);
      expect(code).toBe(ExitCode.INTERRUPTED);
      expect(stdout).toContain('resume with: keyctl reencrypt --batch-size 50');
      const mid = json<{ targets: Array<{ counts: Record<string, number> }> }>(await keyctlInProcess(['status', '--json'], { cwd: dir }));
      expect(mid.targets[0]!.counts.v2).toBeGreaterThan(0);
      expect(mid.targets[0]!.counts.v1).toBeGreaterThan(0);
      const resumed = await keyctlInProcess(['reencrypt', '--batch-size', '2000'], { cwd: dir });
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout).toContain('resumed after pk');
      expect((await keyctlInProcess(['verify'], { cwd: dir })).code).toBe(0);
    });
  }

  it("the README's demo (npm run demo) runs a whole rotation", async () => {
    const script = fileURLToPath(new URL('../../scripts/demo.sh', import.meta.url));
    const dir = tmpdir();
    const code = await new Promise<number | null>((resolve) => spawn('bash', [script, dir], { stdio: 'ignore' }).on('close', resolve));
    expect(code).toBe(0);
    const s = json<{ primary: string; targets: Array<{ counts: Record<string, number> }> }>(await keyctlInProcess(['status', '--json'], { cwd: dir }));
    expect(s.primary).toBe('v2');
    expect(s.targets.map((t) => t.counts)).toEqual([{ v2: 1000 }, { v2: 1000 }, { v2: 1000 }]);
  });
});

const hasScript = spawnSync('script', ['--version']).status === 0;

describe.skipIf(!hasScript)('reencrypt in a terminal', () => {
  // Regression: in a pty that reports no width, the spinner cleared "wrapped" lines forever.
  it('finishes under a pseudo-terminal without a window size', async () => {
    const dir = tmpdir();
    expect((await keyctlInProcess(['init', '--demo', '--rows', '3000'], { cwd: dir })).code).toBe(0);
    await keyctlInProcess(['generate'], { cwd: dir });
    await keyctlInProcess(['dual-key'], { cwd: dir });
    const r = spawnSync('script', ['-qec', `${process.execPath} ${KEYCTL_BIN} reencrypt --batch-size 100`, '/dev/null'], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('every value is under v2');
  });
});

describe('reencrypt throttling through the CLI', () => {
  it('pauses while the pause file exists, says so in the log, and finishes once it is removed', async () => {
    const dir = tmpdir();
    expect((await keyctlInProcess(['init', '--demo', '--rows', '3000'], { cwd: dir })).code).toBe(0);
    await keyctlInProcess(['generate'], { cwd: dir });
    await keyctlInProcess(['dual-key'], { cwd: dir });
    const pause = path.join(dir, 'PAUSE');
    writeFileSync(pause, '');
    const child = spawn(process.execPath, [KEYCTL_BIN, 'reencrypt', '--batch-size', '100', '--pause-file', 'PAUSE'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/paused: remove .*PAUSE to resume/.test(stderr) && existsSync(pause)) setTimeout(() => rmSync(pause, { force: true }), 1500);
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toMatch(/paused: remove .*PAUSE to resume/);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('every value is under v2');
    // Paused after the first batch: the rest waited for the file to go.
    const status = json<{ targets: Array<{ counts: Record<string, number> }> }>(await keyctlInProcess(['status', '--json'], { cwd: dir }));
    expect(status.targets[0]!.counts).toEqual({ v2: 3000 });
  });

  it('--max-load is refused on SQLite with a hint', async () => {
    const dir = tmpdir();
    expect((await keyctlInProcess(['init', '--demo', '--rows', '10'], { cwd: dir })).code).toBe(0);
    await keyctlInProcess(['generate'], { cwd: dir });
    await keyctlInProcess(['dual-key'], { cwd: dir });
    const r = await keyctlInProcess(['reencrypt', '--max-load', '5'], { cwd: dir });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('--max-load needs PostgreSQL or MySQL');
  });
});

describe('reencrypt --shard in separate processes (SQLite)', () => {
  it('three shard processes at once: each does its third, each exits 0, the rotation ends reencrypted', async () => {
    const dir = tmpdir();
    expect((await keyctlInProcess(['init', '--demo', '--rows', '9000'], { cwd: dir })).code).toBe(0);
    await keyctlInProcess(['generate'], { cwd: dir });
    await keyctlInProcess(['dual-key'], { cwd: dir });
    const runs = await Promise.all([0, 1, 2].map((i) => keyctl(['reencrypt', '--shard', `${i}/3`, '--json'], { cwd: dir })));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    expect(runs.map((r) => json<{ summary: { rowsScanned: number } }>(r).summary.rowsScanned)).toEqual([3000, 3000, 3000]);
    const status = json<{ rotation: { phase: string }; targets: Array<{ counts: Record<string, number> }> }>(
      await keyctlInProcess(['status', '--json'], { cwd: dir }),
    );
    expect(status.rotation.phase).toBe('reencrypted');
    expect(status.targets.map((t) => t.counts)).toEqual([{ v2: 9000 }, { v2: 9000 }, { v2: 9000 }]);
  });
});

describe('promote in an emergency rotation', () => {
  it('says there is no rollback window instead of "archived for rollback until" now', async () => {
    const dir = tmpdir();
    const run = (...args: string[]) => keyctlInProcess(args, { cwd: dir, env: { KEYCTL_ACTOR: 'e2e@test', NO_COLOR: '1' } });
    expect((await run('init', '--demo', '--rows', '20')).code).toBe(0);
    for (const step of [['generate', '--emergency', '--reason', 'INC-9: key in a log'], ['dual-key'], ['reencrypt'], ['verify']]) {
      const r = await run(...step);
      expect(r.code, `${step.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const p = await run('promote');
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toContain('an emergency rotation has no rollback window (no rollback to a compromised key): retire it now');
    expect(p.stdout).not.toContain('archived for rollback until');
  });
});
