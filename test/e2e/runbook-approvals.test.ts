import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json, keyctl } from '../helpers/cli.js';
import { GpgHome } from '../helpers/gpg.js';
import { ABORT, answer, RUN, SKIP, Tmux } from '../helpers/tmux.js';

let home: GpgHome;
const keyFiles: Record<'so' | 'dba', { pub: string; sec: string; uid: string }> = {} as never;

const gpg = (args: string[], input?: string): string => home.run(args, input);

beforeAll(() => {
  home = new GpgHome();
  const out = mkdtempSync(path.join(os.tmpdir(), 'keyctl-approver-keys-'));
  for (const who of ['so', 'dba'] as const) {
    const uid = `${who}@example.com`;
    gpg(['--passphrase', '', '--quick-gen-key', uid, 'future-default', 'default', 'never']);
    const pub = path.join(out, `${who}.asc`);
    const sec = path.join(out, `${who}.sec.asc`);
    writeFileSync(pub, gpg(['--armor', '--export', uid]));
    writeFileSync(sec, gpg(['--armor', '--passphrase', '', '--export-secret-keys', uid]));
    keyFiles[who] = { pub, sec, uid };
  }
}, 60_000);

afterAll(() => home.close());

const dirs: string[] = [];
const terminals: Tmux[] = [];
afterEach(() => {
  for (const t of terminals.splice(0)) t.kill();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function project(): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-runbook-approvals-'));
  dirs.push(dir);
  expect((await keyctl(['init', '--demo', '--rows', '40'], { cwd: dir })).code).toBe(0);
  const file = path.join(dir, 'keyctl.yaml');
  writeFileSync(file, readFileSync(file, 'utf8').replace(/rollbackWindowDays: \d+/, 'rollbackWindowDays: 0'));
  mkdirSync(path.join(dir, 'approvers'));
  for (const who of ['so', 'dba'] as const) writeFileSync(path.join(dir, 'approvers', `${who}.asc`), readFileSync(keyFiles[who].pub));
  appendFileSync(
    file,
    [
      'approvals:',
      '  approvers:',
      '    - { name: security-officer, publicKey: ./approvers/so.asc }',
      '    - { name: dba-oncall, publicKey: ./approvers/dba.asc }',
      '  require: { generate: 2, promote: 2, retire: 2, rollback: 2 }',
      '  expiresHours: 24',
      '  breakGlass: true',
      '',
    ].join('\n'),
  );
  return dir;
}

function terminal(dir: string, actor: string, ...args: string[]): Tmux {
  const t = new Tmux(dir, ['runbook', 'run', ...args], { KEYCTL_ACTOR: actor, NO_COLOR: '1' });
  terminals.push(t);
  return t;
}

interface RequestJson {
  id: number;
  action: string;
  status: string;
  breakGlass: boolean;
  approvals: Array<{ approver: string }>;
}

async function requests(dir: string): Promise<RequestJson[]> {
  return json<{ requests: RequestJson[] }>(await keyctl(['approval', 'list', '--json'], { cwd: dir })).requests;
}

/** security-officer signs with keyctl and the secret key file; dba-oncall with gpg on "their own machine", added by file. */
async function bothSign(dir: string, id: number): Promise<void> {
  const so = await keyctl(['approval', 'sign', String(id), '--key', keyFiles.so.sec], { cwd: dir, env: { KEYCTL_ACTOR: 'so@laptop' } });
  expect(so.code, so.stderr).toBe(0);
  const canonical = await keyctl(['approval', 'show', String(id), '--canonical'], { cwd: dir });
  const sig = path.join(dir, `sig-${id}.asc`);
  writeFileSync(sig, gpg(['--local-user', keyFiles.dba.uid, '--detach-sign', '--armor'], canonical.stdout));
  const dba = await keyctl(['approval', 'add', String(id), '--signature', sig], { cwd: dir });
  expect(dba.code, dba.stderr).toBe(0);
}

/** The request an approval step made (the newest for `action`), once it exists. */
async function waitingRequest(t: Tmux, dir: string, action: string): Promise<number> {
  await t.waitFor(/still to sign: security-officer, dba-oncall/);
  const r = (await requests(dir)).find((x) => x.action === action && !x.breakGlass && x.status === 'open');
  expect(r, `an open ${action} request`).toBeDefined();
  return r!.id;
}

describe('approval steps in runbooks', () => {
  it('routine-rotation waits for two approvers at generate, promote and retire; Ctrl-C while waiting resumes at the same request', {
    timeout: 180_000,
  }, async () => {
    const dir = await project();
    const alice = terminal(dir, 'alice@ops', 'routine-rotation');
    await answer(alice, 'database-reachable', RUN);
    await answer(alice, 'keystore-reachable', RUN);
    await answer(alice, 'backup-fresh', SKIP);
    await alice.prompt('Why skip this step?');
    alice.type('trial run');
    await answer(alice, 'recover-test-recent', SKIP);
    await alice.prompt('Why skip this step?');
    alice.type('trial run');
    await answer(alice, 'no-unparseable', RUN);
    await answer(alice, 'approve-generate', RUN);
    const gen = await waitingRequest(alice, dir, 'generate');
    expect(alice.screen()).toContain(`keyctl approval show ${gen} --canonical > request-${gen}.txt`);
    await alice.waitFor(/waiting for approvals: 0 of 2 signatures on request #\d+; checking again in \d s/);
    await bothSign(dir, gen);
    await alice.waitFor(`✓ approve-generate: request #${gen} approved by security-officer, dba-oncall`);
    await answer(alice, 'generate', RUN);
    await alice.waitFor('created key v2');
    await answer(alice, 'backup-new-key', RUN);
    await answer(alice, 'deploy', RUN);
    await alice.prompt('Change or deployment reference');
    alice.type('CHG-42');
    await answer(alice, 'propagation', RUN);
    await answer(alice, 'dual-key', RUN);
    await answer(alice, 'reencrypt-dry-run', RUN);
    await answer(alice, 'reencrypt', RUN);
    await answer(alice, 'verify', RUN);
    await alice.waitFor('verification passed');
    await answer(alice, 'approve-promote', RUN);
    const prom = await waitingRequest(alice, dir, 'promote');
    // Only one approver so far; then Ctrl-C while waiting.
    expect((await keyctl(['approval', 'sign', String(prom), '--key', keyFiles.so.sec], { cwd: dir })).code).toBe(0);
    await alice.waitFor(/1 of 2 signatures \(security-officer\); still to sign: dba-oncall/);
    alice.keys('C-c');
    expect(await alice.exit()).toBe(ExitCode.INTERRUPTED);
    expect(alice.screen()).toContain('aborted at step approve-promote');
    // promote by hand is refused meanwhile, naming what is missing.
    const early = await keyctl(['promote'], { cwd: dir });
    expect(early.code).toBe(ExitCode.REFUSED);
    expect(early.stderr).toContain(`request #${prom} has 1 (security-officer); still missing: 1 of dba-oncall`);

    const bob = terminal(dir, 'bob@ops', 'routine-rotation');
    await bob.waitFor('resuming at step');
    await answer(bob, 'approve-promote', RUN);
    await bob.waitFor(`request #${prom}`);
    const canonical = await keyctl(['approval', 'show', String(prom), '--canonical'], { cwd: dir });
    const sig = path.join(dir, 'dba-promote.asc');
    writeFileSync(sig, gpg(['--local-user', keyFiles.dba.uid, '--detach-sign', '--armor'], canonical.stdout));
    expect((await keyctl(['approval', 'add', String(prom), '--signature', sig], { cwd: dir })).code).toBe(0);
    await bob.waitFor(`✓ approve-promote: request #${prom} approved by security-officer, dba-oncall`);
    await answer(bob, 'promote', RUN);
    await answer(bob, 'healthy', RUN);
    await answer(bob, 'approve-retire', RUN);
    const ret = await waitingRequest(bob, dir, 'retire');
    await bothSign(dir, ret);
    await answer(bob, 'retire', RUN);
    expect(await bob.exit()).toBe(ExitCode.OK);

    expect(json<{ primary: string; rotation: unknown }>(await keyctl(['status', '--json'], { cwd: dir }))).toMatchObject({ primary: 'v2', rotation: null });
    // One request per guarded action, each used by it; no request was made twice by the resumed step.
    expect((await requests(dir)).map((r) => [r.action, r.status, r.approvals.map((a) => a.approver).sort()])).toEqual([
      ['retire', 'consumed', ['dba-oncall', 'security-officer']],
      ['promote', 'consumed', ['dba-oncall', 'security-officer']],
      ['generate', 'consumed', ['dba-oncall', 'security-officer']],
    ]);
    const md = (await keyctl(['audit', '--format', 'markdown'], { cwd: dir })).stdout;
    expect(md).toContain('### Approvals');
    for (const action of ['generate', 'promote', 'retire'])
      expect(md).toMatch(new RegExp(`\\| #1 \\| ${action} \\| #\\d+ \\| dba-oncall \\| [0-9A-F]{40} \\|`));
  });

  it('emergency-rotation: a generate broken glass by hand is picked up, its signatures are waited for before retire, and status --check clears', {
    timeout: 180_000,
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
    // The approvers cannot be reached: abort and break the glass by hand.
    await answer(t, 'approve-generate', ABORT);
    expect(await t.exit()).toBe(ExitCode.INTERRUPTED);
    const bg = await keyctl(['generate', '--emergency', '--compromised', 'v1', '--break-glass', '--reason', 'INC-7: approvers asleep'], {
      cwd: dir,
      env: { KEYCTL_ACTOR: 'oncall@ops' },
    });
    expect(bg.code, bg.stderr).toBe(0);
    const check = await keyctl(['status', '--check'], { cwd: dir });
    expect(check.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(check.stderr).toContain('[break-glass-unapproved]');

    // The rotation was opened by hand: the runbook asks for the incident again, then resumes after generate.
    const t2 = terminal(dir, 'oncall@ops', 'emergency-rotation');
    await t2.prompt('Incident reference');
    t2.type('INC-7');
    await t2.prompt('Which key version is compromised');
    t2.type('v1');
    await t2.prompt('What happened to the key');
    t2.type('key printed in a debug log');
    await answer(t2, 'backup-new-key', RUN);
    await answer(t2, 'deploy', RUN);
    await t2.prompt('Deployment reference');
    t2.type('DEP-9');
    await answer(t2, 'dual-key', RUN);
    await answer(t2, 'reencrypt', RUN);
    await answer(t2, 'verify', RUN);
    await answer(t2, 'approve-promote', RUN);
    await bothSign(dir, await waitingRequest(t2, dir, 'promote'));
    await answer(t2, 'promote', RUN);
    await answer(t2, 'break-glass-approved', RUN);
    await t2.waitFor(/1 break-glass action\(s\) await approval/);
    const owed = (await requests(dir)).find((r) => r.breakGlass)!;
    expect(owed).toMatchObject({ action: 'generate', status: 'break-glass-pending' });
    await bothSign(dir, owed.id);
    await t2.waitFor('✓ break-glass-approved: no break-glass action awaits approval');
    await answer(t2, 'approve-retire', RUN);
    await bothSign(dir, await waitingRequest(t2, dir, 'retire'));
    await answer(t2, 'retire', RUN);
    expect(await t2.exit()).toBe(ExitCode.OK);
    expect(t2.screen()).toContain('Incident summary — INC-7 (rotation #1)');

    expect((await keyctl(['status', '--check'], { cwd: dir })).stderr).not.toContain('break-glass');
    const md = (await keyctl(['audit', '--format', 'markdown'], { cwd: dir })).stdout;
    expect(md).toMatch(
      /\| #1 \| generate \| #\d+ \| security-officer \| [0-9A-F]{40} \| .* \| break glass at .* by oncall@ops: INC-7: approvers asleep; approved afterwards \|/,
    );
  });
});
