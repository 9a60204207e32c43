/**
 * docs/runbook-screen.txt is a tmux capture of the shipped routine-rotation runbook: it must show
 * that runbook as it is now (every step in the plan, in order, and `Step N/M` with its step count),
 * and fit a 140-column page.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { forApprovalPolicy, loadRunbookFile } from '../../src/runbook/schema.js';

const ROOT = new URL('../../', import.meta.url);
const screen = readFileSync(new URL('docs/runbook-screen.txt', ROOT), 'utf8');
// Captured with a keyctl.yaml that has no approvals section: the approval steps are not in the run.
const runbook = forApprovalPolicy(loadRunbookFile(new URL('runbooks/routine-rotation.yaml', ROOT).pathname), undefined);

describe('docs/runbook-screen.txt', () => {
  it('shows every step of the shipped routine-rotation runbook in its plan, in order', () => {
    const planIds = [...screen.matchAll(/^[✓◆↷✗⏸▸·–] +\d+ (\S+)/gm)].map((m) => m[1]);
    expect(planIds).toEqual(runbook.steps.map((s) => s.id));
  });

  it('counts the steps as the runbook does', () => {
    const totals = [...screen.matchAll(/^Step \d+\/(\d+) /gm)].map((m) => Number(m[1]));
    expect(totals.length).toBeGreaterThan(0);
    for (const total of totals) expect(total).toBe(runbook.steps.length);
    for (const m of screen.matchAll(/^Step (\d+)\/\d+ · .*\[(\S+), \w+\]$/gm)) expect(runbook.steps[Number(m[1]) - 1]?.id).toBe(m[2]);
  });

  it('is narrower than 140 columns', () => {
    for (const line of screen.split('\n')) expect([...line].length, line).toBeLessThan(140);
  });
});
