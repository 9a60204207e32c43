/**
 * One number style (`60,000`) and one time style (`2026-12-03 14:48:04Z`, UTC) in human output.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/backup/files.js';
import { formatCount, formatTime } from '../../src/ui/format.js';

describe('human number and time style', () => {
  it('counts get thousands separators', () => {
    expect([0, 7, 999, 1000, 60000, 1234567, -4500, 2.5, 12345.25].map(formatCount)).toEqual([
      '0',
      '7',
      '999',
      '1,000',
      '60,000',
      '1,234,567',
      '-4,500',
      '2.5',
      '12,345.25',
    ]);
  });

  it('times are UTC to the second with a Z', () => {
    expect(formatTime(new Date('2026-12-03T14:48:04.987Z'))).toBe('2026-12-03 14:48:04Z');
  });

  it("the backup lock's refusal says since when in that style", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-fmt-'));
    writeFileSync(path.join(dir, '.keyctl-backup.lock'), JSON.stringify({ pid: 4242, host: 'elsewhere.example', startedAt: '2026-12-03T14:48:04.123Z' }));
    const err = await acquireLock(dir, new Date('2026-12-03T15:00:00Z')).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toContain('since 2026-12-03 14:48:04Z)');
  });
});
