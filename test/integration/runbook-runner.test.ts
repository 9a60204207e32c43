/**
 * The runbook runner in-process, with scripted answers instead of a terminal: which steps run and
 * in what order, the runbook-step rows it writes, resuming with a second operator, aborts (at a
 * prompt, during a wait), failures without a person, and the per-run audit query it stands on.
 * The real-terminal runs are in test/e2e/runbook.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { KeyctlError, RefusedError } from '../../src/base/errors.js';
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
import { listAudit, openRotation, runbookRunAudit } from '../../src/rotation/store.js';
import { AskAborted, runRunbook, type Asker, type RunnerIO, type StepChoice } from '../../src/runbook/runner.js';
import { parseRunbook } from '../../src/runbook/schema.js';
import { Output } from '../../src/ui/output.js';
import { openTestContext } from '../helpers/context.js';
import { DIALECTS, dialectAvailable, perTestDatabase } from '../helpers/databases.js';

const TARGETS = `targets:\n  - table: customers\n    columns: [email, phone, notes]\n`;
const POLICY = `policy:\n  minPropagationSeconds: 30\n  rollbackWindowDays: 0\n  retiredKeyRetentionDays: 0\n`;

const ROTATION = parseRunbook(
  `name: test-rotation
title: Test rotation
description: a short rotation for the runner's tests
inputs:
  - id: ticket
    prompt: Change ticket
    pattern: ^CHG-\\d+$
steps:
  - { id: db, kind: check, check: database-reachable, title: Database, explain: reachable }
  - { id: no-open, kind: check, check: no-open-rotation, phases: [none], title: No rotation open, explain: nothing open }
  - { id: generate, kind: command, command: generate, title: Generate, explain: a new key }
  - { id: deploy, kind: confirm, before: dual-key, title: Deploy, explain: roll out, input: { prompt: Deployment reference } }
  - { id: propagation, kind: wait, wait: propagation, before: dual-key, title: Propagation, explain: readers pick it up }
  - { id: dual-key, kind: command, command: dual-key, title: Dual key, explain: new key primary }
  - { id: reencrypt, kind: command, command: reencrypt, title: Re-encrypt, explain: rewrite }
  - { id: verify, kind: command, command: verify, title: Verify, explain: check }
  - { id: promote, kind: command, command: promote, title: Promote, explain: drop the old key }
  - { id: retire, kind: command, command: retire, title: Retire, explain: close }
`,
  '/runbooks/test-rotation.yaml',
);

/** A person who gives these answers in order; past the last one they press Ctrl-C. */
function scripted(answers: string[]): Asker & { asked: string[] } {
  const queue = [...answers];
  const asked: string[] = [];
  const next = (question: string): string => {
    asked.push(question);
    const a = queue.shift();
    if (a === undefined) throw new AskAborted('User force closed the prompt with SIGINT');
    return a;
  };
  return {
    asked,
    async choose(step) {
      const a = next(`${step.id}: what now?`);
      if (!['run', 'skip', 'abort'].includes(a)) throw new Error(`scripted answer "${a}" to ${step.id}: what now?`);
      return a as StepChoice;
    },
    async text(message, pattern) {
      const a = next(message);
      if (pattern && !new RegExp(pattern).test(a)) throw new Error(`scripted answer "${a}" does not match ${pattern}`);
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
  describe.skipIf(!dialectAvailable(dialect))(`the runbook runner on ${dialect}`, () => {
    const t = perTestDatabase(dialect);
    let clock = 0;

    async function setup(): Promise<CoreContext> {
      clock = Date.parse('2030-01-01T00:00:00Z');
      const ctx = await openTestContext(t.db, { extraConfig: TARGETS + POLICY, now: () => new Date(clock) });
      t.cleanup(() => ctx.db.close());
      const key = generateKey();
      await ctx.keystore.write({ keyring: 'default', primary: 'v1', keys: new Map([['v1', key]]) }, null, 'create');
      await reconcileRegistry(ctx);
      await createDemoTable(ctx.db, { rows: 20, version: 'v1', key, codec: new AesGcmV1Codec(), replace: false });
      return ctx;
    }

    /** The runner's surroundings: commands run the core operations in this process, sleeping moves the clock. */
    function io(ctx: CoreContext, asker: Asker | null, signal?: AbortSignal) {
      const stderr = sink();
      const invoked: string[] = [];
      const slept: number[] = [];
      const run = async (argv: string[]): Promise<unknown> => {
        switch (argv[0]) {
          case 'generate':
            return generate(ctx, { emergency: false });
          case 'dual-key':
            return dualKey(ctx);
          case 'reencrypt':
            return reencrypt(ctx, { dryRun: false });
          case 'verify':
            return verify(ctx, {});
          case 'promote':
            return promote(ctx);
          case 'retire':
            return retire(ctx, {});
          default:
            throw new Error(`no such command in this test: ${argv.join(' ')}`);
        }
      };
      const value: RunnerIO = {
        ctx,
        output: new Output({ json: false, color: false, env: {}, stdout: sink(), stderr }),
        cwd: '/',
        asker,
        columns: () => 80,
        invoke: async (argv) => {
          invoked.push(argv.join(' '));
          try {
            await run(argv);
            return ExitCode.OK;
          } catch (err) {
            if (err instanceof KeyctlError) return err.exitStatus;
            throw err;
          }
        },
        sleep: async (ms, s) => {
          if (s?.aborted) throw new Error('aborted');
          slept.push(ms);
          clock += ms;
        },
        progress: async () => ({ update: () => undefined, stop: () => undefined }),
        ...(signal ? { signal } : {}),
      };
      return { value, invoked, slept, stderr: stderr.text };
    }

    async function runbookRows(ctx: CoreContext) {
      return (await listAudit(ctx.db, 'default'))
        .filter((r) => r.action === 'runbook-step')
        .map((r) => ({ step: r.details?.step, outcome: r.outcome, actor: r.actor, rotation: r.rotationId }));
    }

    it('runs the steps in order with scripted answers, records every outcome, aborts at a prompt and resumes with a second operator', async () => {
      const ctx = await setup();
      const alice = scripted(['CHG-7', 'run', 'skip', 'trial run', 'run', 'run', 'DEP-9', 'run', 'run', 'run', 'run']);
      const first = io({ ...ctx, actor: 'alice@ops' }, alice);
      const r1 = await runRunbook(first.value, ROTATION, {});

      // The answers ran out at promote: Ctrl-C there is an abort, recorded, resumable.
      expect(r1).toEqual({
        outcome: 'aborted',
        step: 'promote',
        steps: [
          { id: 'db', outcome: 'ok' },
          { id: 'no-open', outcome: 'skipped' },
          { id: 'generate', outcome: 'ok' },
          { id: 'deploy', outcome: 'ok' },
          { id: 'propagation', outcome: 'ok' },
          { id: 'dual-key', outcome: 'ok' },
          { id: 'reencrypt', outcome: 'ok' },
          { id: 'verify', outcome: 'ok' },
          { id: 'promote', outcome: 'aborted' },
        ],
      });
      expect(alice.asked).toEqual([
        'Change ticket',
        'db: what now?',
        'no-open: what now?',
        'Why skip this step? (recorded in the audit)',
        'generate: what now?',
        'deploy: what now?',
        'Deployment reference',
        'propagation: what now?',
        'dual-key: what now?',
        'reencrypt: what now?',
        'verify: what now?',
        'promote: what now?',
      ]);
      expect(first.invoked).toEqual(['generate', 'dual-key', 'reencrypt', 'verify']);
      // The propagation wait counted the 30 s since generate down, a second at a time.
      expect(first.slept).toEqual(Array(30).fill(1000));
      expect(first.stderr()).toContain('aborted at step promote. To resume (any operator, any machine): keyctl runbook run test-rotation');
      expect((await openRotation(ctx.db, 'default'))?.phase).toBe('verified');

      const rotation = (await openRotation(ctx.db, 'default'))!.id;
      const aliceRows = [
        { step: 'db', outcome: 'ok', actor: 'alice@ops', rotation: null },
        { step: 'no-open', outcome: 'skipped', actor: 'alice@ops', rotation: null },
        { step: 'generate', outcome: 'ok', actor: 'alice@ops', rotation },
        { step: 'deploy', outcome: 'ok', actor: 'alice@ops', rotation },
        { step: 'propagation', outcome: 'ok', actor: 'alice@ops', rotation },
        { step: 'dual-key', outcome: 'ok', actor: 'alice@ops', rotation },
        { step: 'reencrypt', outcome: 'ok', actor: 'alice@ops', rotation },
        { step: 'verify', outcome: 'ok', actor: 'alice@ops', rotation },
        { step: 'promote', outcome: 'interrupted', actor: 'alice@ops', rotation },
      ];
      expect(await runbookRows(ctx)).toEqual(aliceRows);
      const audit = await listAudit(ctx.db, 'default');
      expect(audit.find((a) => a.details?.step === 'no-open')?.details).toMatchObject({ skipped: 'trial run', inputs: { ticket: 'CHG-7' } });
      expect(audit.find((a) => a.details?.step === 'deploy')?.details).toMatchObject({ value: 'DEP-9' });
      expect(audit.find((a) => a.details?.step === 'propagation')?.details).toMatchObject({ waitedSeconds: 30 });

      // A second operator resumes at promote; the ticket given in this rotation is not asked again.
      const bob = scripted(['run', 'run']);
      const second = io({ ...ctx, actor: 'bob@ops' }, bob);
      const r2 = await runRunbook(second.value, ROTATION, {});
      expect(r2).toEqual({
        outcome: 'finished',
        steps: [
          { id: 'promote', outcome: 'ok' },
          { id: 'retire', outcome: 'ok' },
        ],
      });
      expect(bob.asked).toEqual(['promote: what now?', 'retire: what now?']);
      expect(second.invoked).toEqual(['promote', 'retire']);
      expect(second.stderr()).toContain('resuming at step 9 (promote)');
      expect(second.stderr()).toContain('✓ runbook test-rotation: nothing left to do');
      expect(await openRotation(ctx.db, 'default')).toBeNull();
      expect(await runbookRows(ctx)).toEqual([
        ...aliceRows,
        { step: 'promote', outcome: 'ok', actor: 'bob@ops', rotation },
        { step: 'retire', outcome: 'ok', actor: 'bob@ops', rotation },
      ]);
      expect((await listAudit(ctx.db, 'default')).find((a) => a.details?.step === 'retire')?.details).toMatchObject({ inputs: { ticket: 'CHG-7' } });
    });

    it('queries only the rows of one run: the open rotation and what came after the previous one closed', async () => {
      const ctx = await setup();
      // A whole rotation, then a new run starts: its first check comes after rotation 1 closed.
      const r1 = await runRunbook(io(ctx, scripted(['CHG-1', ...Array(2).fill('run'), 'run', 'run', 'D-1', ...Array(6).fill('run')])).value, ROTATION, {});
      expect(r1.outcome).toBe('finished');
      expect(await runbookRunAudit(ctx.db, 'default', null)).toEqual([]);
      clock += 60_000;
      const r2 = await runRunbook(io(ctx, scripted(['CHG-2', 'run', 'run', 'run'])).value, ROTATION, {});
      expect(r2).toMatchObject({ outcome: 'aborted', step: 'deploy' });

      const open = (await openRotation(ctx.db, 'default'))!;
      expect(open.id).toBe(2);
      const run = await runbookRunAudit(ctx.db, 'default', open.id);
      // Rotation 1's rows, its pre-generate checks and everything before are not part of this run.
      expect(run.every((r) => r.rotationId === open.id || (r.rotationId === null && r.createdAt.getTime() >= clock - 1))).toBe(true);
      expect(run.filter((r) => r.action === 'runbook-step').map((r) => `${String(r.details?.step)}:${r.outcome}`)).toEqual([
        'db:ok',
        'no-open:ok',
        'generate:ok',
        'deploy:interrupted',
      ]);
      expect(run.map((r) => r.action)).toContain('generate');
      const all = await listAudit(ctx.db, 'default');
      const lastOfRotation1 = Math.max(...all.filter((a) => a.rotationId === 1).map((a) => a.id));
      expect(all.length).toBeGreaterThan(run.length + 10);
      expect(run.map((r) => r.id)).toEqual(all.filter((r) => r.rotationId === open.id || (r.rotationId === null && r.id > lastOfRotation1)).map((r) => r.id));
    });

    it('without a person: runs until a check fails (its status), refuses a confirm step, and a wait aborted by the signal is recorded', async () => {
      const ctx = await setup();
      const checks = parseRunbook(
        `name: checks\ntitle: Checks\ndescription: d\nsteps:\n` +
          `  - { id: db, kind: check, check: database-reachable, title: Database, explain: e }\n` +
          `  - { id: backup, kind: check, check: backup-fresh, title: Backup, explain: e, on_failure: run keyctl backup }\n` +
          `  - { id: never, kind: check, check: no-open-rotation, title: Never reached, explain: e }\n`,
        '/runbooks/checks.yaml',
      );
      const failed = io(ctx, null);
      expect(await runRunbook(failed.value, checks, {})).toEqual({
        outcome: 'failed',
        step: 'backup',
        exitCode: ExitCode.PROBLEMS_FOUND,
        steps: [
          { id: 'db', outcome: 'ok' },
          { id: 'backup', outcome: 'failed' },
        ],
      });
      expect(failed.stderr()).toContain('✗ step backup failed: no intact backup of keyring default');
      expect(failed.stderr()).toContain('what to do: run keyctl backup');

      const confirm = parseRunbook(
        `name: confirm\ntitle: C\ndescription: d\nsteps:\n  - { id: ok, kind: confirm, title: Done?, explain: e }\n`,
        '/runbooks/confirm.yaml',
      );
      await expect(runRunbook(io(ctx, null).value, confirm, {})).rejects.toThrow(RefusedError);

      const waits = parseRunbook(
        `name: waits\ntitle: W\ndescription: d\nsteps:\n  - { id: pause, kind: wait, wait: 600, title: Pause, explain: e }\n  - { id: after, kind: check, check: database-reachable, title: After, explain: e }\n`,
        '/runbooks/waits.yaml',
      );
      const controller = new AbortController();
      const waiting = io(ctx, null, controller.signal);
      const sleep = waiting.value.sleep;
      waiting.value.sleep = async (ms, s) => {
        if (waiting.slept.length === 3) controller.abort();
        await sleep(ms, s);
      };
      expect(await runRunbook(waiting.value, waits, {})).toEqual({ outcome: 'aborted', step: 'pause', steps: [{ id: 'pause', outcome: 'aborted' }] });
      expect(waiting.slept).toEqual([1000, 1000, 1000]);
      expect((await runbookRows(ctx)).slice(-1)).toEqual([{ step: 'pause', outcome: 'interrupted', actor: 'tester@test', rotation: null }]);
    });
  });
}
