/** Lock files: a dead owner's lock is taken over by exactly one of several waiting processes. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tryLock } from '../../src/util/lockfile.js';

describe('tryLock', () => {
  it('of many takers of the same stale lock, one gets it; release removes only its own lock', async () => {
    for (let round = 0; round < 20; round++) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-lock-'));
      const file = path.join(dir, 'k.lock');
      const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
      writeFileSync(file, JSON.stringify({ pid: dead, host: os.hostname(), startedAt: '2020-01-01T00:00:00.000Z' }));
      const got = await Promise.all(Array.from({ length: 6 }, (_, i) => tryLock(file, new Date(Date.UTC(2027, 0, 1, 0, 0, i)))));
      const winners = got.filter((g) => 'release' in g);
      expect(winners, `round ${round}`).toHaveLength(1);
      const holder = JSON.parse(readFileSync(file, 'utf8')) as { pid: number };
      expect(holder.pid).toBe(process.pid);
      // A loser's (stale) view does not let it remove the winner's lock.
      const w = winners[0] as { release: () => Promise<void> };
      await w.release();
      expect(() => readFileSync(file)).toThrow();
    }
  });
});
