/**
 * What the rest of keyctl sees of the database dialect: the `SqlDialect` interface (one class
 * per dialect in ./dialects/) and time conversion from what the drivers return.
 */
export type { CasBatch, CasPlan, DbEndpoint, Dialect, PkValue, RowKey, SqlDialect } from './dialects/types.js';
export type { SqlDialect as DialectAdapter } from './dialects/types.js';

export function fromDbTime(v: unknown): Date | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v;
  if (typeof v === 'number') return new Date(v);
  if (typeof v === 'string') {
    // SQLite stores ISO strings; tolerate "YYYY-MM-DD HH:MM:SS" written by hand (UTC).
    const iso = /Z|[+-]\d\d:?\d\d$/.test(v) ? v : `${v.replace(' ', 'T')}Z`;
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  return null;
}
