/**
 * The documented schedules fit the checks that read their results: every cron line in the docs that
 * runs a recovery test (`recover-test`, or the key-recovery-test runbook) leaves no gap longer than
 * the routine runbook's `recover-test-recent` window (and its default) nor `status --check`'s
 * backup.recoverTestMaxAgeDays default. A quarterly cron leaves 91–92-day gaps: too long for 90 days.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { parseRunbook, RECOVER_TEST_RECENT_DAYS } from '../../src/runbook/schema.js';

const ROOT = new URL('../../', import.meta.url);
const FILES = ['README.md', 'docs/runbooks.md', 'docs/backup.md', 'runbooks/key-recovery-test.yaml'];

/** The cron lines (minute hour day-of-month month day-of-week command) that run a recovery test. */
function recoveryCrons(): Array<{ file: string; line: string }> {
  const out: Array<{ file: string; line: string }> = [];
  for (const file of FILES) {
    for (const raw of readFileSync(new URL(file, ROOT), 'utf8').split('\n')) {
      const line = raw.replace(/^#\s*/, '');
      if (/^[\d*,/-]+ [\d*,/-]+ [\d*,/-]+ [\d*,/-]+ [\d*,/-]+ /.test(line) && /recover-test|key-recovery-test/.test(line)) out.push({ file, line });
    }
  }
  return out;
}

function field(spec: string, min: number, max: number): number[] {
  const values = new Set<number>();
  for (const part of spec.split(',')) {
    const [range, step] = part.split('/');
    const [lo, hi] = range === '*' ? [min, max] : range!.includes('-') ? range!.split('-').map(Number) : [Number(range), Number(range)];
    for (let v = lo!; v <= (step && range !== '*' && !range!.includes('-') ? max : hi!); v += Number(step ?? 1)) values.add(v);
  }
  return [...values];
}

/** The longest gap, in days, between two runs of `line` over four years (day-of-week must be *). */
function longestGapDays(line: string): number {
  const [min, hour, dom, month, dow] = line.split(/\s+/);
  expect(dow, line).toBe('*');
  const days = field(dom!, 1, 31);
  const months = field(month!, 1, 12);
  const runs: number[] = [];
  for (let t = Date.UTC(2027, 0, 1); t < Date.UTC(2031, 0, 1); t += 86_400_000) {
    const d = new Date(t);
    if (days.includes(d.getUTCDate()) && months.includes(d.getUTCMonth() + 1)) runs.push(t + (Number(hour) * 60 + Number(min)) * 60_000);
  }
  let longest = 0;
  for (let i = 1; i < runs.length; i++) longest = Math.max(longest, (runs[i]! - runs[i - 1]!) / 86_400_000);
  return longest;
}

describe('documented recovery-test schedules', () => {
  const routine = parseRunbook(readFileSync(new URL('runbooks/routine-rotation.yaml', ROOT), 'utf8'), 'routine-rotation.yaml');
  const step = routine.steps.find((s) => s.kind === 'check' && s.check === 'recover-test-recent');
  const runbookDays = step?.kind === 'check' ? (step.days ?? RECOVER_TEST_RECENT_DAYS) : RECOVER_TEST_RECENT_DAYS;
  const statusDays = ConfigSchema.shape.backup.parse(undefined).recoverTestMaxAgeDays;

  it('are documented', () => {
    expect(recoveryCrons().length).toBeGreaterThanOrEqual(2);
  });

  for (const { file, line } of recoveryCrons()) {
    it(`${file}: "${line.slice(0, 40)}…" fits recover-test-recent (${runbookDays} days) and status --check (${statusDays} days)`, () => {
      const gap = longestGapDays(line);
      expect(gap).toBeLessThanOrEqual(runbookDays);
      expect(gap).toBeLessThanOrEqual(RECOVER_TEST_RECENT_DAYS);
      expect(gap).toBeLessThanOrEqual(statusDays);
    });
  }
});
