/**
 * The re-encryption engine: walks each target table by primary key, decrypts every value that
 * is not under the target version with its own version's key, encrypts it under the target,
 * and writes each batch with one compare-and-set statement plus the saved cursor, in one
 * transaction. Running it again resumes after the last committed batch; a value already under
 * the target is never touched again, so nothing is encrypted twice.
 *
 * A value that cannot be decrypted is never rewritten: it is reported (table, primary key,
 * column, reason — never the value or its plaintext). After a full pass the database counts
 * what is still not under the target (rows the application wrote behind the cursor with an old
 * key, or values changed under a batch); another pass handles them, up to `maxPasses`.
 */
import type { Knex } from 'knex';
import type { TargetConfig } from '../config/schema.js';
import { CLAIMS_CIPHERTEXT } from '../crypto/codec.js';
import { BINARY_MIN_BYTES, binaryHeader } from '../crypto/binary.js';
import { blindIndexVersion } from '../crypto/blind-index.js';
import { binaryColumns } from '../db/columns.js';
import { columnsToRead, contextColumnsOf, FieldCodec, fieldSpecOf } from '../crypto/field.js';
import type { Db } from '../db/connect.js';
import { compareAndSetBatch, maxCasBatch, type CasBatch } from './cas.js';
import { shardKey, type Checkpoint, type CheckpointStore } from './checkpoint.js';
import { valueSize, type BatchPlan, type IndexSpec } from './plan.js';
import type { Planner } from './planner.js';
import { withRetry, type RetryOptions } from '../base/retry.js';
import type { Throttle } from './throttle.js';
import { cursorFits, formatKey, keyColumns, keyOf, readBatch, scanTable, shardFilter, type PkValue, type Row, type RowKey, type Shard } from './scan.js';

export interface ValueFailure {
  table: string;
  /** The row's key as text: `1042`, or a composite key's tuple `(7, 1042)` (see formatKey). */
  pk: string;
  column: string;
  reason: string;
}

export interface ProgressEvent {
  table: string;
  pass: number;
  /** Rows this pass has scanned (a pass walks the whole table or shard). */
  rowsScanned: number;
  /** Rows in the table (or shard) — never less than rowsScanned. */
  rowsTotal: number;
  valuesRewritten: number;
  failures: number;
  batchSize: number;
  /** Why keyctl is waiting right now (pause file, max rate, database load), or null. */
  throttle: string | null;
  /**
   * True for the event after a batch and the wait that follows it (--max-rate); false for one
   * that reports a wait starting or ending. Rates are measured from the former only: the latter
   * may count a batch whose share of time has not passed yet.
   */
  settled: boolean;
}

export interface EngineOptions {
  db: Db;
  /** Runs the batch crypto (in worker threads or inline). */
  planner: Planner;
  /** The version every value must end up under (the primary). */
  target: string;
  /** Its key: counting what is left under a version that writes Fernet checks each token's HMAC. */
  targetKey?: Buffer;
  rotationId: number;
  /** Where the cursor is loaded from and saved to. */
  checkpoints: CheckpointStore;
  dryRun: boolean;
  /** Only this shard of the table (integer primary keys); each shard has its own checkpoint. */
  shard?: Shard;
  /** Batch sizing and waits (shared by all tables of a run). */
  throttle: Throttle;
  retry?: Omit<RetryOptions, 'onRetry'>;
  /** Told about every retried batch (for the log). */
  onRetry?: (message: string) => void;
  maxPasses?: number;
  signal?: AbortSignal;
  now: () => Date;
  onProgress?: (e: ProgressEvent) => void;
  /** Called after a batch is read and before it is written (observability and tests). */
  afterRead?: (table: string, rows: Row[]) => Promise<void>;
  /** Checked after every committed batch: a reason to stop, or null to go on. */
  shouldStop?: () => Promise<string | null>;
  /**
   * A pass over many keyrings at once (reencrypt --all-tenants): the column whose value names each
   * row's keyring among the planner's rings; a row of no ring there is left alone.
   */
  ringColumn?: string;
  /** What is left after a pass (default: values not under `target`, counted by the database). */
  countRemaining?: (t: TargetConfig) => Promise<number>;
}

export interface TableResult {
  table: string;
  rowsScanned: number;
  /** Values the batches set out to rewrite (dry run: would rewrite). */
  valuesPlanned: number;
  /** Of those, plaintext values to encrypt for the first time (targets with `plaintext: encrypt`). */
  plaintextPlanned: number;
  /** Keys tried to find the version of Fernet tokens (one HMAC each; MultiFernet order, newest first). */
  keysTried: number;
  /** Blind index values computed under the target (written with their sources). */
  indexesPlanned: number;
  /** Rows the database reports as updated by the compare-and-set statements. */
  rowsUpdated: number;
  /** Rows planned but not updated because they changed meanwhile (the application wrote them). */
  rowsSkippedConcurrent: number;
  failures: ValueFailure[];
  /** Values still not under the target after the last pass (counted by the database). */
  remaining: number;
  passes: number;
  interrupted: boolean;
  /** Why the engine stopped early on its own (shouldStop), if it did. */
  stoppedBecause?: string;
  /** Why the engine stopped, resumable, before a batch (the load above --critical-load), if it did. */
  abortedBecause?: string;
  /** The cursor the run resumed after: a one-column key's value, or a composite key's tuple as text (`(7, 1042)`). */
  resumedFrom: PkValue | null;
}

const MAX_LISTED_FAILURES = 1000;

/** A value as the compare-and-set binds it: text, or bytes as a Buffer (worker threads hand back Uint8Arrays). */
function asCasValue(v: unknown): string | Buffer | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return v as string;
}

/**
 * Values of the target's columns not under `version` (unparseable ones included). One database
 * scan where the version writes AES-GCM (its `v<N>:` prefix says it); where it writes Fernet, whose
 * tokens do not name their key, the tokens are read in key order and each is checked with one HMAC
 * under `key` (the version's key).
 */
export async function countNotUnder(
  db: Db,
  t: TargetConfig,
  version: string,
  opts: { shard?: Shard | undefined; key?: Buffer | undefined } = {},
): Promise<number> {
  const field = new FieldCodec(fieldSpecOf(t));
  if (field.writesFernet(version)) {
    if (!opts.key) throw new Error(`counting Fernet tokens not under ${version} needs its key`);
    let n = 0;
    for await (const rows of scanTable(db, t.table, t.primaryKey, columnsToRead(t), 2000, null, opts.shard, t.scope)) {
      for (const row of rows) {
        for (const c of t.columns)
          if (row[c] !== null && row[c] !== undefined && !(typeof row[c] === 'string' && field.isUnder(row[c], version, opts.key))) n++;
        for (const b of t.blindIndexes) if (row[b.source] !== null && row[b.source] !== undefined && blindIndexVersion(row[b.column]) !== version) n++;
      }
    }
    return n;
  }
  const binary = await binaryColumns(db, t.table);
  const sums = notUnderTerms(db, t, version, binary).map((term, i) => db.knex.raw('SUM(?) AS ??', [term, `n_${i}`]));
  const [row] = (await shardFilter(db.knex(t.table).select(sums as unknown as string[]), t.primaryKey, opts.shard, t.scope)) as Array<Record<string, unknown>>;
  return sums.reduce((n, _, i) => n + Number(row?.[`n_${i}`] ?? 0), 0);
}

/**
 * countNotUnder for the rows of many keyrings at once (reencrypt --all-tenants), per value of
 * `ringColumn`, for the keyrings whose target is `version` (AES-GCM): one scan whose WHERE keeps
 * only rows with a value not under it, so after a finished pass the grouping sees next to nothing.
 * A keyring with nothing left is absent from the map.
 */
export async function countNotUnderByRing(db: Db, t: TargetConfig, ringColumn: string, version: string): Promise<Map<string, number>> {
  const field = new FieldCodec(fieldSpecOf(t));
  if (field.writesFernet(version)) throw new Error(`countNotUnderByRing counts AES-GCM versions; ${version} writes Fernet`);
  const terms = notUnderTerms(db, t, version, await binaryColumns(db, t.table));
  const total = db.knex.raw(terms.map(() => '?').join(' + '), terms);
  const rows = (await db
    .knex(t.table)
    .select({ ring: ringColumn })
    .select(db.knex.raw('SUM(?) AS ??', [total, 'n']))
    .where(db.knex.raw('? > 0', [total]))
    .groupBy(ringColumn)) as Array<Record<string, unknown>>;
  const out = new Map<string, number>();
  for (const r of rows) if (r.ring !== null && r.ring !== undefined) out.set(String(r.ring), Number(r.n));
  return out;
}

/** Per encrypted column and blind index, a 0/1 expression: 1 where the value is not under `version`. */
function notUnderTerms(db: Db, t: TargetConfig, version: string, binary: ReadonlySet<string>): Knex.Raw[] {
  // Where plaintext is allowed, a plaintext value that happens to start with `v2:` is still pending.
  const claims = t.plaintext === 'encrypt' ? CLAIMS_CIPHERTEXT : undefined;
  const terms = t.columns.map((c) =>
    binary.has(c)
      ? // A binary value is under the version when it is long enough and its 3-byte header names it.
        db.knex.raw('CASE WHEN ?? IS NULL THEN 0 WHEN length(??) >= ? AND substr(??, 1, 3) = ? THEN 0 ELSE 1 END', [
          c,
          c,
          BINARY_MIN_BYTES,
          c,
          binaryHeader(version),
        ])
      : db.knex.raw('?', [db.adapter.notPrefixed(db.knex, c, `${version}:`, claims)]),
  );
  // A blind index is pending where its source holds a value and the index is missing or another version's.
  for (const b of t.blindIndexes)
    terms.push(
      db.knex.raw('CASE WHEN ?? IS NULL THEN 0 WHEN ?? IS NULL THEN 1 ELSE ? END', [
        b.source,
        b.column,
        db.adapter.notPrefixed(db.knex, b.column, `${version}:`),
      ]),
    );
  return terms;
}

/** The SQL type of each column of a composite key, where the dialect's compare-and-set needs them. */
async function compositeKeyTypes(db: Db, table: string, keys: readonly string[]): Promise<string[] | undefined> {
  const types: string[] = [];
  for (const k of keys) {
    const ty = await db.adapter.primaryKeyType(db.knex, table, k);
    if (ty === undefined) return undefined;
    types.push(ty);
  }
  return types;
}

/** The most bytes of values one batch reads (see `byteCap` in reencryptTable). */
const MAX_BATCH_BYTES = 1024 * 1024;
/** Rows of a table's first batch at most (the adaptive size is shared by all tables of a run). */
const FIRST_BATCH_ROWS = 1000;
/** A batch holds at least this many rows, however large their values. */
const MIN_BYTE_CAPPED_BATCH = 10;

/** Bytes of the values a batch read (text as UTF-16 code units: what the strings hold). */
function bytesOf(rows: Row[], columns: readonly string[]): number {
  let n = 0;
  for (const row of rows) for (const c of columns) n += valueSize(row[c]);
  return n;
}

export async function reencryptTable(t: TargetConfig, o: EngineOptions): Promise<TableResult> {
  const { db } = o;
  const shard = shardKey(o.target, o.shard ? `${o.shard.index}/${o.shard.count}` : undefined);
  const keys = keyColumns(t.primaryKey);
  const keyWidth = keys.length;
  // Blind indexes are written by the same compare-and-set as their sources, each guarded by its
  // source (src/db/dialects/types.ts, CasRequest.guardedBy).
  const indexSpecs: IndexSpec[] = t.blindIndexes.map((b) => ({ column: b.column, source: t.columns.indexOf(b.source), normalize: b.normalize }));
  const casColumns = [...t.columns, ...t.blindIndexes.map((b) => b.column)];
  const guardedBy = [...t.columns.map(() => null), ...indexSpecs.map((b) => b.source)];
  const maxBatch = maxCasBatch(casColumns.length, keyWidth);
  const throttle = o.throttle;
  const retry = { tries: o.retry?.tries ?? 5, baseDelayMs: o.retry?.baseDelayMs ?? 200, retryable: (err: unknown) => db.adapter.isRetryable(err) };
  const onRetry: RetryOptions['onRetry'] = (r) =>
    o.onRetry?.(`${t.table}: ${r.what} failed (${r.code}); retrying in ${r.delayMs} ms (try ${r.attempt + 1} of ${r.tries})`);
  let throttleReason: string | null = null;
  const pkType = keyWidth === 1 ? await db.adapter.primaryKeyType(db.knex, t.table, keys[0]!) : await compositeKeyTypes(db, t.table, keys);
  const rowsTotal = Number(((await shardFilter(db.knex(t.table).count({ n: '*' }), t.primaryKey, o.shard, t.scope)) as Array<{ n: unknown }>)[0]?.n ?? 0);
  const stored = o.dryRun ? null : await o.checkpoints.load(db, o.rotationId, t.table, shard);
  // A cursor saved under another primaryKey (the config changed between a one-column and a
  // composite key mid-pass) cannot be compared with this key: the pass starts over, which is safe
  // (a value already under the target is not touched again).
  const saved = stored && stored.cursor !== null && !cursorFits(stored.cursor, t.primaryKey) ? { ...stored, cursor: null, rowsScanned: 0 } : stored;
  const result: TableResult = {
    table: t.table,
    rowsScanned: 0,
    valuesPlanned: 0,
    plaintextPlanned: 0,
    keysTried: 0,
    indexesPlanned: 0,
    rowsUpdated: 0,
    rowsSkippedConcurrent: 0,
    failures: [],
    remaining: 0,
    passes: 0,
    interrupted: false,
    resumedFrom: saved && !saved.completed && saved.cursor !== null ? (Array.isArray(saved.cursor) ? formatKey(saved.cursor) : saved.cursor) : null,
  };
  const failed = new Set<string>();
  const cp: Checkpoint = saved && !saved.completed ? saved : { cursor: null, rowsScanned: 0, rowsRewritten: 0, rowsFailed: 0, completed: false };
  const maxPasses = o.dryRun ? 1 : (o.maxPasses ?? 3);
  // Each read remembers its size: a short batch is the end of the table.
  // Columns a bound target's context reads are selected with the row (not compared or written).
  const contextNames = contextColumnsOf(t);
  const readColumns = [...new Set([...columnsToRead(t), ...(o.ringColumn ? [o.ringColumn] : []), ...(t.scope ? [t.scope.column] : [])])];
  const ringColumn = o.ringColumn;
  // Batches are capped by bytes as well as rows: rows of large values come in fewer at a time, so
  // the batches in flight (read, encrypted, written) stay within a few MiB whatever the row size.
  // The first batch of a table, before any row's size is known, holds at most FIRST_BATCH_ROWS.
  let byteCap = Math.min(maxBatch, FIRST_BATCH_ROWS);
  const batchRows = () => Math.min(maxBatch, byteCap, throttle.batchSize());
  const read = async (after: RowKey | null) => {
    const size = batchRows();
    const rows = await withRetry('reading a batch', () => readBatch(db, t.table, t.primaryKey, readColumns, after, size, o.shard, t.scope), {
      ...retry,
      onRetry,
    });
    if (rows.length > 0) byteCap = Math.max(MIN_BYTE_CAPPED_BATCH, Math.floor((MAX_BATCH_BYTES * rows.length) / Math.max(1, bytesOf(rows, readColumns))));
    return Object.assign(rows, { size });
  };
  const width = t.columns.length;
  const spec = fieldSpecOf(t);
  /** The batch's values, flat (row by row), as the planner and the compare-and-set take them. */
  const valuesOf = (rows: Row[]): unknown[] => {
    const values = new Array<unknown>(rows.length * width);
    for (let r = 0, at = 0; r < rows.length; r++) for (let c = 0; c < width; c++) values[at++] = rows[r]![t.columns[c]!];
    return values;
  };

  /** The blind index columns' current values, row by row, as the planner takes them. */
  const indexValuesOf = (rows: Row[]): unknown[] => {
    const out = new Array<unknown>(rows.length * indexSpecs.length);
    for (let r = 0, at = 0; r < rows.length; r++) for (const b of indexSpecs) out[at++] = rows[r]![b.column];
    return out;
  };
  /** The context columns' values, row by row, as the planner takes them. */
  const contextOf = (rows: Row[]): { names: string[]; values: unknown[] } => {
    const values = new Array<unknown>(rows.length * contextNames.length);
    for (let r = 0, at = 0; r < rows.length; r++) for (const c of contextNames) values[at++] = rows[r]![c];
    return { names: contextNames, values };
  };

  interface Planned {
    rows: Row[];
    last: RowKey;
    cas: CasBatch;
  }
  const noRows = Object.assign([] as Row[], { size: 0 });
  const toCas = (rows: Row[], values: unknown[], batchPlan: BatchPlan): CasBatch => {
    for (const f of batchPlan.failures) {
      const pk = formatKey(keyOf(rows[f.index]!, t.primaryKey));
      const column = t.columns[f.column]!;
      const id = `${pk}\u0000${column}`;
      if (!failed.has(id)) {
        failed.add(id);
        if (result.failures.length < MAX_LISTED_FAILURES) result.failures.push({ table: t.table, pk, column, reason: f.reason });
      }
    }
    const cas: CasBatch = { pks: [], read: [], next: [] };
    const { next, indexNext } = batchPlan;
    const iw = indexSpecs.length;
    for (let r = 0; r < rows.length; r++) {
      let any = false;
      for (let c = 0; c < width; c++) if (next[r * width + c] !== null) any = true;
      if (!any) continue;
      for (let k = 0; k < keyWidth; k++) cas.pks.push(rows[r]![keys[k]!] as PkValue);
      for (let c = 0, at = r * width; c < width; c++, at++) {
        cas.read.push(asCasValue(values[at]));
        cas.next.push(asCasValue(next[at]));
      }
      // A blind index's value read: compared where the compare-and-set is per row; per column, its
      // source guards it.
      for (let j = 0; j < iw; j++) {
        cas.read.push(asCasValue(rows[r]![indexSpecs[j]!.column]));
        cas.next.push(indexNext[r * iw + j] ?? null);
      }
    }
    return cas;
  };
  // A bound target's values were sealed for the context read with the batch: columns the
  // compare-and-set does not compare (a tenant id, say) are checked again, locked, in the write's
  // transaction, and a row whose context changed meanwhile is left for the next pass.
  // A row's tenant (a scoped run, or the keyring of each row of an all-tenants pass) needs no such
  // check: an application that moves a row to another tenant re-encrypts it under that tenant's key,
  // which changes the value and fails the compare-and-set; one that moves it without re-encrypting
  // left it under the old tenant's key already (docs/tenants.md, "Limits").
  const contextGuards = contextNames.filter((c) => !keys.includes(c) && !t.columns.includes(c));
  const sameValue = (a: unknown, b: unknown): boolean => {
    const text = (v: unknown) => (v instanceof Uint8Array ? `b:${Buffer.from(v).toString('hex')}` : v === null || v === undefined ? 'null' : `v:${String(v)}`);
    return text(a) === text(b);
  };
  const withCurrentContext = async (trx: Knex.Transaction, b: Planned): Promise<CasBatch> => {
    if (contextGuards.length === 0 || b.cas.pks.length === 0) return b.cas;
    const n = b.cas.pks.length / keyWidth;
    const tuples = Array.from({ length: n }, (_, r) => b.cas.pks.slice(r * keyWidth, (r + 1) * keyWidth));
    let q = trx(t.table).select([...keys, ...contextGuards]);
    q = keyWidth === 1 ? q.whereIn(keys[0]!, tuples.map((k) => k[0]!) as Knex.Value[]) : q.whereIn([...keys] as string[], tuples as Knex.Value[][]);
    if (db.adapter.locksSelectedRows) q = q.forUpdate();
    const now = new Map<string, Row>();
    for (const row of (await q) as Row[]) now.set(formatKey(keyOf(row, t.primaryKey)), row);
    const read = new Map<string, Row>(b.rows.map((row) => [formatKey(keyOf(row, t.primaryKey)), row]));
    const kept: CasBatch = { pks: [], read: [], next: [] };
    const cw = b.cas.read.length / n;
    for (let r = 0; r < n; r++) {
      const id = formatKey((keyWidth === 1 ? tuples[r]![0] : tuples[r]) as RowKey);
      const cur = now.get(id);
      const was = read.get(id);
      if (!cur || !was || !contextGuards.every((c) => sameValue(cur[c], was[c]))) continue;
      kept.pks.push(...tuples[r]!);
      kept.read.push(...b.cas.read.slice(r * cw, (r + 1) * cw));
      kept.next.push(...b.cas.next.slice(r * cw, (r + 1) * cw));
    }
    return kept;
  };
  /** One compare-and-set statement and the cursor, in one transaction (retried on lock conflicts). */
  const writeBatch = async (b: Planned): Promise<void> => {
    let updated = 0;
    const before = { ...cp };
    await withRetry(
      'writing a batch',
      async () => {
        Object.assign(cp, before);
        await db.knex.transaction(async (trx) => {
          updated = await compareAndSetBatch(db, trx, t.table, t.primaryKey, casColumns, await withCurrentContext(trx, b), pkType, guardedBy);
          cp.cursor = b.last;
          cp.rowsScanned += b.rows.length;
          cp.rowsRewritten += updated;
          cp.rowsFailed = failed.size;
          await o.checkpoints.save(db, trx, o.rotationId, t.table, shard, cp, o.now());
        });
      },
      { ...retry, onRetry },
    );
    result.rowsUpdated += updated;
    // Rows with a value to rewrite that the statement did not update: changed meanwhile.
    result.rowsSkippedConcurrent += Math.max(0, b.cas.pks.length / keyWidth - updated);
  };
  // Progress is about the current pass: each pass walks the table from its start, so done counts
  // from 0 again (a resumed run starts from the rows its checkpoint says this pass had done).
  // Rows the application inserts during the run can take done past the count made at the start:
  // the total grows with it, so done never exceeds it.
  let passScanned = result.resumedFrom !== null ? cp.rowsScanned : 0;
  const progress = (settled = false) =>
    o.onProgress?.({
      settled,
      table: t.table,
      pass: result.passes,
      rowsScanned: passScanned,
      rowsTotal: Math.max(rowsTotal, passScanned),
      valuesRewritten: o.dryRun ? result.valuesPlanned : result.rowsUpdated,
      failures: failed.size,
      batchSize: batchRows(),
      throttle: throttleReason,
    });

  const onWait = (reason: string | null) => {
    if (reason !== throttleReason) {
      throttleReason = reason;
      progress();
    }
  };
  /** Waits out the pause file and --max-load before a batch starts; false to stop (signal, --critical-load). */
  const mayStart = async (): Promise<boolean> => {
    const critical = await throttle.beforeBatch(onWait);
    if (critical) result.abortedBecause = critical;
    if (!critical && !o.signal?.aborted) return true;
    result.interrupted = true;
    return false;
  };

  while (result.passes < maxPasses) {
    result.passes++;
    // A three-stage pipeline: the workers encrypt batch k while the database writes batch k-1
    // (one statement + cursor, one transaction) and reads batch k+1.
    if (!(await mayStart())) return result;
    let current = await read(cp.cursor);
    let toWrite: Planned | null = null;
    while (current.length > 0 || toWrite) {
      // Nothing starts (no write, no read) while paused or while the database is too busy.
      if (!(await mayStart())) return result;
      const started = performance.now();
      const last = current.length > 0 ? keyOf(current[current.length - 1]!, t.primaryKey) : null;
      const writing: Planned | null = o.dryRun ? null : toWrite;
      const values = valuesOf(current);
      const [next, batchPlan]: [typeof current, BatchPlan | null, unknown] = await Promise.all([
        last !== null && current.length === current.size ? read(last) : Promise.resolve(noRows),
        current.length > 0
          ? o.planner.plan({
              values,
              columns: width,
              spec,
              columnNames: t.columns,
              ...(spec.context ? { context: contextOf(current) } : {}),
              ...(indexSpecs.length > 0 ? { indexes: { specs: indexSpecs, values: indexValuesOf(current) } } : {}),
              // A row with no tenant (NULL) is of no ring: '' is never a tenant id.
              ...(ringColumn ? { rings: current.map((r) => (r[ringColumn] === null || r[ringColumn] === undefined ? '' : String(r[ringColumn]))) } : {}),
            })
          : Promise.resolve(null),
        writing ? writeBatch(writing) : Promise.resolve(),
      ]);
      toWrite = batchPlan && last !== null ? { rows: current, last, cas: toCas(current, values, batchPlan) } : null;
      if (batchPlan) {
        result.valuesPlanned += batchPlan.planned;
        result.plaintextPlanned += batchPlan.plaintext;
        result.keysTried += batchPlan.keysTried;
        result.indexesPlanned += batchPlan.indexesPlanned;
        await o.afterRead?.(t.table, current);
      }
      const done = o.dryRun ? (toWrite ? current : null) : writing?.rows;
      if (done) {
        result.rowsScanned += done.length;
        passScanned += done.length;
        await throttle.afterBatch(done.length, performance.now() - started, onWait);
        // After the wait --max-rate asks for: the batch's rows are reported when its share of
        // time is over, so a rate measured from these events does not run ahead of the limit.
        progress(true);
      }
      if (o.dryRun) toWrite = null;
      // better-sqlite3 answers synchronously, so without this the loop never polls for signals
      // (Ctrl-C) or timers between batches.
      await new Promise((resolve) => setImmediate(resolve));
      // Stopping drops the batch planned but not yet written: the saved cursor is before it.
      if (o.signal?.aborted) {
        result.interrupted = true;
        return result;
      }
      const stop = await o.shouldStop?.();
      if (stop) {
        result.interrupted = true;
        result.stoppedBecause = stop;
        return result;
      }
      current = next;
    }
    // What is still not under the target, counted by the database.
    result.remaining = o.countRemaining ? await o.countRemaining(t) : await countNotUnder(db, t, o.target, { shard: o.shard, key: o.targetKey });
    if (o.dryRun || result.remaining <= failed.size) break;
    // Rows written behind the cursor with an old key, or changed under a batch: scan again.
    // The checkpoint's row count is of the pass (rows up to its cursor), like the cursor.
    cp.cursor = null;
    cp.rowsScanned = 0;
    passScanned = 0;
  }
  if (!o.dryRun) {
    cp.completed = result.remaining <= failed.size;
    await o.checkpoints.save(db, db.knex, o.rotationId, t.table, shard, cp, o.now());
  }
  return result;
}
