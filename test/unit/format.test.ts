/**
 * One number style (`60,000`) and one time style (`2026-12-03 14:48:04Z`, UTC) in human output.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/backup/files.js';
import type { IncidentSummary } from '../../src/runbook/engine.js';
import { incidentMarkdown, incidentText } from '../../src/runbook/render.js';
import { formatCount, formatIsoText, formatTime } from '../../src/ui/format.js';
import { Output } from '../../src/ui/output.js';

const quiet = { isTTY: false, write: () => true };

const INCIDENT: IncidentSummary = {
  rotationId: 4,
  incident: 'INC-7',
  reason: 'key in a log',
  compromisedVersion: 'v1',
  newVersion: 'v2',
  startedAt: '2026-12-03T14:48:04.123Z',
  endedAt: '2026-12-03T15:02:10.000Z',
  durationSeconds: 846,
  rowsReencrypted: 60000,
  incidentEnteredAt: '2026-12-03T14:47:00.000Z',
  actors: ['oncall@ops'],
  timeline: [{ at: '2026-12-03T14:48:04.123Z', action: 'generate', outcome: 'ok', actor: 'oncall@ops', detail: '', sincePreviousSeconds: 0 }],
};

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

  it('ISO times from rows and JSON fields take the same style; other text stays as it is', () => {
    expect(formatIsoText('2026-12-03T14:48:04.987Z')).toBe('2026-12-03 14:48:04Z');
    expect(formatIsoText('2026-12-03T16:48:04+02:00')).toBe('2026-12-03 14:48:04Z');
    for (const text of ['', '-', '12', '2026-12-03', 'soon', '2026-13-45T99:99:99Z']) expect(formatIsoText(text)).toBe(text);
  });

  it('the incident summary, as text and as Markdown, shows its times and the rows re-encrypted in that style', () => {
    const text = incidentText(new Output({ json: false, color: false, env: {}, stdout: quiet, stderr: quiet }), INCIDENT);
    expect(text).toContain('started 2026-12-03 14:48:04Z, last step 2026-12-03 15:02:10Z: 14 min 6 s');
    expect(text).toContain('rows re-encrypted: 60,000 (all passes)');
    expect(text).toContain('incident entered: 2026-12-03 14:47:00Z');
    expect(text).toMatch(/2026-12-03 14:48:04Z +│ 0 s +│ generate/);
    const md = incidentMarkdown(INCIDENT);
    expect(md).toContain('- **Incident entered:** 2026-12-03 14:47:00Z');
    expect(md).toContain('- **Started:** 2026-12-03 14:48:04Z, **last step:** 2026-12-03 15:02:10Z');
    expect(md).toContain('- **Rows re-encrypted (all passes):** 60,000');
    expect(md).toContain('| 2026-12-03 14:48:04Z | 0 s | generate |');
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
