/** Human text for reencrypt runs (`keyctl reencrypt --status`, `keyctl status`) and durations. */
import { describeSettings } from '../reencrypt/control.js';
import type { JobView } from '../reencrypt/jobs.js';
import { formatCount, formatTime } from './format.js';

/** `0.4 s`, `42 s`, `12 min`, `3 h 05 min`: the spacing the rest of keyctl's messages use. */
export function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 9.95) return `${Math.max(0, s).toFixed(1).replace(/\.0$/, '')} s`;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** One job as lines of text: who, since when, how far and how fast, its limits; or where it stopped. */
export function describeJob(j: Omit<JobView, 'file' | 'keyring'>, now: Date): string[] {
  const ago = (iso: string) => duration((now.getTime() - Date.parse(iso)) / 1000);
  const who = `pid ${j.pid} on ${j.host}, started ${formatTime(new Date(j.startedAt))} by ${j.by}`;
  const p = j.progress;
  const where = p
    ? `${p.table}: ${formatCount(p.rowsScanned)}/${formatCount(p.rowsTotal)} rows${p.pass > 1 ? ` (pass ${p.pass})` : ''}, ${formatCount(p.valuesRewritten)} ${j.dryRun ? 'to rewrite' : 'rewritten'}, ${p.failures} failed`
    : 'counting rows, no batch yet';
  const scope = [j.dryRun ? 'dry run' : '', j.table ? `--table ${j.table}` : '', j.shard ? `shard ${j.shard}` : ''].filter(Boolean).join(', ');
  const head = `reencrypt of rotation #${j.rotationId} → ${j.target}${scope ? ` (${scope})` : ''}`;
  if (j.state === 'stopped')
    return [
      `${head}: stopped — its process (${who}) is gone without finishing (killed or crashed); last report ${formatTime(new Date(j.updatedAt))}`,
      `  ${where}`,
      `  the cursor in the database is saved up to its last committed batch; resume with: ${j.command}`,
    ];
  const rate = p
    ? p.throttle
      ? `${formatCount(p.rowsPerSecond)} rows/s (${p.throttle})`
      : `${formatCount(p.rowsPerSecond)} rows/s, batch ${formatCount(p.batchSize)}`
    : '';
  return [
    `${head}: ${j.state === 'running' ? 'running' : `on another host (this one cannot see its process; last report ${ago(j.updatedAt)} ago)`}, ${who}, for ${ago(j.startedAt)}`,
    `  ${where}${rate ? `, ${rate}` : ''}`,
    `  limits: ${describeSettings({ ...j.settings, paused: undefined }) || 'none'}${j.settings.paused ? ', paused (`--set paused=false` resumes)' : ''}`,
  ];
}
