/**
 * The runbook runner as the operator meets it, with scripted answers: what is offered at a step
 * the machine would refuse now, a reencrypt stopped by Ctrl-C (interrupted, resumable, not
 * failed), and a failed check retried after it was fixed. The terminal runs are in
 * test/e2e/runbook-operator.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { type ConfigError, KeyctlError } from '../../src/base/errors.js';
import { ExitCode } from '../../src/base/exit-codes.js';
import type { CoreContext } from '../../src/core/context.js';
import { createDemoTable } from '../../src/core/demo.js';
import { reconcileRegistry } from '../../src/core/registry.js';
import { generate } from '../../src/core/rotation/generate.js';
import { reencrypt } from '../../src/core/rotation/reencrypt.js';
import { dualKey, promote, retire } from '../../src/core/rotation/steps.js';
import { verify } from '../../src/core/rotation/verify.js';
import { AesGcmV1Codec } from '../../src/crypto/codec.js';
import { generateKey } from '../../src/crypto/keys.js';
import { appendAudit, listAudit } from '../../src/rotation/store.js';
import { incidentSummary, previewSteps, runbookProgress } from '../../src/runbook/engine.js';
import { findRunbook } from '../../src/runbook/load.js';
import { incidentText, planLines } from '../../src/runbook/render.js';
import { AskAborted, runRunbook, type Asker, type RunnerIO, type StepChoice } from '../../src/runbook/runner.js';
import { parseRunbook } from '../../src/runbook/schema.js';
import { Output } from '../../src/ui/output.js';
import { openTestContext } from '../helpers/context.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';

const TARGETS = `targets:\n  - table: customers\n    columns: [email, phone, notes]\n`;
const POLICY = `policy:\n  minPropagationSeconds: 0\n  rollbackWindowDays: 30\n  retiredKeyRetentionDays: 0\n`;

const ROTATION = parseRunbook(
  `name: op-rotation
title: Operator rotation
description: a short rotation
steps:
  - { id: generate, kind: command, command: generate, title: Generate, explain: a new key }
  - { id: dual-key, kind: command, command: dual-key, title: Dual key, explain: new key primary }
  - { id: reencrypt, kind: command, command: reencrypt, title: Re-encrypt, explain: rewrite }
  - { id: verify, kind: command, command: verify, title: Verify, explain: check }
  - { id: promote, kind: command, command: promote, title: Promote, explain: drop the old key }
  - { id: retire, kind: command, command: retire, title: Retire, explain: close }
`,
  '/runbooks/op-rotation.yaml',
);

interface Asked {
  step: string;
  choices: StepChoice[];
}

/** Answers in order; each answer may be a function of what was offered. Past the last one: Ctrl-C. */
function scripted(answers: Array<string | ((offered: StepChoice[]) => string)>): Asker & { asked: Asked[] } {
  const queue = [...answers];
  const asked: Asked[] = [];
  return {
    asked,
    async choose(step, offer) {
      asked.push({ step: step.id, choices: offer.choices });
      const a = queue.shift();
      if (a === undefined) throw new AskAborted('User force closed the prompt with SIGINT');
      const answer = typeof a === 'function' ? a(offer.choices) : a;
      if (!offer.choices.includes(answer as StepChoice)) throw new Error(`"${answer}" was not offered at ${step.id}: ${offer.choices.join(', ')}`);
      return answer as StepChoice;
    },
    async text() {
      const a = queue.shift();
      if (typeof a !== 'string') throw new AskAborted('no text scripted');
      return a;
    },
  };
}

function sink(): { write(s: string): boolean; text: () => string } {
  let text = '';
  return {
    write: (s) => {
      text += s;
      return true;
    },
    text: () => text,
  };
}

for (const dialect of DIALECTS) {
  describe.skipIf(!dialectAvailable(dialect))(`runbook prompts on ${dialect}`, () => {
    const t = perTestDatabase(dialect);
    let clock = 0;

    async function setup(rows = 10): Promise<CoreContext> {
      clock = Date.parse('2030-01-01T00:00:00Z');
      const ctx = await openTestContext(t.db, { extraConfig: TARGETS + POLICY, now: () => new Date(clock) });
      t.cleanup(() => ctx.db.close());
      const key = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await createDemoTable(ctx.db, { rows, version: 'v1', key, codec: new AesGcmV1Codec(), replace: false });
      return ctx;
    }

    /** Commands run the core operations; `interruptReencrypt` makes the first reencrypt exit as Ctrl-C does (7). */
    function io(ctx: CoreContext, asker: Asker | null, opts: { interruptReencrypt?: boolean } = {}) {
      const stderr = sink();
      const invoked: string[] = [];
      let interrupt = opts.interruptReencrypt ?? false;
      const run = async (argv: string[]): Promise<number> => {
        switch (argv[0]) {
          case 'generate': {
            const flag = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
            await generate(ctx, { emergency: argv.includes('--emergency'), compromised: flag('--compromised'), reason: flag('--reason') });
            return ExitCode.OK;
          }
          case 'backup':
            // `backup --if-configured` with no backup configured: nothing to do.
            return ExitCode.OK;
          case 'dual-key':
            await dualKey(ctx);
            return ExitCode.OK;
          case 'reencrypt':
            if (interrupt) {
              interrupt = false;
              return ExitCode.INTERRUPTED;
            }
            await reencrypt(ctx, { dryRun: false });
            return ExitCode.OK;
          case 'verify':
            await verify(ctx, {});
            return ExitCode.OK;
          case 'promote':
            await promote(ctx);
            return ExitCode.OK;
          case 'retire':
            await retire(ctx, {});
            return ExitCode.OK;
          default:
            throw new Error(`no such command in this test: ${argv.join(' ')}`);
        }
      };
      const value: RunnerIO = {
        ctx,
        output: new Output({ json: false, color: false, env: {}, stdout: sink(), stderr }),
        cwd: '/',
        asker,
        columns: () => 100,
        invoke: async (argv) => {
          invoked.push(argv.join(' '));
          try {
            return await run(argv);
          } catch (err) {
            if (err instanceof KeyctlError) return err.exitStatus;
            throw err;
          }
        },
        sleep: async (ms) => {
          clock += ms;
        },
        progress: async () => ({ update: () => undefined, stop: () => undefined }),
      };
      return { value, invoked, stderr: stderr.text };
    }

    it('a reencrypt stopped by Ctrl-C is interrupted and resumable, not failed; a step the machine refuses now is not offered as Run, with the reason and the date', async () => {
      const ctx = await setup();
      const alice = scripted(['run', 'run', 'run']);
      const first = io({ ...ctx, actor: 'alice@ops' }, alice, { interruptReencrypt: true });
      expect(await runRunbook(first.value, ROTATION, {})).toMatchObject({ outcome: 'aborted', step: 'reencrypt' });
      expect(first.stderr()).toContain('⏸ step reencrypt interrupted. To resume (any operator, any machine): keyctl runbook run op-rotation');
      expect(first.stderr()).not.toContain('✗ step');
      const row = (await listAudit(ctx.db, 'default')).filter((r) => r.action === 'runbook-step').at(-1)!;
      expect(row).toMatchObject({ outcome: 'interrupted', details: { step: 'reencrypt', exitCode: ExitCode.INTERRUPTED } });
      const progress = await runbookProgress(ctx, ROTATION);
      const plan = planLines(first.value.output, '/', ROTATION, progress, 'default').join('\n');
      expect(plan).toMatch(/▸ +3 reencrypt .*interrupted by alice@ops .*: resume here/);

      // Bob resumes; retire inside the 30-day rollback window is shown refused, with its date, and offers no Run.
      const bob = scripted(['run', 'run', 'run', 'abort']);
      const second = io({ ...ctx, actor: 'bob@ops' }, bob);
      expect(await runRunbook(second.value, ROTATION, {})).toMatchObject({ outcome: 'aborted', step: 'retire' });
      expect(second.stderr()).toContain('interrupted here by alice@ops');
      expect(second.stderr()).toMatch(/Run resumes it/);
      expect(bob.asked).toEqual([
        { step: 'reencrypt', choices: ['run', 'skip', 'abort'] },
        { step: 'verify', choices: ['run', 'skip', 'abort'] },
        { step: 'promote', choices: ['run', 'skip', 'abort'] },
        { step: 'retire', choices: ['skip', 'abort'] },
      ]);
      expect(second.stderr()).toMatch(/retire: refused now — .*rollback window.*\(stop here until 2030-01-31\)/);
      expect(second.invoked).toEqual(['reencrypt', 'verify', 'promote']);
    });

    it('an external check runs the command named in keyctl.yaml, shown first, and records its exit code and last line; without one it is skipped with a note', async () => {
      const base = await setup();
      const steps =
        `name: ext\ntitle: E\ndescription: d\nsteps:\n` +
        `  - { id: db-backup, kind: check, check: external, external: db-backup, title: Database backup, explain: e }\n` +
        `  - { id: other, kind: check, check: external, external: not-there, title: Not configured, explain: e }\n`;
      const runbook = parseRunbook(steps, '/runbooks/ext.yaml');
      const ctx = {
        ...base,
        config: {
          ...base.config,
          checks: {
            'db-backup': { command: 'echo checking; echo "snapshot rds:db-2030-01-01 is 3 h old"', description: 'the nightly snapshot', timeoutSeconds: 10 },
          },
        },
      };
      const run = io(ctx, scripted(['run', 'run']));
      expect(await runRunbook(run.value, runbook, {})).toEqual({
        outcome: 'finished',
        steps: [
          { id: 'db-backup', outcome: 'ok' },
          { id: 'other', outcome: 'skipped' },
        ],
      });
      const text = run.stderr();
      // Shown before the choice.
      expect(text.indexOf('runs (from keyctl.yaml checks.db-backup): $ echo checking;')).toBeGreaterThan(0);
      expect(text).toContain('✓ db-backup: db-backup: exit 0: snapshot rds:db-2030-01-01 is 3 h old');
      expect(text).toContain('↷ no check command "not-there" in keyctl.yaml');
      const rows = (await listAudit(ctx.db, 'default')).filter((r) => r.action === 'runbook-step');
      expect(rows[0]!.details).toMatchObject({ check: 'external', external: 'db-backup', exitCode: 0, lastLine: 'snapshot rds:db-2030-01-01 is 3 h old' });
      expect(rows[1]).toMatchObject({
        outcome: 'skipped',
        details: { external: 'not-there', skipped: expect.stringContaining('no check command "not-there"') },
      });

      // A failing command: its exit code and last line, and Retry is offered.
      const failing = {
        ...ctx,
        config: { ...ctx.config, checks: { 'db-backup': { command: 'echo "no snapshot since 2029-12-30" >&2; exit 3', timeoutSeconds: 10 } } },
      };
      const again = io(failing, scripted(['run', 'abort']));
      expect(
        await runRunbook(
          again.value,
          parseRunbook(steps.replace('name: ext', 'name: ext-again').split('\n').slice(0, 5).join('\n'), '/runbooks/ext-again.yaml'),
          {},
        ),
      ).toMatchObject({ outcome: 'aborted' });
      expect(again.stderr()).toContain('✗ step db-backup failed: db-backup: exit 3: no snapshot since 2029-12-30');
      const failed = (await listAudit(ctx.db, 'default')).filter((r) => r.action === 'runbook-step' && r.outcome === 'failed').at(-1)!;
      expect(failed.details).toMatchObject({ exitCode: 3, lastLine: 'no snapshot since 2029-12-30' });

      // The runbook file cannot carry the command: only a name.
      const problems = (text: string): string => {
        try {
          parseRunbook(text, '/x.yaml');
          return '';
        } catch (err) {
          return (err as ConfigError).problems.join('\n');
        }
      };
      expect(problems(steps.replace('external: db-backup', 'external: db-backup, command: "rm -rf /"'))).toMatch(/unknown key "command"/);
      expect(problems(steps.replace(', external: db-backup', ''))).toMatch(/check: external needs "external"/);
    });

    it('a failed check offers Retry, Skip and Abort with one hint; Retry after the fix passes', async () => {
      const ctx = await setup();
      const checks = parseRunbook(
        `name: checks\ntitle: Checks\ndescription: d\nsteps:\n` +
          `  - { id: recovered, kind: check, check: recover-test-recent, title: Recovery test, explain: e, on_failure: Run the key-recovery-test runbook. }\n` +
          `  - { id: db, kind: check, check: database-reachable, title: Database, explain: e }\n`,
        '/runbooks/checks.yaml',
      );
      const fix = async () =>
        appendAudit(ctx.db, { keyring: 'default', action: 'recover-test', actor: 'carol@ops', rotationId: null, outcome: 'ok', details: {} }, new Date(clock));
      let fixed = false;
      const asker = scripted([
        'run',
        (offered) => {
          expect(offered).toEqual(['retry', 'skip', 'abort']);
          // Someone runs the recovery test in another terminal meanwhile.
          fixed = true;
          return 'retry';
        },
        'run',
      ]);
      const run = io(ctx, asker);
      const before = asker.choose.bind(asker);
      asker.choose = async (step, offer) => {
        const a = await before(step, offer);
        if (fixed) {
          fixed = false;
          await fix();
        }
        return a;
      };
      expect(await runRunbook(run.value, checks, {})).toEqual({
        outcome: 'finished',
        steps: [
          { id: 'recovered', outcome: 'failed' },
          { id: 'recovered', outcome: 'ok' },
          { id: 'db', outcome: 'ok' },
        ],
      });
      const text = run.stderr();
      expect(text).toContain('✗ step recovered failed: no recovery test has passed yet');
      expect(text).toContain('what to do: Run the key-recovery-test runbook.');
      // One hint: the step's guidance, not also "run the runbook again".
      expect(text).not.toContain('again; it resumes at this step');
      expect(text).toContain('✓ recovered: passed');
    });

    it('the emergency runbook on a first run says nothing of resuming; a second run after an abort does', async () => {
      const ctx = await setup();
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false });
      await verify(ctx, {});
      await promote(ctx);
      const emergency = findRunbook('emergency-rotation', {});
      const sets = { incident: 'INC-1', compromised: 'v2', reason: 'leak' };
      const first = io(ctx, scripted(['run', 'run', 'abort']));
      expect(await runRunbook(first.value, emergency, sets)).toMatchObject({ outcome: 'aborted', step: 'generate' });
      expect(first.stderr()).not.toContain('resuming at');
      const second = io(ctx, scripted(['abort']));
      await runRunbook(second.value, emergency, sets);
      expect(second.stderr()).toContain('resuming at step 3 (generate)');
    });

    it('an emergency step refused because the routine rotation introduced the compromised key names the way forward, in the prompt and the plan', async () => {
      const ctx = await setup();
      await generate(ctx, { emergency: false });
      await dualKey(ctx);
      await reencrypt(ctx, { dryRun: false });
      await verify(ctx, {});
      await promote(ctx);
      const emergency = findRunbook('emergency-rotation', {});
      const sets = { incident: 'INC-1', compromised: 'v2', reason: 'leak' };
      const asker = scripted(['run', 'run', 'abort']);
      const run = io(ctx, asker);
      expect(await runRunbook(run.value, emergency, sets)).toMatchObject({ outcome: 'aborted', step: 'generate' });
      expect(asker.asked.at(-1)).toEqual({ step: 'generate', choices: ['skip', 'abort'] });
      // One line of text, as a person reads the folded lines (without any time prefix on each).
      const prompt = run
        .stderr()
        .slice(run.stderr().indexOf('Step 3/'))
        .split('\n')
        .map((l) => l.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ /, '').trim())
        .join(' ');
      expect(prompt).toContain('generate --emergency: refused now — rotation #1 (routine, v1 → v2, phase promoted) introduced v2');
      expect(prompt).toContain(
        'way forward: every value is already under v2: close the routine rotation with `keyctl retire --force --reason "…"`, then `keyctl generate --emergency --compromised v2 --reason "…"`',
      );
      expect(run.invoked).toEqual([]);
      const progress = await runbookProgress(ctx, emergency);
      const plan = planLines(run.value.output, '/', emergency, progress, 'default', await previewSteps(ctx, progress, sets)).join('\n');
      expect(plan).toMatch(
        /refused now — .*introduced v2.*\n +way forward: .*`keyctl retire --force --reason "…"`, then `keyctl generate --emergency --compromised v2/,
      );
    });

    it('a rotation done by hand: steps that only prepare a command that ran are passed over, not done; a command run by hand keeps its own time', async () => {
      const ctx = await setup();
      const at = (minute: number) => {
        clock = Date.parse('2030-01-01T00:00:00Z') + minute * 60_000;
      };
      const alice = { ...ctx, actor: 'alice@ops' };
      at(1);
      await generate(alice, { emergency: false });
      at(2);
      await dualKey(alice);
      at(3);
      await reencrypt(alice, { dryRun: false });
      const routine = findRunbook('routine-rotation', {});
      const plan = async () => {
        const progress = await runbookProgress(ctx, routine);
        return { progress, text: planLines(io(ctx, null).value.output, '/', routine, progress, 'default').join('\n') };
      };
      const { progress, text } = await plan();
      const status = Object.fromEntries(progress.steps.map((s) => [s.step.id, s.status]));
      expect(status).toMatchObject({
        'database-reachable': 'passed',
        generate: 'done-outside',
        'backup-new-key': 'passed',
        deploy: 'passed',
        propagation: 'passed',
        'dual-key': 'done-outside',
        'reencrypt-dry-run': 'passed',
        reencrypt: 'done-outside',
        verify: 'none',
      });
      expect(text).not.toMatch(/backup-new-key .*done/);
      expect(text).not.toMatch(/reencrypt-dry-run .*done/);
      expect(text).toMatch(/↷ +\d+ backup-new-key .*— passed: the rotation moved on \(dual-key ran 2030-01-01 00:02:00Z, by alice@ops\)/);
      expect(text).toMatch(/↷ +\d+ reencrypt-dry-run .*— passed: the rotation moved on \(reencrypt ran 2030-01-01 00:03:00Z, by alice@ops\)/);
      expect(text).toMatch(/◆ +\d+ generate .*done outside the runbook by alice@ops 2030-01-01 00:01:00Z/);
      expect(text).toMatch(/◆ +\d+ dual-key .*done outside the runbook by alice@ops 2030-01-01 00:02:00Z/);
      expect(text).toMatch(/▸ +\d+ verify/);
      expect(text).toContain('↷ skipped, or passed over');

      // A backup taken by hand during the rotation is the step's own action: done outside, at its own time.
      await appendAudit(
        ctx.db,
        { keyring: 'default', action: 'backup', actor: 'bob@ops', rotationId: progress.rotation!.id, outcome: 'ok', details: { file: 'b.age' } },
        new Date(Date.parse('2030-01-01T00:04:00Z')),
      );
      expect((await plan()).text).toMatch(/◆ +\d+ backup-new-key .*done outside the runbook by bob@ops 2030-01-01 00:04:00Z/);
    });

    it('the incident summary names the incident once and counts rows as everything else does', async () => {
      const ctx = await setup(1500);
      const emergency = findRunbook('emergency-rotation', {});
      // The inputs typed at the start, then Run up to re-encryption, and Ctrl-C at verify.
      const asker = scripted(['INC-77', 'v1', 'v1 key pasted in a chat', 'run', 'run', 'run', 'run', 'run', 'DEP-1', 'run', 'run']);
      const run = io({ ...ctx, actor: 'oncall@ops' }, asker);
      expect(await runRunbook(run.value, emergency, {})).toMatchObject({ outcome: 'aborted', step: 'verify' });
      const summary = (await incidentSummary(ctx, 'INC-77'))!;
      expect(summary.rowsReencrypted).toBe(1500);
      expect(summary.reason).toBe('INC-77: v1 key pasted in a chat');
      expect(summary.timeline.find((e) => e.action === 'incident entered')?.detail).toBe('INC-77: v1 key pasted in a chat');
      expect(summary.timeline.filter((e) => e.action === 'reencrypt').map((e) => e.detail)).toEqual(['1,500 rows']);
      const text = incidentText(run.value.output, summary);
      expect(text).not.toContain('INC-77 — INC-77');
      expect(text).not.toMatch(/\b1500\b/);
      expect(text).toContain('rows re-encrypted: 1,500 (all passes)');
    });
  });
}
