/**
 * The three ways the rotation machine issue found to lose data or keep a compromised key in use,
 * as an operator would hit them through the built binary (SQLite + file keystore):
 *   1. a failed full verify left the rotation `verified`, so promote and retire destroyed the only
 *      key that could read the bad row;
 *   2. the emergency runbook, run while a routine rotation was open, took that rotation's next step
 *      (retire) and destroyed the key that was not compromised;
 *   3. the runbook plan hid what happened (skips shown as done, steps run by hand as "not for this phase").
 */
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { ExitCode } from '../../src/base/exit-codes.js';
import { demoProject, keysHeld } from '../helpers/project.js';
import { json, withProjectSqlite } from '../helpers/cli.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const codec = new AesGcmV1Codec();

/** Whether `value` decrypts with any key the keystore holds (trying every version: a mislabelled value too). */
function readable(value: string, keys: Map<string, Buffer>): boolean {
  const [, nonce, body] = value.split(':');
  for (const k of keys.values()) {
    try {
      codec.decrypt(`v1:${nonce}:${body}`, () => k);
      return true;
    } catch {
      // try the next key
    }
  }
  return false;
}

describe('the rotation machine closes the three repros', () => {
  it('1. a failed full verify moves the rotation back: promote and retire are refused and the old key survives', async () => {
    const { dir, run } = await demoProject(dirs, 100);
    // A v1 ciphertext labelled v2: reencrypt skips it (it looks done), only a full decrypt finds it.
    await withProjectSqlite(dir, (k) => k.raw(`UPDATE customers SET email = 'v2:' || substr(email, 4) WHERE id = 4`));
    for (const step of ['generate', 'dual-key', 'reencrypt']) expect((await run(step)).code, step).toBe(0);

    // A sample may or may not pick row 4; either way it must not unlock promote.
    await run('verify', '--sample', '5');
    const full = await run('verify', '--json');
    expect(full.code).toBe(ExitCode.PROBLEMS_FOUND);
    expect(json<{ failures: Array<{ pk: string; reason: string }> }>(full).failures).toEqual([
      expect.objectContaining({ pk: '4', reason: 'authentication-failed' }),
    ]);
    expect(json<{ rotation: { phase: string } }>(full).rotation.phase).toBe('reencrypted');

    const promote = await run('promote');
    expect(promote.code).toBe(ExitCode.REFUSED);
    const retire = await run('retire', '--force', '--reason', 't');
    expect(retire.code).toBe(ExitCode.REFUSED);
    // Even forcing past the sampled verify does not help: the phase is back at reencrypted.
    expect((await run('promote', '--force', '--reason', 'accept the risk')).code).toBe(ExitCode.REFUSED);

    const row = await withProjectSqlite(dir, (k) => k('customers').where({ id: 4 }).first<{ email: string }>());
    expect(readable(row!.email, keysHeld(dir))).toBe(true);
    const status = json<{ rotation: { phase: string } }>(await run('status', '--json'));
    expect(status.rotation.phase).toBe('reencrypted');
    // Each refusal left an audit row naming the guard.
    const audit = json<{ entries: Array<{ action: string; outcome: string; details: Record<string, unknown> | null }> }>(
      await run('audit', '--format', 'json'),
    ).entries;
    expect(audit.filter((e) => e.outcome === 'refused').map((e) => e.action)).toEqual(['promote', 'retire', 'promote']);
    // The latest failed verify is the full one (the sample before it fails too when it picks row 4).
    expect(audit.filter((e) => e.action === 'verify' && e.outcome === 'failed').at(-1)?.details).toMatchObject({ scope: 'full' });
    expect((await run('audit', '--verify')).code).toBe(0);
  });

  it('1b. a sampled verify is shown but never unlocks promote without --force --reason', async () => {
    const { run } = await demoProject(dirs, 30);
    for (const step of ['generate', 'dual-key', 'reencrypt']) expect((await run(step)).code, step).toBe(0);
    const sample = await run('verify', '--sample', '5');
    expect(sample.code).toBe(0);
    expect(sample.stderr + sample.stdout).toContain('sample: does not unlock promote');
    const refused = await run('promote');
    expect(refused.code).toBe(ExitCode.REFUSED);
    expect(refused.stderr).toContain('was a sample');
    expect((await run('promote', '--force')).code).toBe(ExitCode.USAGE);
    expect((await run('promote', '--force', '--reason', 'CHG-7 sample accepted')).code).toBe(0);
  });

  it('2. the emergency runbook with a routine rotation open never follows the routine rotation, and refuses to retire the uncompromised key', async () => {
    const { dir, run } = await demoProject(dirs, 40, { rollbackWindowDays: '0' });
    for (const step of ['generate', 'dual-key', 'reencrypt', 'verify', 'promote']) expect((await run(step)).code, step).toBe(0);
    const before = keysHeld(dir);
    expect([...before.keys()].sort()).toEqual(['v1', 'v2']);

    const plan = await run('runbook', 'run', 'emergency-rotation', '--dry-run', '--set', 'compromised=v2', '--set', 'incident=INC-9', '--set', 'reason=leak');
    expect(plan.code).toBe(0);
    expect(plan.stdout).toMatch(/next: step \d+, database-reachable/);
    expect(plan.stdout).not.toMatch(/next: step \d+, retire/);
    expect(plan.stdout).toMatch(/– +\d+ retire/);
    expect(plan.stdout).toContain('routine rotation');
    expect(plan.stdout).toContain('keyctl generate --emergency --compromised v2 --reason "INC-9: leak"');
    expect(plan.stdout).toMatch(/refused now — rotation #1 \(routine, v1 → v2, phase promoted\) introduced v2/);

    const real = await run('runbook', 'run', 'emergency-rotation', '--yes', '--set', 'compromised=v2', '--set', 'incident=INC-9', '--set', 'reason=leak');
    expect(real.code).toBe(ExitCode.REFUSED);
    expect(real.stderr).toContain('retire --force');
    expect(real.stderr).not.toContain('nothing left to do');
    expect(real.stderr).not.toContain('Incident summary');
    // v1 (not compromised) is still held; nothing was retired.
    expect([...keysHeld(dir).keys()].sort()).toEqual(['v1', 'v2']);
    const status = json<{ rotation: { phase: string; emergency: boolean } }>(await run('status', '--json'));
    expect(status.rotation).toMatchObject({ phase: 'promoted', emergency: false });
  });

  it("2b. naming the routine rotation's old key turns it into an emergency rotation; the runbook finishes it and counts every pass", async () => {
    const { dir, run } = await demoProject(dirs, 300);
    expect((await run('generate')).code).toBe(0);
    expect((await run('dual-key')).code).toBe(0);
    // A first pass over half the table (one shard of two) before the incident; the runbook's pass does the rest.
    expect((await run('reencrypt', '--shard', '0/2')).code).toBe(0);
    const r = await run('runbook', 'run', 'emergency-rotation', '--yes', '--set', 'compromised=v1', '--set', 'incident=INC-10', '--set', 'reason=leak');
    // The deploy confirmation (a person) comes before dual-key, which this rotation is past.
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toContain('is now an emergency rotation');
    expect(r.stdout + r.stderr).toContain('compromised key: v1   replaced by: v2');
    expect(r.stdout + r.stderr).toContain('rows re-encrypted: 300');
    const status = json<{ primary: string; rotation: unknown; versions: Array<{ version: string; compromised: boolean; state: string }> }>(
      await run('status', '--json'),
    );
    expect(status).toMatchObject({ primary: 'v2', rotation: null });
    expect(status.versions.find((v) => v.version === 'v1')).toMatchObject({ compromised: true, state: 'retired' });
    // Unpublished; kept only in the archive for old database backups (policy.retiredKeyRetentionDays).
    expect(Object.keys((JSON.parse(readFileSync(path.join(dir, '.keyctl/keyring.json'), 'utf8')) as { keys: Record<string, string> }).keys)).toEqual(['v2']);
  });

  it('2c. the plan shows that naming a key other than the primary is refused', async () => {
    const { run } = await demoProject(dirs, 10);
    const r = await run('runbook', 'run', 'emergency-rotation', '--dry-run', '--set', 'compromised=v9', '--set', 'incident=INC-1', '--set', 'reason=x');
    expect(r.stdout).toMatch(/refused now — --compromised v9 is not the primary/);
  });

  it('3. the plan tells skipped, done in the runbook and done by hand apart, with who and when', async () => {
    const { run } = await demoProject(dirs, 20);
    // Checks run through the runbook (one skipped with a reason) …
    const yes = await run('runbook', 'run', 'routine-rotation', '--yes');
    expect(yes.code).toBe(ExitCode.PROBLEMS_FOUND); // backup-fresh fails: no backup yet
    // … then an operator goes on by hand.
    for (const step of ['generate', 'dual-key']) expect((await run(step)).code, step).toBe(0);
    const plan = await run('runbook', 'run', 'routine-rotation', '--dry-run', '--json');
    expect(plan.code).toBe(0);
    const steps = json<{ steps: Array<{ id: string; status: string; by: { actor: string; at: string; note: string | null } | null; command: string | null }> }>(
      plan,
    ).steps;
    const byId = Object.fromEntries(steps.map((s) => [s.id, s]));
    expect(byId['database-reachable']).toMatchObject({ status: 'done', by: { actor: 'op@test' } });
    expect(byId['backup-fresh']).toMatchObject({ status: 'failed', by: { actor: 'op@test' } });
    expect(byId['backup-fresh']!.by!.note).toContain('no intact backup');
    expect(byId.generate).toMatchObject({ status: 'done-outside', by: { actor: 'op@test' } });
    expect(byId['dual-key']).toMatchObject({ status: 'done-outside' });
    expect(byId.reencrypt).toMatchObject({ status: 'none', command: 'keyctl reencrypt' });
    const text = await run('runbook', 'run', 'routine-rotation', '--dry-run');
    expect(text.stdout).toMatch(/◆ +\d+ generate .*done outside the runbook by op@test/);
    expect(text.stdout).toMatch(/✗ +\d+ backup-fresh .*failed/);
    expect(text.stdout).toMatch(/✓ +\d+ database-reachable .*done by op@test/);
  });

  it('3b. a guard that would refuse a remaining step shows in the plan, with the date to come back', async () => {
    const { run } = await demoProject(dirs, 20, { rollbackWindowDays: '30' });
    for (const step of ['generate', 'dual-key', 'reencrypt', 'verify', 'promote']) expect((await run(step)).code, step).toBe(0);
    const plan = await run('runbook', 'run', 'routine-rotation', '--dry-run');
    expect(plan.stdout).toMatch(
      /retire: refused now — the rollback window of rotation #1 ends \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ .*\(stop here until \d{4}-\d{2}-\d{2}\)/,
    );
  });
});
