/** The `status --check` problem codes are a contract: README and docs/monitoring.md list exactly the ones the code has. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PROBLEM_CODES } from '../../src/core/health.js';
import { BackupSchema, PolicySchema } from '../../src/config/schema.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
/** README's "Monitoring" section (other tables there list commands the same way). */
const readmeMonitoring = readme.slice(readme.indexOf('\n## Monitoring\n'), readme.indexOf('\n## ', readme.indexOf('\n## Monitoring\n') + 1));
const monitoring = readFileSync(new URL('../../docs/monitoring.md', import.meta.url), 'utf8');

describe('status --check problem codes', () => {
  it('README lists every code with its meaning, in order', () => {
    const rows = [...readmeMonitoring.matchAll(/^\| `([a-z-]+)` \| (.+) \|$/gm)].map((m) => [m[1], m[2]]);
    expect(rows).toEqual(Object.entries(PROBLEM_CODES));
  });

  it('docs/monitoring.md explains every code', () => {
    const rows = [...monitoring.matchAll(/^\| `([a-z-]+)` \|/gm)].map((m) => m[1]);
    expect(rows).toEqual(Object.keys(PROBLEM_CODES));
  });

  it('the policy keys behind the checks have their documented defaults', () => {
    expect(PolicySchema.parse({})).toMatchObject({ maxPhaseHours: 72, retireGraceDays: 7, emergencyMaxHours: 24 });
    expect(BackupSchema.parse({})).toMatchObject({ maxAgeHours: 26, recoverTestMaxAgeDays: 35 });
  });
});
