/**
 * Runbooks as an SRE runs them: in a real terminal (tmux), answering inquirer's prompts, aborting
 * half-way and handing over to a second operator whose new process resumes where the first one
 * stopped. The embedded default (SQLite + file keystore).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, keyctl } from '../helpers/cli.js';
import { ABORT, answer, RUN, SKIP, Tmux } from '../helpers/tmux.js';

const dirs: string[] = [];
const terminals: Tmux[] = [];
afterEach(() => {
  for (const t of terminals.splice(0)) t.kill();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function project(rows = 60): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-runbook-'));
  dirs.push(dir);
  expect((await keyctl(['init', '--demo', '--rows', String(rows)], { cwd: dir })).code).toBe(0);
  const file = path.join(dir, 'keyctl.yaml');
  // The trial has no rollback window to wait out.
  writeFileSync(file, readFileSync(file, 'utf8').replace(/rollbackWindowDays: \d+/, 'rollbackWindowDays: 0'));
  return dir;
}

function terminal(dir: string, actor: string, ...args: string[]): Tmux {
  const t = new Tmux(dir, ['runbook', 'run', ...args], { KEYCTL_ACTOR: actor, NO_COLOR: '1' });
  terminals.push(t);
  return t;
}

interface AuditEntry {
  action: string;
  outcome: string;
  actor: string;
  rotationId: number | null;
  details: Record<string, unknown> | null;
}

async function runbookRows(dir: string): Promise<Array<{ step: string; outcome: string; actor: string }>> {
  const r = await keyctl(['audit', '--all', '--format', 'json'], { cwd: dir });
  return json<{ entries: AuditEntry[] }>(r)
    .entries.filter((e) => e.action === 'runbook-step')
    .map((e) => ({ step: String(e.details?.step), outcome: e.outcome, actor: e.actor }));
}

describe('keyctl runbook in a terminal', () => {
  it('routine-rotation: prompts, skips with reasons, aborts half-way, and a second operator resumes and finishes', { timeout: 120_000 }, async () => {
    const dir = await project();
    const alice = terminal(dir, 'alice@ops', 'routine-rotation');
    await answer(alice, 'database-reachable', RUN);
    await answer(alice, 'keystore-reachable', RUN);
    await answer(alice, 'backup-fresh', SKIP);
    await alice.prompt('Why skip this step?');
    alice.type('trial run: backups are covered by ticket OPS-1');
    await answer(alice, 'recover-test-recent', SKIP);
    await alice.prompt('Why skip this step?');
    alice.type('trial run');
    await answer(alice, 'no-unparseable', RUN);
    await answer(alice, 'generate', RUN);
    await alice.waitFor('created key v2');
    await answer(alice, 'backup-new-key', RUN);
    await alice.waitFor('no backup configured');
    await answer(alice, 'deploy', RUN);
    await alice.prompt('Change or deployment reference');
    alice.type('CHG-42');
    await answer(alice, 'propagation', RUN);
    await answer(alice, 'dual-key', RUN);
    await answer(alice, 'reencrypt-dry-run', RUN);
    await alice.waitFor('dry run: nothing was written');
    await answer(alice, 'reencrypt', ABORT);
    expect(await alice.exit()).toBe(ExitCode.INTERRUPTED);
    expect(alice.screen()).toContain('aborted at step reencrypt. To resume (any operator, any machine): keyctl runbook run routine-rotation');

    // Where it stands, without doing anything.
    const plan = json<{ next: string; phase: string }>(await keyctl(['runbook', 'run', 'routine-rotation', '--dry-run', '--json'], { cwd: dir }));
    expect(plan).toMatchObject({ next: 'reencrypt', phase: 'dual_key' });

    // The plan a second operator sees tells skipped from done, with who and why, and the aborted step.
    const text = (await keyctl(['runbook', 'run', 'routine-rotation', '--dry-run'], { cwd: dir, env: { NO_COLOR: '1' } })).stdout;
    expect(text).toMatch(/↷ +3 backup-fresh .*skipped by alice@ops \S+ \S+: trial run: backups are covered by ticket OPS-1/);
    expect(text).toMatch(/✓ +1 database-reachable .*done by alice@ops/);
    expect(text).toMatch(/▸ +13 reencrypt/);
    expect(text).toContain('$ keyctl reencrypt');

    const bob = terminal(dir, 'bob@ops', 'routine-rotation');
    await bob.waitFor('resuming at step 13 (reencrypt)');
    await answer(bob, 'reencrypt', RUN);
    await answer(bob, 'verify', RUN);
    await bob.waitFor('verification passed');
    await answer(bob, 'promote', RUN);
    await answer(bob, 'healthy', RUN);
    await answer(bob, 'retire', RUN);
    expect(await bob.exit()).toBe(ExitCode.OK);
    expect(bob.screen()).toMatch(/runbook routine-rotation: nothing left to do/);
    expect(bob.screen()).not.toContain('? database-reachable');

    const status = json<{ primary: string; rotation: unknown }>(await keyctl(['status', '--json'], { cwd: dir }));
    expect(status).toMatchObject({ primary: 'v2', rotation: null });
    const steps = await runbookRows(dir);
    expect(steps).toEqual([
      { step: 'database-reachable', outcome: 'ok', actor: 'alice@ops' },
      { step: 'keystore-reachable', outcome: 'ok', actor: 'alice@ops' },
      { step: 'backup-fresh', outcome: 'skipped', actor: 'alice@ops' },
      { step: 'recover-test-recent', outcome: 'skipped', actor: 'alice@ops' },
      { step: 'database-backup', outcome: 'skipped', actor: 'alice@ops' },
      { step: 'no-unparseable', outcome: 'ok', actor: 'alice@ops' },
      { step: 'generate', outcome: 'ok', actor: 'alice@ops' },
      { step: 'backup-new-key', outcome: 'ok', actor: 'alice@ops' },
      { step: 'deploy', outcome: 'ok', actor: 'alice@ops' },
      { step: 'propagation', outcome: 'ok', actor: 'alice@ops' },
      { step: 'dual-key', outcome: 'ok', actor: 'alice@ops' },
      { step: 'reencrypt-dry-run', outcome: 'ok', actor: 'alice@ops' },
      { step: 'reencrypt', outcome: 'interrupted', actor: 'alice@ops' },
      { step: 'reencrypt', outcome: 'ok', actor: 'bob@ops' },
      { step: 'verify', outcome: 'ok', actor: 'bob@ops' },
      { step: 'promote', outcome: 'ok', actor: 'bob@ops' },
      { step: 'healthy', outcome: 'ok', actor: 'bob@ops' },
      { step: 'retire', outcome: 'ok', actor: 'bob@ops' },
    ]);
    // The commands the steps ran were recorded under the same actors.
    const audit = json<{ entries: AuditEntry[] }>(await keyctl(['audit', '--all', '--format', 'json'], { cwd: dir })).entries;
    expect(audit.filter((e) => ['generate', 'dual-key'].includes(e.action)).map((e) => e.actor)).toEqual(['alice@ops', 'alice@ops']);
    expect(audit.filter((e) => ['verify', 'promote', 'retire'].includes(e.action)).map((e) => e.actor)).toEqual(['bob@ops', 'bob@ops', 'bob@ops']);
    const skipped = audit.find((e) => e.action === 'runbook-step' && e.details?.step === 'backup-fresh')!;
    expect(skipped.details).toMatchObject({ skipped: 'trial run: backups are covered by ticket OPS-1' });
    expect(audit.find((e) => e.action === 'runbook-step' && e.details?.step === 'deploy')!.details).toMatchObject({ value: 'CHG-42' });
  });

  it('emergency-rotation: asks for the incident, refuses a rollback to the compromised key, retires it and prints the incident summary', {
    timeout: 120_000,
  }, async () => {
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
    await answer(t, 'generate', RUN);
    await t.waitFor('created key v2');
    await answer(t, 'backup-new-key', RUN);
    await answer(t, 'deploy', RUN);
    await t.prompt('Deployment reference');
    t.type('DEP-9');
    await answer(t, 'dual-key', RUN);
    await answer(t, 'reencrypt', RUN);
    await answer(t, 'verify', RUN);
    await answer(t, 'promote', ABORT);
    expect(await t.exit()).toBe(ExitCode.INTERRUPTED);

    // Someone tries to go back to the old key: refused, it is compromised.
    const rollback = await keyctl(['rollback'], { cwd: dir, env: { KEYCTL_ACTOR: 'someone@ops' } });
    expect(rollback.code).toBe(ExitCode.REFUSED);
    expect(rollback.stderr).toMatch(/compromised/);

    const t2 = terminal(dir, 'oncall2@ops', 'emergency-rotation');
    await t2.waitFor('resuming at step 9 (promote)');
    await answer(t2, 'promote', RUN);
    await answer(t2, 'retire', RUN);
    expect(await t2.exit()).toBe(ExitCode.OK);
    const screen = t2.screen();
    expect(screen).not.toContain('? Incident reference');
    expect(screen).toContain('Incident summary — INC-7 (rotation #1)');
    expect(screen).toContain('reason: INC-7: key printed in a debug log');
    expect(screen).toContain('compromised key: v1   replaced by: v2');
    expect(screen).toMatch(/rows re-encrypted: 60/);
    for (const action of ['generate', 'dual-key', 'reencrypt', 'verify', 'rollback', 'promote', 'retire', 'runbook deploy']) expect(screen).toContain(action);
    const status = json<{ primary: string; rotation: unknown }>(await keyctl(['status', '--json'], { cwd: dir }));
    expect(status).toMatchObject({ primary: 'v2', rotation: null });
    const retire = json<{ entries: AuditEntry[] }>(await keyctl(['audit', '--all', '--format', 'json'], { cwd: dir })).entries.find(
      (e) => e.action === 'retire',
    )!;
    expect(retire).toMatchObject({ outcome: 'ok', actor: 'oncall2@ops' });
  });
});

describe('keyctl runbook without a terminal', () => {
  it('refuses to ask, names --yes and --dry-run; with --yes it runs until a step needs a person or fails', { timeout: 120_000 }, async () => {
    const dir = await project(10);
    const r = await keyctl(['runbook', 'run', 'routine-rotation'], { cwd: dir });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('there is no terminal to ask');
    expect(r.stderr).toContain('--yes');
    expect(r.stderr).toContain('--dry-run');

    const yes = await keyctl(['runbook', 'run', 'routine-rotation', '--yes'], { cwd: dir });
    expect(yes.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(yes.stderr).toContain('✗ step backup-fresh failed: no intact backup of keyring default');
    expect(yes.stderr).toContain('what to do: Run `keyctl backup`');

    const missing = await keyctl(['runbook', 'run', 'emergency-rotation', '--yes'], { cwd: dir });
    expect(missing.code).toBe(ExitCode.USAGE);
    expect(missing.stderr).toContain('needs input "incident"');
    expect(missing.stderr).toContain('--set incident=VALUE');
    const confirm = await keyctl(
      ['runbook', 'run', 'emergency-rotation', '--yes', '--set', 'incident=INC-1', '--set', 'compromised=v1', '--set', 'reason=test'],
      { cwd: dir },
    );
    expect(confirm.code).toBe(ExitCode.REFUSED);
    expect(confirm.stderr).toContain('step deploy needs a person to confirm');
  });

  it('rejects malformed runbook files with the file, the step and what is wrong', async () => {
    const dir = await project(5);
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      `name: bad\ntitle: Bad\ndescription: broken on purpose\nsteps:\n` +
        `  - id: one\n    kind: deploy-app\n    title: x\n    explain: y\n` +
        `  - id: two\n    kind: command\n    explain: y\n    command: generat --now\n` +
        `  - id: two\n    kind: confirm\n    title: t\n    explain: e\n    colour: red\n`,
    );
    const r = await keyctl(['runbook', 'run', 'bad', '--file', bad], { cwd: dir });
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('bad.yaml is not a valid runbook (5 problems)');
    expect(r.stderr).toContain('bad.yaml: step 1 (id "one"): unknown kind "deploy-app" (one of check, command, confirm, wait, approval)');
    expect(r.stderr).toContain('bad.yaml: step 2 (id "two"): missing "title"');
    expect(r.stderr).toContain('bad.yaml: step 2 (id "two"): command "generat" is not a keyctl command a runbook can run');
    expect(r.stderr).toContain('bad.yaml: step 3 (id "two"): unknown key "colour"');
    expect(r.stderr).toContain('bad.yaml: step 3 (id "two"): the id "two" is used by an earlier step');

    // Problems outside the steps name the field, never dump the file's contents.
    writeFileSync(
      bad,
      `name: bad\ntitle: Bad\ninputs:\n  - prompt: Incident\n    colour: red\nsteps:\n  - id: one\n    kind: wait\n    title: t\n    explain: e\n    wait: 1\n`,
    );
    const top = await keyctl(['runbook', 'run', 'bad', '--file', bad], { cwd: dir });
    expect(top.code).toBe(ExitCode.USAGE);
    expect(top.stderr).toContain('bad.yaml: missing "description"');
    expect(top.stderr).toContain('bad.yaml: missing "inputs.0.id"');
    expect(top.stderr).toContain('bad.yaml: inputs.0: unknown key "colour"');
    expect(top.stderr).not.toContain('found {');
  });
});
