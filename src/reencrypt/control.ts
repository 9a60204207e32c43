/**
 * Live control of a running reencrypt, like gh-ost's interactive commands: another terminal runs
 * `keyctl reencrypt --set max-rate=500` (or batch-size, chunk-time, max-load, paused), which
 * writes the settings to a small JSON file next to the config (`.keyctl/reencrypt-control.json`);
 * the running job reads it before every batch (and every second while waiting) and applies what
 * changed. A file, not the database: it works while the database is the thing being protected,
 * and needs no schema change. Each run applies only settings written after it started.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../base/errors.js';
import { formatCount } from '../base/format.js';
import { closest } from '../base/suggest.js';

export interface ControlSettings {
  /** Rows per second, or null for no limit. */
  maxRate?: number | null;
  /** A fixed batch size, or null to size batches by chunk time. */
  batchSize?: number | null;
  chunkTimeMs?: number;
  /** Wait above this database load, or null for none. */
  maxLoad?: number | null;
  paused?: boolean;
}

export interface ControlFile {
  settings: ControlSettings;
  /** When the last --set was written (ms since the epoch), and by whom. */
  at: number;
  by: string;
}

export function controlFilePath(baseDir: string): string {
  return path.join(baseDir, '.keyctl', 'reencrypt-control.json');
}

const KEYS = ['max-rate', 'batch-size', 'chunk-time', 'max-load', 'paused'] as const;

/** A number as --max-rate and friends take it, thousands separators allowed (`1,000`). */
function number(key: string, v: string, opts: { whole: boolean; none?: string }): number {
  const n = Number(v.replace(/,(?=\d{3}\b)/g, ''));
  if (!Number.isFinite(n) || n <= 0 || (opts.whole && !Number.isInteger(n))) {
    const what = opts.whole ? 'a whole number above 0' : `a number above 0${key === 'chunk-time' ? ' (seconds)' : ''}`;
    throw new UsageError(`--set ${key}=${v}: expected ${what}${opts.none ? ` or ${opts.none}` : ''}`, `e.g. --set ${key}=${EXAMPLES[key]}`);
  }
  return n;
}

const EXAMPLES: Record<string, string> = { 'max-rate': '500', 'batch-size': '1000', 'chunk-time': '0.5', 'max-load': '20' };

/** `max-rate=500`, `max-rate=none`, `batch-size=auto`, `chunk-time=0.5`, `max-load=20`, `paused=true`. */
export function parseSetting(text: string): ControlSettings {
  const at = text.indexOf('=');
  const key = at > 0 ? text.slice(0, at) : text;
  const v = at > 0 ? text.slice(at + 1).trim() : '';
  switch (key) {
    case 'max-rate':
      return { maxRate: v === 'none' ? null : number(key, v, { whole: true, none: 'none' }) };
    case 'batch-size':
      return { batchSize: v === 'auto' ? null : number(key, v, { whole: true, none: 'auto' }) };
    case 'chunk-time':
      return { chunkTimeMs: number(key, v, { whole: false }) * 1000 };
    case 'max-load':
      return { maxLoad: v === 'none' ? null : number(key, v, { whole: false, none: 'none' }) };
    case 'paused':
      if (v === 'true' || v === 'false') return { paused: v === 'true' };
      throw new UsageError(`--set paused=${v}: expected true or false`, 'e.g. --set paused=true to pause, --set paused=false to go on');
    default: {
      const near = closest(key, KEYS);
      throw new UsageError(`--set ${text}: unknown setting${near ? ` (did you mean ${near}?)` : ''}`, `settings are: ${KEYS.map((k) => `${k}=…`).join(', ')}`);
    }
  }
}

export function readControl(file: string): ControlFile | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ControlFile;
  } catch {
    return null;
  }
}

/**
 * Merge settings into the file (written whole, then renamed, so a reader never sees half of it).
 * Settings written before `since` (the start of the oldest running job) belong to runs that are
 * over and are dropped.
 */
export function writeControl(file: string, settings: ControlSettings, by: string, at: number, since = 0): ControlFile {
  const previous = readControl(file);
  const kept = previous && previous.at >= since ? previous.settings : {};
  const next: ControlFile = { settings: { ...kept, ...settings }, at, by };
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
  return next;
}

/** Human text for settings: `max-rate 500 rows/s, paused`. */
export function describeSettings(s: ControlSettings): string {
  const parts: string[] = [];
  if (s.maxRate !== undefined) parts.push(`max-rate ${s.maxRate === null ? 'none' : `${formatCount(s.maxRate)} rows/s`}`);
  if (s.batchSize !== undefined) parts.push(`batch-size ${s.batchSize === null ? 'auto' : formatCount(s.batchSize)}`);
  if (s.chunkTimeMs !== undefined) parts.push(`chunk-time ${s.chunkTimeMs / 1000} s`);
  if (s.maxLoad !== undefined) parts.push(`max-load ${s.maxLoad ?? 'none'}`);
  if (s.paused !== undefined) parts.push(s.paused ? 'paused' : 'resumed');
  return parts.join(', ');
}

/**
 * For the running job: settings written to the file since it last looked (and after `since`),
 * or null. Cheap when nothing changed (one stat).
 */
export function controlWatcher(file: string, since: number): () => ControlFile | null {
  let seen = since;
  return () => {
    let mtime: number;
    try {
      mtime = statSync(file).mtimeMs;
    } catch {
      return null;
    }
    if (mtime <= seen) return null;
    const c = readControl(file);
    seen = mtime;
    return c && c.at > since ? c : null;
  };
}
