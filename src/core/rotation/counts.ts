/** Values per key version across every target, counted by the database (see status.ts). */
import type { CoreContext } from '../context.js';
import { countVersions, keyringLoader, type ColumnCounts, type CountKeys } from '../status.js';
import { sumCounts } from './snapshot.js';

export interface VersionTotals {
  columns: ColumnCounts[];
  byVersion: Record<string, number>;
  unparseable: number;
  /** Plaintext values of targets with `plaintext: encrypt`. */
  plaintext: number;
}

/** Fernet tokens are matched against `keys`, by default every key keyctl holds (read only if there are tokens). */
export async function countAllTargets(ctx: CoreContext, keys: CountKeys = keyringLoader(ctx)): Promise<VersionTotals> {
  const columns: ColumnCounts[] = [];
  for (const t of ctx.config.targets) columns.push(...(await countVersions(ctx.db, t, keys)));
  return { columns, ...sumCounts(columns) };
}
