/** Values per key version across every target, counted by the database (see status.ts). */
import { AesGcmV1Codec, type Codec } from '../../crypto/codec.js';
import type { CoreContext } from '../context.js';
import { countVersions, type ColumnCounts } from '../status.js';

export interface VersionTotals {
  columns: ColumnCounts[];
  byVersion: Record<string, number>;
  unparseable: number;
}

export async function countAllTargets(ctx: CoreContext, codec: Codec = new AesGcmV1Codec()): Promise<VersionTotals> {
  const columns: ColumnCounts[] = [];
  for (const t of ctx.config.targets) columns.push(...(await countVersions(ctx.db, t, codec)));
  const byVersion: Record<string, number> = {};
  let unparseable = 0;
  for (const c of columns) {
    unparseable += c.unparseable;
    for (const [v, n] of Object.entries(c.counts)) byVersion[v] = (byVersion[v] ?? 0) + n;
  }
  return { columns, byVersion, unparseable };
}

/** Values under any version other than `primary`. */
export function notUnder(totals: VersionTotals, primary: string): number {
  return Object.entries(totals.byVersion).reduce((sum, [v, n]) => (v === primary ? sum : sum + n), 0);
}
