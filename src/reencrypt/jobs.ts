/**
 * Who is re-encrypting right now. Each running `keyctl reencrypt` keeps a small JSON file in
 * `.keyctl/reencrypt-jobs/` next to the config (beside the live-control file): its host, pid and
 * start, who started it, the command that resumes it, its current limits and its progress (table,
 * pass, rows, rate, why it waits). The file is rewritten at most once a second, whole and then
 * renamed, and removed when the run ends. `keyctl reencrypt --status` and `keyctl status` read
 * these files; a file whose process is gone (kill -9, a crash, a reboot) tells them the run was
 * interrupted, and where. Nothing in it is secret: counts, limits and names only.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isStale, processStartToken } from '../util/lockfile.js';
import type { ControlSettings } from './control.js';

export interface JobProgress {
  table: string;
  pass: number;
  rowsScanned: number;
  rowsTotal: number;
  valuesRewritten: number;
  failures: number;
  batchSize: number;
  /** Rows per second over the last few seconds (0 while waiting). */
  rowsPerSecond: number;
  /** Why it waits right now (pause, rate, load), or null. */
  throttle: string | null;
}

export interface JobRecord {
  pid: number;
  host: string;
  /** Kernel start token of the process (Linux), so a reused pid is not taken for this run. */
  pidStart?: string;
  startedAt: string;
  by: string;
  rotationId: number;
  keyring: string;
  dryRun: boolean;
  /** The key version the run writes under. */
  target: string;
  table: string | null;
  shard: string | null;
  /** The command that resumes this run with the same limits. */
  command: string;
  /** The limits in force now (after any `--set`). */
  settings: ControlSettings;
  progress: JobProgress | null;
  updatedAt: string;
}

/**
 * - running: the process is alive on this host;
 * - stopped: its process on this host is gone without finishing (killed, crashed, rebooted);
 * - remote: it runs (or ran) on another host, which this one cannot look into; `updatedAt` says
 *   how fresh the file is.
 */
export type JobState = 'running' | 'stopped' | 'remote';

export interface JobView extends JobRecord {
  state: JobState;
  file: string;
}

export function jobsDir(baseDir: string): string {
  return path.join(baseDir, '.keyctl', 'reencrypt-jobs');
}

function writeWhole(file: string, record: JobRecord): void {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

function readRecord(file: string): JobRecord | null {
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as Partial<JobRecord>;
    return typeof r.pid === 'number' && typeof r.host === 'string' && typeof r.startedAt === 'string' ? (r as JobRecord) : null;
  } catch {
    return null;
  }
}

/** Every job file in `dir`, with whether its run is alive; oldest start first. */
export function listJobs(dir: string): JobView[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  const out: JobView[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const r = readRecord(file);
    if (!r) continue;
    const state: JobState =
      r.host !== os.hostname()
        ? 'remote'
        : isStale({ pid: r.pid, host: r.host, startedAt: r.startedAt, ...(r.pidStart ? { pidStart: r.pidStart } : {}) })
          ? 'stopped'
          : 'running';
    out.push({ ...r, state, file });
  }
  return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
}

/**
 * The files of this rotation's runs on this host whose process is gone (killed), removed and
 * returned — each to exactly one caller, since only one unlink of a file succeeds — so the new
 * run can put the dead one on record.
 */
export function claimStopped(dir: string, rotationId: number): JobView[] {
  return listJobs(dir).filter((j) => {
    if (j.state !== 'stopped' || j.rotationId !== rotationId) return false;
    try {
      unlinkSync(j.file);
      return true;
    } catch {
      return false;
    }
  });
}

/** The running process's own job file: `update` rewrites it at most once a second, `end` removes it. */
export class JobFile {
  private record: JobRecord;
  private readonly file: string;
  private lastWrite = 0;
  private samples: { key: string; list: Array<[number, number]> } = { key: '', list: [] };
  private written: JobRecord | null = null;
  private pending: NodeJS.Timeout | null = null;
  private ended = false;

  constructor(
    dir: string,
    start: Omit<JobRecord, 'pid' | 'host' | 'pidStart' | 'progress' | 'updatedAt'>,
    private readonly clock: () => number = Date.now,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const token = processStartToken(process.pid);
    this.record = {
      pid: process.pid,
      host: os.hostname(),
      ...(token ? { pidStart: token } : {}),
      ...start,
      progress: null,
      updatedAt: new Date(this.clock()).toISOString(),
    };
    this.file = path.join(dir, `${os.hostname().replace(/[^A-Za-z0-9.-]/g, '_')}.${process.pid}.json`);
    writeWhole(this.file, this.record);
    this.written = this.record;
  }

  /** New progress (rate computed here, over the last ~5 s of the same table and pass) or settings. */
  update(change: { progress?: Omit<JobProgress, 'rowsPerSecond'> & { settled: boolean }; settings?: ControlSettings }, force = false): void {
    const now = this.clock();
    if (change.progress) {
      const p = change.progress;
      const key = `${p.table}#${p.pass}`;
      // Rows per second over the last ~10 s of this table and pass (a new one starts over; a
      // pause is not a slowdown: 0 while paused, and the window starts again after it).
      const paused = p.throttle?.startsWith('paused') ?? false;
      if (this.samples.key !== key || paused) this.samples = { key, list: [] };
      const list = this.samples.list;
      if (p.settled) list.push([now, p.rowsScanned]);
      while (list.length > 2 && now - list[0]![0] > 10_000) list.shift();
      const [t0, r0] = list[0] ?? [now, 0];
      const [t1, r1] = list[list.length - 1] ?? [now, 0];
      const rate = paused ? 0 : t1 - t0 >= 1000 ? Math.round(((r1 - r0) * 1000) / (t1 - t0)) : (this.record.progress?.rowsPerSecond ?? 0);
      const { settled: _settled, ...shown } = p;
      this.record = { ...this.record, progress: { ...shown, rowsPerSecond: rate } };
    }
    if (change.settings) this.record = { ...this.record, settings: { ...this.record.settings, ...change.settings } };
    // A new reason to wait (or none any more) is written at once; other changes at most once a
    // second, the last of them a second later at the latest, so the file never lags behind.
    const news = change.progress !== undefined && change.progress.throttle !== this.written?.progress?.throttle;
    if (force || news || now - this.lastWrite >= 1000) this.flush();
    else this.pending ??= setTimeout(() => this.flush(), 1000 - (now - this.lastWrite)).unref();
  }

  private flush(): void {
    if (this.pending) clearTimeout(this.pending);
    this.pending = null;
    if (this.ended) return;
    const now = this.clock();
    this.lastWrite = now;
    this.record.updatedAt = new Date(now).toISOString();
    this.written = this.record;
    try {
      writeWhole(this.file, this.record);
    } catch {
      // Only a report for other terminals: a full disk must not stop the re-encryption.
    }
  }

  /** The run ended (finished, interrupted cleanly or failed): nothing runs any more. */
  end(): void {
    this.ended = true;
    if (this.pending) clearTimeout(this.pending);
    this.pending = null;
    this.remove(this.file);
  }

  private remove(file: string): void {
    try {
      unlinkSync(file);
    } catch {
      // already gone
    }
  }
}
