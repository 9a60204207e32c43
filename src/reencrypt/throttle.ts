/**
 * Keeping a long re-encryption gentle on a live database:
 * - batch size adapts so each batch takes about `chunkTimeMs` (exponentially smoothed), unless a
 *   fixed --batch-size was given;
 * - --max-rate caps rows per second, and caps the batch size at max-rate × chunk time so a
 *   batch is never a burst the rate then has to sleep off; --sleep pauses after every batch;
 * - while the --pause-file exists, nothing runs: checked before every batch (beforeBatch), so
 *   no batch starts once it appears;
 * - with --max-load, keyctl waits while the database is busier than that (PostgreSQL: other
 *   active backends in pg_stat_activity; MySQL: Threads_running); above --critical-load it stops
 *   (the run saves its cursor and exits as interrupted) rather than wait on a database in trouble.
 * Every wait reports its reason, so the progress line can say why it is slow, and every wait
 * ends as soon as the signal aborts (Ctrl-C answers within a second, not after a long sleep).
 */
import { existsSync } from 'node:fs';
import { formatCount } from '../base/format.js';
import { describeSettings, type ControlSettings } from './control.js';

export interface ThrottleOptions {
  /** Target duration of one batch (adaptive sizing); ignored when fixedBatchSize is set. */
  chunkTimeMs: number;
  fixedBatchSize: number | null;
  maxBatchSize: number;
  maxRate: number | null;
  sleepMs: number;
  pauseFile: string | null;
  maxLoad: number | null;
  /** Above this load, stop (cleanly, resumable) instead of waiting: pt-online-schema-change's --critical-load. */
  criticalLoad?: number | null;
  /** Current database load, for maxLoad and criticalLoad. */
  probeLoad?: () => Promise<number>;
  signal?: AbortSignal;
  /** Called before every batch and every second of a wait: where live control (--set) is read. */
  poll?: () => void;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

const MIN_BATCH = 10;
const INITIAL_BATCH = 200;

export class Throttle {
  private size: number;
  private msPerRow: number | null = null;
  private rowsDone = 0;
  /**
   * Start of the current --max-rate window: the first batch (so time spent before it, counting
   * the table, is no credit for a burst), restarted after a pause (so no burst follows it).
   */
  private started: number | null = null;
  /** Whether the last batch had to wait for --max-rate: the reason stays shown while it does. */
  private rateLimited = false;
  /** Paused by live control (`--set paused=true`), as the pause file pauses. */
  private controlPaused = false;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => number;

  constructor(private readonly o: ThrottleOptions) {
    this.sleep = o.sleep ?? ((ms) => abortableSleep(ms, o.signal));
    this.now = o.now ?? (() => performance.now());
    this.size = Math.min(o.maxBatchSize, o.fixedBatchSize ?? INITIAL_BATCH, this.rateCap());
  }

  /**
   * Apply live settings (`keyctl reencrypt --set …`); returns what changed, as text, or null.
   * A new rate starts a new --max-rate window, so the change neither bursts nor stalls.
   */
  apply(settings: ControlSettings): string | null {
    const changed: ControlSettings = {};
    if (settings.maxRate !== undefined && settings.maxRate !== this.o.maxRate) changed.maxRate = this.o.maxRate = settings.maxRate;
    if (settings.batchSize !== undefined && settings.batchSize !== this.o.fixedBatchSize) changed.batchSize = this.o.fixedBatchSize = settings.batchSize;
    if (settings.chunkTimeMs !== undefined && settings.chunkTimeMs !== this.o.chunkTimeMs) changed.chunkTimeMs = this.o.chunkTimeMs = settings.chunkTimeMs;
    if (settings.maxLoad !== undefined && settings.maxLoad !== this.o.maxLoad) changed.maxLoad = this.o.maxLoad = settings.maxLoad;
    if (settings.paused !== undefined && settings.paused !== this.controlPaused) changed.paused = this.controlPaused = settings.paused;
    const text = describeSettings(changed);
    if (!text) return null;
    const sized = this.o.fixedBatchSize ?? (this.msPerRow === null ? this.size : this.o.chunkTimeMs / Math.max(this.msPerRow, 1e-6));
    this.size = Math.round(Math.max(MIN_BATCH, Math.min(this.o.maxBatchSize, sized, this.rateCap())));
    this.started = this.now();
    this.rowsDone = 0;
    this.rateLimited = false;
    return text;
  }

  /** The limits in force now (as `--set` names them). */
  settings(): Required<ControlSettings> {
    return {
      maxRate: this.o.maxRate,
      batchSize: this.o.fixedBatchSize,
      chunkTimeMs: this.o.chunkTimeMs,
      maxLoad: this.o.maxLoad,
      paused: this.controlPaused,
    };
  }

  /** The largest batch --max-rate allows: what the rate lets through in one chunk time. */
  private rateCap(): number {
    if (this.o.maxRate === null) return Number.POSITIVE_INFINITY;
    return Math.max(MIN_BATCH, Math.floor((this.o.maxRate * this.o.chunkTimeMs) / 1000));
  }

  batchSize(): number {
    this.started ??= this.now();
    return this.size;
  }

  /** Record a finished batch (rows, how long it took), then wait as the limits require. */
  async afterBatch(rows: number, elapsedMs: number, onWait: (reason: string | null) => void): Promise<void> {
    this.rowsDone += rows;
    if (this.o.fixedBatchSize === null && rows > 0) {
      const sample = elapsedMs / rows;
      this.msPerRow = this.msPerRow === null ? sample : 0.7 * this.msPerRow + 0.3 * sample;
      const ideal = this.o.chunkTimeMs / Math.max(this.msPerRow, 1e-6);
      // Grow at most 2× per batch, so one fast batch does not produce a huge slow one.
      this.size = Math.round(Math.max(MIN_BATCH, Math.min(this.o.maxBatchSize, this.rateCap(), ideal, this.size * 2)));
    }
    const rateReason = `max-rate ${formatCount(this.o.maxRate ?? 0)} rows/s`;
    if (this.o.maxRate !== null) {
      this.started ??= this.now();
      const earliest = this.started + (this.rowsDone / this.o.maxRate) * 1000;
      const wait = earliest - this.now();
      this.rateLimited = wait > 0;
      if (wait > 0) {
        onWait(rateReason);
        await this.sleep(wait);
      }
    }
    if (this.o.sleepMs > 0 && !this.o.signal?.aborted) await this.sleep(this.o.sleepMs);
    // Held back by --max-rate is a steady state, not news after every batch.
    onWait(this.rateLimited ? rateReason : null);
  }

  /**
   * Wait, before a batch starts, while the pause file exists or the database is too busy.
   * Returns a reason to stop (the load is above --critical-load), or null to go on.
   */
  async beforeBatch(onWait: (reason: string | null) => void): Promise<string | null> {
    this.o.poll?.();
    let waited = await this.waitWhile(
      () => {
        this.o.poll?.();
        return Promise.resolve(this.controlPaused || (this.o.pauseFile !== null && existsSync(this.o.pauseFile)));
      },
      () =>
        this.controlPaused ? 'paused by `keyctl reencrypt --set paused=true`; `--set paused=false` resumes' : `paused: remove ${this.o.pauseFile} to resume`,
      onWait,
    );
    const critical = this.o.criticalLoad ?? null;
    const probe = this.o.probeLoad;
    if ((this.o.maxLoad !== null || critical !== null) && probe) {
      let load = 0;
      let stop: string | null = null;
      waited =
        (await this.waitWhile(
          async () => {
            this.o.poll?.();
            load = await probe();
            if (critical !== null && load > critical) {
              stop = `database load ${load} > --critical-load ${critical}`;
              return false;
            }
            return this.o.maxLoad !== null && load > this.o.maxLoad;
          },
          () => `database busy: load ${load} > max-load ${this.o.maxLoad}`,
          onWait,
        )) || waited;
      if (stop) return stop;
    }
    if (waited) onWait(null);
    return null;
  }

  /** Whether it waited at all. */
  private async waitWhile(cond: () => Promise<boolean>, reason: () => string, onWait: (r: string | null) => void): Promise<boolean> {
    let waited = false;
    while (!this.o.signal?.aborted && (await cond())) {
      waited = true;
      onWait(reason());
      await this.sleep(1000);
    }
    if (waited) {
      // The --max-rate window restarts: the time spent waiting is no credit for a burst.
      this.started = this.now();
      this.rowsDone = 0;
      this.rateLimited = false;
    }
    return waited;
  }
}

/** setTimeout that ends early when the signal aborts. */
function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
