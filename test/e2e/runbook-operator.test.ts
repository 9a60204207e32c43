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
import { ABORT, answer, RUN, SKIP, Tmux } from '../helpers/tmux.js';

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

describe('runbook prompts in a terminal', () => {
  it('shows the command with its inputs filled in before the choice', { timeout: 120_000 }, async () => {
    const dir = await project();
    const t = terminal(dir, 'oncall@ops', 'emergency-rotation');
    await t.prompt('Incident reference');
    t.type('INC-7');
    await t.prompt('Which key version is compromised');
    t.type('v1');
    await t.prompt('What happened to the key');
    t.type('key printed in a debug log');
    await answer(t, 'database-reachable', RUN);
    await answer(t, 'keystore-reachable', RUN);
    const screen = await t.waitFor('? generate: what now?');
    const prompt = screen.slice(screen.indexOf('Generate the replacement key'));
    expect(prompt).toContain('command: keyctl generate --emergency --compromised v1 --reason "INC-7: key printed in a debug log"');
    expect(screen).not.toContain('{{');
    t.keys(...ABORT);
    expect(await t.exit()).toBe(7);
  });

  it('a failed check offers Retry; Ctrl-C during the propagation countdown aborts like Abort: exit 7, an audit row, the line to resume', {
    timeout: 120_000,
  }, async () => {
    const dir = await project(20, { minPropagationSeconds: 600 });
    const t = terminal(dir, 'alice@ops', 'routine-rotation');
    await answer(t, 'database-reachable', RUN);
    await answer(t, 'keystore-reachable', RUN);
    await answer(t, 'backup-fresh', RUN);
    await t.waitFor('✗ step backup-fresh failed: no intact backup');
    await t.waitFor('Retry (after fixing it');
    const failed = t.screen();
    expect(failed.slice(failed.indexOf('✗ step backup-fresh failed'))).toMatch(/what to do: Run `keyctl backup`/);
    // One hint: the step's guidance, not also "run the runbook again".
    expect(failed).not.toContain('it resumes at this step');
    t.keys(...SKIP);
    await t.prompt('Why skip this step?');
    t.type('trial run');
    await answer(t, 'recover-test-recent', SKIP);
    await t.prompt('Why skip this step?');
    t.type('trial run');
    await answer(t, 'no-unparseable', RUN);
    await answer(t, 'generate', RUN);
    await answer(t, 'backup-new-key', RUN);
    await answer(t, 'deploy', RUN);
    await t.prompt('Change or deployment reference');
    t.type('CHG-1');
    await answer(t, 'propagation', RUN);
    await t.waitFor(/waiting: \d+ min \d+ s left/);
    t.keys('C-c');
    expect(await t.exit()).toBe(7);
    expect(t.screen()).toContain('aborted at step propagation. To resume (any operator, any machine): keyctl runbook run routine-rotation');
    // KEYCTL_SCREEN_OUT=FILE keeps this screen (docs/runbook-screen.txt is one, with a header).
    if (process.env.KEYCTL_SCREEN_OUT) writeFileSync(process.env.KEYCTL_SCREEN_OUT, t.screen());
    const audit = JSON.parse((await keyctl(['audit', '--all', '--format', 'json'], { cwd: dir })).stdout) as {
      entries: Array<{ action: string; outcome: string; details: Record<string, unknown> | null }>;
    };
    const last = audit.entries.filter((e) => e.action === 'runbook-step').at(-1)!;
    expect(last).toMatchObject({ outcome: 'interrupted', details: { step: 'propagation' } });
  });

  it('a step the machine would refuse now is not offered as Run: the prompt shows why and until when', { timeout: 120_000 }, async () => {
    const dir = await project(10, { rollbackWindowDays: 30 });
    for (const cmd of ['generate', 'dual-key', 'reencrypt', 'verify', 'promote']) expect((await keyctl([cmd], { cwd: dir })).code, cmd).toBe(0);
    const t = terminal(dir, 'alice@ops', 'routine-rotation');
    await answer(t, 'healthy', RUN);
    const screen = await t.waitFor('? retire: what now?');
    const until = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
    expect(screen).toMatch(new RegExp(`retire: refused now — .*rollback window.*\\(stop here until ${until}\\)`));
    const choices = screen.slice(screen.lastIndexOf('? retire: what now?'));
    expect(choices).toContain('Skip (you will give a reason)');
    expect(choices).toContain('Abort (resume later from here)');
    expect(choices).not.toMatch(/❯ Run|^ {2}Run$/m);
    t.keys('Down', 'Enter');
    expect(await t.exit()).toBe(7);
  });
});

describe('the incident summary', () => {
  it('is ticket-ready: from the runbook start with its checks and when the incident was entered, rows re-encrypted, keys, who did each step; --format markdown', {
    timeout: 120_000,
  }, async () => {
    const dir = await project(20);
    const t = terminal(dir, 'oncall@ops', 'emergency-rotation');
    await t.prompt('Incident reference');
    t.type('INC-7');
    await t.prompt('Which key version is compromised');
    t.type('v1');
    await t.prompt('What happened to the key');
    t.type('key printed in a debug log');
    for (const step of ['database-reachable', 'keystore-reachable', 'generate', 'backup-new-key']) await answer(t, step, RUN);
    await answer(t, 'deploy', RUN);
    await t.prompt('Deployment reference');
    t.type('DEP-9');
    for (const step of ['dual-key', 'reencrypt', 'verify', 'promote', 'retire']) await answer(t, step, RUN);
    expect(await t.exit()).toBe(0);
    const screen = t.screen();
    const summary = screen.slice(screen.indexOf('Incident summary — INC-7'));
    expect(summary).toContain('compromised key: v1   replaced by: v2');
    expect(summary).toContain('rows re-encrypted: 20 (all passes)');
    expect(summary).toMatch(/incident entered: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ {3}done by: oncall@ops/);
    // The timeline starts with the runbook: the incident, then the checks before generate.
    const order = ['incident entered', 'runbook database-reachable', 'runbook keystore-reachable', 'generate', 'runbook deploy', 'retire'];
    const at = order.map((a) => summary.indexOf(a));
    for (const i of at) expect(i).toBeGreaterThan(0);
    expect([...at].sort((a, b) => a - b)).toEqual(at);

    const md = await keyctl(['runbook', 'run', 'emergency-rotation', '--summary', '--format', 'markdown'], { cwd: dir, env: { NO_COLOR: '1' } });
    expect(md.code).toBe(0);
    expect(md.stdout).toContain('## Incident summary — INC-7 (rotation #1)');
    expect(md.stdout).toContain('- **Compromised key:** v1, replaced by v2');
    expect(md.stdout).toContain('- **Rows re-encrypted (all passes):** 20');
    expect(md.stdout).toContain('- **Done by:** oncall@ops');
    expect(md.stdout).toMatch(/\| incident entered \| ok \| oncall@ops \| INC-7: key printed in a debug log \|/);
    expect(md.stdout).toMatch(/\| runbook database-reachable \| ok \| oncall@ops \| connected to SQLite/);
    expect(md.stdout).toMatch(/\| runbook deploy \| ok \| oncall@ops \| value: DEP-9 \|/);
  });
});
