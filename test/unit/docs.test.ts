import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EXIT_CODE_DESCRIPTIONS, ExitCode } from '../../src/base/exit-codes.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('lists every exit code exactly as src/base/exit-codes.ts defines it', () => {
    const rows = [...readme.matchAll(/^\| (\d+) \| ([A-Z_]+) \| (.+) \|$/gm)].map((m) => [Number(m[1]), m[2], m[3]]);
    expect(rows).toEqual(EXIT_CODE_DESCRIPTIONS.map(([name, text]) => [ExitCode[name], name, text]));
  });

  it('shows the install-and-demo command and the test command', () => {
    const firstScreen = readme.split('\n').slice(0, 25).join('\n');
    expect(firstScreen).toContain('npm ci && npm run demo');
    expect(firstScreen).toContain('npm test');
  });
});
