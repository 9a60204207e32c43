/** Values per key version across every target, counted by the database (see status.ts). */
import { AesGcmV1Codec, type Codec } from '../../crypto/codec.js';
import type { CoreContext } from '../context.js';
import { countVersions, type ColumnCounts } from '../status.js';
import { sumCounts } from './snapshot.js';

export interface VersionTotals {
  columns: ColumnCounts[];
  byVersion: Record<string, number>;
  unparseable: number;
  /** Plaintext values of targets with `plaintext: encrypt`. */
  plaintext: number;
}

export async function countAllTargets(ctx: CoreContext, codec: Codec = new AesGcmV1Codec()): Promise<VersionTotals> {
  const columns: ColumnCounts[] = [];
  for (const t of ctx.config.targets) columns.push(...(await countVersions(ctx.db, t, codec)));
  return { columns, ...sumCounts(columns) };
}
