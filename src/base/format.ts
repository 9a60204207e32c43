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
