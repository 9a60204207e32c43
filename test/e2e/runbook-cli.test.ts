/**
 * `keyctl runbook run`'s flags as a newcomer types them (in-process, on a demo project): `--set`
 * takes one NAME=VALUE and repeats, so it never swallows the runbook name that follows it; the
 * --json plan tells a step passed over by a command run by hand from one done by hand.
 */
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/base/exit-codes.js';
import { json } from '../helpers/cli.js';
import { demoProject } from '../helpers/project.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('keyctl runbook run', () => {
  it('takes one NAME=VALUE each time: the runbook name may follow it, and repeating it gives several inputs', async () => {
    const { run } = await demoProject(dirs, 5);
    const before = await run('runbook', 'run', '--set', 'incident=INC-1', 'emergency-rotation', '--dry-run');
    expect(before.stderr).not.toContain('missing required argument');
    expect(before.code, before.stderr).toBe(ExitCode.OK);
    expect(before.stdout).toContain('(emergency-rotation, ');
    expect(before.stdout).toContain('keyctl generate --emergency --compromised <compromised> --reason "INC-1: <reason>"');

    const several = await run(
      'runbook',
      'run',
      'emergency-rotation',
      '--dry-run',
      '--set',
      'incident=INC-2',
      '--set',
      'compromised=v1',
      '--set',
      'reason=leak',
    );
    expect(several.code, several.stderr).toBe(ExitCode.OK);
    expect(several.stdout).toContain('keyctl generate --emergency --compromised v1 --reason "INC-2: leak"');
    const interleaved = await run('runbook', 'run', '--set', 'incident=INC-3', '--set', 'compromised=v1', 'emergency-rotation', '--dry-run');
    expect(interleaved.code, interleaved.stderr).toBe(ExitCode.OK);
    expect(interleaved.stdout).toContain('keyctl generate --emergency --compromised v1 --reason "INC-3: <reason>"');

    const help = await run('runbook', 'run', '--help');
    const flat = help.stdout.replace(/\s+/g, ' ');
    expect(flat).toContain('--set <name=value> a runbook input, e.g. --set incident=INC-1234 (asked for when missing); repeat for several');
    expect(help.stdout).not.toContain('<name=value...>');
  });

  it('--dry-run --json: a step passed over by a command run by hand says so, with that command', async () => {
    const { run } = await demoProject(dirs, 5);
    for (const step of ['generate', 'dual-key']) expect((await run(step)).code, step).toBe(ExitCode.OK);
    const plan = await run('runbook', 'run', 'routine-rotation', '--dry-run', '--json');
    expect(plan.code, plan.stderr).toBe(ExitCode.OK);
    const byId = Object.fromEntries(json<{ steps: Array<{ id: string; status: string; by: unknown }> }>(plan).steps.map((s) => [s.id, s]));
    expect(byId['backup-new-key']).toMatchObject({ status: 'passed', by: { actor: 'op@test', passedBy: 'dual-key' } });
    expect(byId.deploy).toMatchObject({ status: 'passed' });
    expect(byId['dual-key']).toMatchObject({ status: 'done-outside', by: { actor: 'op@test' } });
    expect(byId['reencrypt-dry-run']).toMatchObject({ status: 'none', by: null });
  });
});
