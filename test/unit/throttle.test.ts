import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { withRetry } from '../../src/base/retry.js';
import { dialectFor } from '../../src/db/dialects/index.js';
import { Throttle } from '../../src/reencrypt/throttle.js';

function fakeClock() {
  let t = 0;
  const slept: number[] = [];
  const sleep = async (ms: number): Promise<void> => {
    slept.push(ms);
    t += ms;
  };
  const advance = (ms: number): number => {
    t += ms;
    return t;
  };
  return { now: () => t, sleep, advance, slept };
}

const base = { chunkTimeMs: 500, fixedBatchSize: null, maxBatchSize: 5000, maxRate: null, sleepMs: 0, pauseFile: null, maxLoad: null };

describe('throttle', () => {
  it('adapts the batch size toward the target time per batch, growing at most 2× a step', async () => {
    const clock = fakeClock();
    const th = new Throttle({ ...base, now: clock.now, sleep: clock.sleep });
    const msPerRow = 0.25; // the database takes 0.25 ms per row → 2000 rows per 0.5 s
    const sizes: number[] = [];
    for (let i = 0; i < 12; i++) {
      const n = th.batchSize();
      sizes.push(n);
      await th.afterBatch(n, n * msPerRow, () => undefined);
    }
    expect(sizes[1]).toBeLessThanOrEqual(sizes[0]! * 2);
    expect(th.batchSize()).toBe(2000);
    // The database slows down 4×: batches shrink to keep ~0.5 s each.
    for (let i = 0; i < 12; i++) await th.afterBatch(th.batchSize(), th.batchSize() * msPerRow * 4, () => undefined);
    expect(th.batchSize()).toBeGreaterThan(450);
    expect(th.batchSize()).toBeLessThan(560);
  });

  it('keeps a fixed batch size when one is given', async () => {
    const th = new Throttle({ ...base, fixedBatchSize: 300 });
    await th.afterBatch(300, 5000, () => undefined);
    expect(th.batchSize()).toBe(300);
  });

  it('--max-rate sleeps so rows per second stay under the cap, and says why', async () => {
    const clock = fakeClock();
    const reasons: Array<string | null> = [];
    const th = new Throttle({ ...base, fixedBatchSize: 100, maxRate: 200, now: clock.now, sleep: clock.sleep });
    for (let i = 0; i < 10; i++) {
      clock.advance(50);
      await th.afterBatch(100, 50, (r) => reasons.push(r));
    }
    // 1000 rows at ≤ 200 rows/s take at least 5 s.
    expect(clock.now()).toBeGreaterThanOrEqual(5000);
    expect(reasons).toContain('max-rate 200 rows/s');
    // Held back on every batch: the reason stays, it does not flap on and off each batch.
    expect(reasons.slice(1)).toEqual(reasons.slice(1).map(() => 'max-rate 200 rows/s'));
    // A batch that no longer needs to wait clears it.
    clock.advance(10_000);
    await th.afterBatch(100, 50, (r) => reasons.push(r));
    expect(reasons.at(-1)).toBeNull();
  });

  it('--max-rate gives no burst for the time before the first batch', async () => {
    const clock = fakeClock();
    const th = new Throttle({ ...base, fixedBatchSize: 100, maxRate: 100, now: clock.now, sleep: clock.sleep });
    clock.advance(30_000); // counting a big table before the first batch
    const start = clock.now();
    for (let i = 0; i < 5; i++) {
      th.batchSize();
      await th.afterBatch(100, 0, () => undefined);
    }
    // 500 rows at 100 rows/s: at least 5 s after the first batch started.
    expect(clock.now() - start).toBeGreaterThanOrEqual(5000);
  });

  it('waits while the pause file exists, reporting it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-pause-'));
    const file = path.join(dir, 'pause');
    writeFileSync(file, '');
    let waits = 0;
    const reasons: Array<string | null> = [];
    const th = new Throttle({
      ...base,
      pauseFile: file,
      sleep: async () => {
        if (++waits === 3) rmSync(file);
      },
    });
    await th.beforeBatch((r) => reasons.push(r));
    expect(waits).toBe(3);
    expect(existsSync(file)).toBe(false);
    expect(reasons[0]).toContain(`paused: remove ${file} to resume`);
    expect(reasons.at(-1)).toBeNull();
  });

  it('waits while the database load is above --max-load', async () => {
    const loads = [9, 7, 2];
    const reasons: Array<string | null> = [];
    const th = new Throttle({ ...base, maxLoad: 4, probeLoad: async () => loads.shift() ?? 0, sleep: async () => undefined });
    await th.beforeBatch((r) => reasons.push(r));
    expect(loads).toEqual([]);
    expect(reasons.slice(0, 2)).toEqual(['database busy: load 9 > max-load 4', 'database busy: load 7 > max-load 4']);
  });
});

describe('retry', () => {
  const sleep = async () => undefined;

  it('retries deadlocks, lock waits and dropped connections, bounded, and reports each retry', async () => {
    for (const [dialect, code] of [
      ['pg', '40P01'],
      ['mysql', 'ER_LOCK_DEADLOCK'],
      ['mysql', 'ER_LOCK_WAIT_TIMEOUT'],
      ['sqlite', 'SQLITE_BUSY'],
      ['pg', 'ECONNRESET'],
    ] as const) {
      let calls = 0;
      const seen: string[] = [];
      const result = await withRetry(
        'writing a batch',
        async () => {
          if (++calls < 3) throw Object.assign(new Error('boom'), { code });
          return 'ok';
        },
        {
          tries: 5,
          baseDelayMs: 1,
          sleep,
          retryable: (e) => dialectFor(dialect).isRetryable(e),
          onRetry: (r) => seen.push(`${r.code} ${r.attempt}/${r.tries}`),
        },
      );
      expect(result).toBe('ok');
      expect(seen).toEqual([`${code} 1/5`, `${code} 2/5`]);
    }
  });

  it('gives up after the last try and does not retry other errors', async () => {
    let calls = 0;
    await expect(
      withRetry(
        'x',
        async () => {
          calls++;
          throw Object.assign(new Error('dead'), { code: '40P01' });
        },
        { tries: 3, baseDelayMs: 1, sleep, retryable: (e) => dialectFor('pg').isRetryable(e), onRetry: () => undefined },
      ),
    ).rejects.toThrow('dead');
    expect(calls).toBe(3);
    calls = 0;
    await expect(
      withRetry(
        'x',
        async () => {
          calls++;
          throw Object.assign(new Error('syntax'), { code: '42601' });
        },
        { tries: 3, baseDelayMs: 1, sleep, retryable: (e) => dialectFor('pg').isRetryable(e), onRetry: () => undefined },
      ),
    ).rejects.toThrow('syntax');
    expect(calls).toBe(1);
  });

  it('looks through keyctl errors at the driver error they wrap', () => {
    const wrapped = Object.assign(new Error('database error'), { cause: { code: 'ER_LOCK_DEADLOCK' } });
    expect(dialectFor('mysql').isRetryable(wrapped)).toBe(true);
  });
});

describe('throttle after a pause', () => {
  it('does not let --max-rate burst to catch up on the time spent paused', async () => {
    let t = 0;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-pause-'));
    const file = path.join(dir, 'pause');
    writeFileSync(file, '');
    const th = new Throttle({
      ...base,
      fixedBatchSize: 100,
      maxRate: 100,
      pauseFile: file,
      now: () => t,
      sleep: async (ms) => {
        t += ms;
        if (t > 60_000) rmSync(file, { force: true });
      },
    });
    await th.afterBatch(100, 10, () => undefined);
    await th.beforeBatch(() => undefined); // waits out the minute-long pause
    const afterPause = t;
    for (let i = 0; i < 5; i++) {
      await th.beforeBatch(() => undefined);
      await th.afterBatch(100, 10, () => undefined);
    }
    // 500 rows at 100 rows/s after the pause: at least ~5 s, not a burst.
    expect(t - afterPause).toBeGreaterThanOrEqual(4900);
  });
});

describe('--max-rate holds the rate (issue 17 #9)', () => {
  it('caps the batch size at max-rate × chunk time, adaptive or fixed, so a batch is no burst', async () => {
    const clock = fakeClock();
    const th = new Throttle({ ...base, maxRate: 300, now: clock.now, sleep: clock.sleep });
    let largest = 0;
    // A fast database (0.01 ms a row) would otherwise grow batches to the 5,000-row maximum.
    for (let i = 0; i < 20; i++) {
      const n = th.batchSize();
      largest = Math.max(largest, n);
      await th.afterBatch(n, n * 0.01, () => undefined);
    }
    expect(largest).toBeLessThanOrEqual(150);
    const fixed = new Throttle({ ...base, fixedBatchSize: 2000, maxRate: 300, now: clock.now, sleep: clock.sleep });
    expect(fixed.batchSize()).toBeLessThanOrEqual(150);
    // Never below the minimum batch, however low the rate.
    expect(new Throttle({ ...base, maxRate: 1 }).batchSize()).toBe(10);
  });

  it('a --max-rate wait answers an abort at once instead of sleeping it out', async () => {
    const stop = new AbortController();
    const th = new Throttle({ ...base, fixedBatchSize: 10, maxRate: 1, signal: stop.signal });
    th.batchSize();
    const started = performance.now();
    setTimeout(() => stop.abort(), 50);
    await th.afterBatch(10, 1, () => undefined); // 10 rows at 1 row/s: a 10-second wait
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('a pause-file wait and --sleep answer an abort at once', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-pause-'));
    const file = path.join(dir, 'pause');
    writeFileSync(file, '');
    const stop = new AbortController();
    const th = new Throttle({ ...base, sleepMs: 60_000, pauseFile: file, signal: stop.signal });
    const started = performance.now();
    setTimeout(() => stop.abort(), 50);
    await th.afterBatch(10, 1, () => undefined);
    await th.beforeBatch(() => undefined);
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('the pause file (issue 17 #19)', () => {
  it('beforeBatch waits while the pause file exists, so no batch starts after it appears', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-pause-'));
    const file = path.join(dir, 'pause');
    writeFileSync(file, '');
    const reasons: Array<string | null> = [];
    let waits = 0;
    const th = new Throttle({
      ...base,
      pauseFile: file,
      sleep: async () => {
        if (++waits === 2) rmSync(file);
      },
    });
    await th.beforeBatch((r) => reasons.push(r));
    expect(waits).toBe(2);
    expect(reasons[0]).toBe(`paused: remove ${file} to resume`);
    expect(reasons.at(-1)).toBeNull();
  });
});

describe('--critical-load (issue 17 #11)', () => {
  it('beforeBatch waits above --max-load and gives a reason to stop above --critical-load', async () => {
    const loads = [6, 5, 12];
    const reasons: Array<string | null> = [];
    const th = new Throttle({ ...base, maxLoad: 4, criticalLoad: 10, probeLoad: async () => loads.shift() ?? 0, sleep: async () => undefined });
    expect(await th.beforeBatch((r) => reasons.push(r))).toBe('database load 12 > --critical-load 10');
    expect(reasons).toEqual(['database busy: load 6 > max-load 4', 'database busy: load 5 > max-load 4']);
  });

  it('stops above --critical-load without --max-load, and goes on below it', async () => {
    const loads = [3, 11];
    const th = new Throttle({ ...base, criticalLoad: 10, probeLoad: async () => loads.shift() ?? 0, sleep: async () => undefined });
    expect(await th.beforeBatch(() => undefined)).toBeNull();
    expect(await th.beforeBatch(() => undefined)).toBe('database load 11 > --critical-load 10');
  });
});
