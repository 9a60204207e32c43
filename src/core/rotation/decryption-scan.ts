/**
 * Decrypt every non-NULL value of every target (or N random rows per target) with the keys given,
 * by the version each value names (a Fernet token names none: the keys given are tried newest first). verify uses it with the published keyring; every destruction of
 * key material uses it first with the keys that will remain, so a value that only the doomed key
 * can read (a mislabelled one, say) blocks the destruction instead of being lost.
 */
import { CiphertextError } from '../../crypto/codec.js';
import { BlindIndexer, blindIndexVersion } from '../../crypto/blind-index.js';
import { ContextValueError } from '../../crypto/context.js';
import { columnsToRead, FieldCodec, fieldSpecOf } from '../../crypto/field.js';
import { formatCount } from '../../base/format.js';
import type { ValueFailure } from '../../reencrypt/engine.js';
import { formatKey, keyOf, sampleRows, scanTable, type KeySpec, type Row } from '../../reencrypt/scan.js';
import type { CoreContext } from '../context.js';
import { loadAllKeys } from './material.js';

export interface ScanResult {
  /** Values decrypted, per version. */
  checked: Record<string, number>;
  /** The first 1000 failures (table, pk, column, reason — never the value). */
  failures: ValueFailure[];
  failureCount: number;
  /**
   * Plaintext values in targets with `plaintext: encrypt`: not failures (no key can lose them), but
   * not encrypted either — verify fails on them through the database counts.
   */
  plaintext: number;
  /** Of failureCount, blind index values that are missing, stale or wrong (verify only). */
  blindIndexFailures: number;
}

export async function decryptionScan(
  ctx: CoreContext,
  keys: ReadonlyMap<string, Buffer>,
  opts: {
    sample?: number | undefined;
    batchSize?: number | undefined;
    progress?: (valuesChecked: number, table: string) => void;
    progressEveryMs?: number;
    /**
     * verify: each blind index must be its source's index under this version (the primary):
     * `blind-index-missing`, `blind-index-stale` (another version's) or `blind-index-mismatch`.
     */
    blindIndexesUnder?: string | undefined;
  } = {},
): Promise<ScanResult> {
  let lastReport = Date.now();
  let values = 0;
  const checked: Record<string, number> = {};
  const failures: ValueFailure[] = [];
  let failureCount = 0;
  let plaintext = 0;
  let blindIndexFailures = 0;
  const indexKey = opts.blindIndexesUnder !== undefined ? keys.get(opts.blindIndexesUnder) : undefined;
  const fail = (table: string, pk: KeySpec, row: Row, column: string, reason: string) => {
    failureCount++;
    if (failures.length < 1000) failures.push({ table, pk: formatKey(keyOf(row, pk)), column, reason });
  };
  const check = (
    table: string,
    pk: KeySpec,
    columns: string[],
    rows: Row[],
    codec: FieldCodec,
    indexes: Array<{ column: string; source: string; indexer: BlindIndexer }>,
  ) => {
    const opened = new Map<string, string>();
    for (const row of rows) {
      opened.clear();
      for (const column of columns) {
        const value = row[column];
        if (value === null || value === undefined) continue;
        if (codec.isPlaintext(value)) {
          plaintext++;
          continue;
        }
        try {
          if (value instanceof Uint8Array) {
            const b = codec.openBinary(value, keys);
            values++;
            checked[b.version] = (checked[b.version] ?? 0) + 1;
            continue;
          }
          if (typeof value !== 'string') throw new CiphertextError('malformed', 'not a text value');
          const o = codec.open(value, keys, { row, column });
          values++;
          checked[o.version] = (checked[o.version] ?? 0) + 1;
          opened.set(column, o.plaintext);
        } catch (err) {
          if (!(err instanceof CiphertextError) && !(err instanceof ContextValueError)) throw err;
          fail(table, pk, row, column, err instanceof ContextValueError ? `context-${err.problem}` : err.reason);
        }
      }
      if (!indexKey) continue;
      for (const b of indexes) {
        const plain = opened.get(b.source);
        if (plain === undefined) continue;
        const current = row[b.column];
        const problem =
          current === null || current === undefined
            ? 'blind-index-missing'
            : blindIndexVersion(current) !== opts.blindIndexesUnder
              ? 'blind-index-stale'
              : current !== b.indexer.value(plain, opts.blindIndexesUnder!, indexKey)
                ? 'blind-index-mismatch'
                : null;
        if (problem) {
          blindIndexFailures++;
          fail(table, pk, row, b.column, problem);
        }
      }
    }
  };
  for (const t of ctx.config.targets) {
    const codec = new FieldCodec(fieldSpecOf(t));
    const indexes = t.blindIndexes.map((b) => ({ column: b.column, source: b.source, indexer: new BlindIndexer(t.table, b.source, b.normalize) }));
    // A bound target's context columns are read with the row.
    const read = columnsToRead(t);
    if (opts.sample !== undefined)
      check(t.table, t.primaryKey, t.columns, await sampleRows(ctx.db, t.table, t.primaryKey, read, opts.sample, t.scope), codec, indexes);
    else {
      for await (const rows of scanTable(ctx.db, t.table, t.primaryKey, read, opts.batchSize ?? 2000, null, undefined, t.scope)) {
        check(t.table, t.primaryKey, t.columns, rows, codec, indexes);
        // Large tables take minutes: say how far the scan is, every few seconds.
        if (opts.progress && Date.now() - lastReport >= (opts.progressEveryMs ?? 5000)) {
          lastReport = Date.now();
          opts.progress(values + failureCount, t.table);
        }
      }
    }
  }
  return { checked, failures, failureCount, plaintext, blindIndexFailures };
}

/**
 * Before key material is destroyed: decrypt every value with every key the keystore holds except
 * `doomed`, logging progress on large tables.
 */
export async function scanWithoutKeys(ctx: CoreContext, doomed: readonly string[]): Promise<ScanResult & { valuesChecked: number }> {
  const keys = await loadAllKeys(ctx.keystore, ctx.config.keyring);
  for (const v of doomed) keys.delete(v);
  ctx.log.info(`checking that every value decrypts without ${doomed.join(', ')} before destroying (a full scan)`);
  const scan = await decryptionScan(ctx, keys, {
    progress: (n, table) => ctx.log.info(`decryption scan: ${formatCount(n)} value(s) checked so far (now in ${table})`),
  });
  return { ...scan, valuesChecked: Object.values(scan.checked).reduce((a, b) => a + b, 0) };
}
