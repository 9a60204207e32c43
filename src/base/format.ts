/**
 * One style for numbers and times in human output: counts with thousands separators (`60,000`),
 * times in UTC to the second (`2026-12-03 14:48:04Z`). `--json` keeps plain numbers and ISO-8601.
 * Here in the base layer so that messages built below the UI (core, backup, keystores) use them
 * too; src/ui/format.ts re-exports them for the output code.
 */

/** `60000` → `60,000` (whole numbers; others keep their decimals after the separators). */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const [whole = '', fraction] = String(Math.abs(n)).split('.');
  return `${n < 0 ? '-' : ''}${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}${fraction ? `.${fraction}` : ''}`;
}

/** `2026-12-03 14:48:04Z`: UTC, to the second. */
export function formatTime(at: Date): string {
  return `${at.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/**
 * An ISO-8601 time (from a database row or a `--json` field) in the same style; any other text stays
 * as it is (Date's own parser would also take `'12'` or a bare date, which are not times).
 */
export function formatIsoText(s: string): string {
  if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(s)) return s;
  const at = new Date(s);
  return Number.isNaN(at.getTime()) ? s : formatTime(at);
}
