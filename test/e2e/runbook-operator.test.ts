/**
 * Runbooks as an SRE at 3 a.m. sees them, in a real terminal (tmux): the audit after a runbook
 * run, the commands and refusals shown before the choice, a failed check retried, Ctrl-C during a
 * wait, the incident summary. The embedded default (SQLite + file keystore).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { keyctl } from '../helpers/cli.js';
import { Tmux } from '../helpers/tmux.js';

const dirs: string[] = [];
const terminals: Tmux[] = [];
afterEach(() => {
  for (const t of terminals.splice(0)) t.kill();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function project(rows = 20, policy: Record<string, number> = {}): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-runbook-op-'));
  dirs.push(dir);
  expect((await keyctl(['init', '--demo', '--rows', String(rows)], { cwd: dir })).code).toBe(0);
  const file = path.join(dir, 'keyctl.yaml');
  let text = readFileSync(file, 'utf8');
  for (const [key, value] of Object.entries({ rollbackWindowDays: 0, ...policy })) text = text.replace(new RegExp(`${key}: \\d+`), `${key}: ${value}`);
  writeFileSync(file, text);
  return dir;
}

function terminal(dir: string, actor: string, ...args: string[]): Tmux {
  const t = new Tmux(dir, ['runbook', 'run', ...args], { KEYCTL_ACTOR: actor, NO_COLOR: '1' });
  terminals.push(t);
  return t;
}

const RUN = ['Enter'];
const SKIP = ['Down', 'Enter'];
const ABORT = ['Down', 'Down', 'Enter'];

async function answer(t: Tmux, step: string, keys: string[]): Promise<void> {
  await t.prompt(`${step}: what now?`);
  t.keys(...keys);
  await t.waitFor(`✔ ${step}: what now?`);
}

describe('keyctl audit after a runbook run', () => {
  it('shows each runbook row with its step, the typed values and the skip reasons, and wraps the details to the terminal', { timeout: 120_000 }, async () => {
    const dir = await project();
    const t = terminal(dir, 'alice@ops', 'routine-rotation');
    await answer(t, 'database-reachable', RUN);
    await answer(t, 'keystore-reachable', RUN);
    await answer(t, 'backup-fresh', SKIP);
    await t.prompt('Why skip this step?');
    t.type('trial run: the nightly backup job covers this keyring, see ticket OPS-1 for the evidence of last night');
    await answer(t, 'recover-test-recent', SKIP);
    await t.prompt('Why skip this step?');
    t.type('trial run');
    await answer(t, 'no-unparseable', RUN);
    await answer(t, 'generate', RUN);
    await answer(t, 'backup-new-key', RUN);
    await answer(t, 'deploy', RUN);
    await t.prompt('Change or deployment reference');
    t.type('CHG-1234');
    await answer(t, 'propagation', ABORT);
    expect(await t.exit()).toBe(7);

    const table = await keyctl(['audit', '--all'], { cwd: dir, env: { NO_COLOR: '1', COLUMNS: '120' } });
    expect(table.code).toBe(0);
    const out = table.stdout;
    expect(out).toMatch(/step backup-fresh \(check\); skipped: trial run: the nightly/);
    expect(out).toContain('step deploy (confirm); value "CHG-1234"');
    expect(out).toContain('step generate (command); $ keyctl generate');
    expect(out).not.toContain('generated → –');
    // Long details wrap inside their cell instead of widening every row.
    for (const line of out.split('\n')) expect(line.length, line).toBeLessThanOrEqual(120);
    expect(out).toContain('OPS-1');

    const md = await keyctl(['audit', '--all', '--format', 'markdown'], { cwd: dir, env: { NO_COLOR: '1' } });
    expect(md.stdout).toMatch(/\| runbook-step \|.*\| step deploy \(confirm\); value "CHG-1234"/);
    expect(md.stdout).toMatch(/step backup-fresh \(check\); skipped: trial run: the nightly/);
    expect(md.stdout).toMatch(/step propagation \(wait\)/);
  });
});
