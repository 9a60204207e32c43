/**
 * Planning a batch: for every value not under the target version, decrypt it with its own
 * version's key and encrypt it under the target in the codec the target version writes (AES-GCM,
 * or Fernet: src/crypto/field.ts); where the target allows plaintext, a value that does not claim to
 * be ciphertext is encrypted as it is. Pure CPU work on plain data, so it runs the same in the main
 * thread or in a worker (crypto-worker.ts).
 *
 * Values travel flat (row-major, `columns` per row) and the plan answers with one flat array of
 * new values aligned with them: few objects to copy between threads and to collect afterwards.
 */
import { CiphertextError } from '../crypto/codec.js';
import { BlindIndexer, blindIndexVersion, type NormalizeStep } from '../crypto/blind-index.js';
import { ContextValueError } from '../crypto/context.js';
import { FieldCodec, type FieldSpec, type ValueSite } from '../crypto/field.js';

/** A batch as sent to a planner: the values of the target's columns, row by row. */
export interface BatchInput {
  /** values[row * columns + column] */
  values: unknown[];
  columns: number;
  /** What the target's values may be and how the target version is written. */
  spec: FieldSpec;
  /** The encrypted columns' names, in the order of `values` (what `{column}` renders). */
  columnNames: string[];
  /** For targets bound to their rows: the context columns' values, row by row, `names.length` per row. */
  context?: { names: string[]; values: unknown[] };
  /** For targets with blind indexes: each index, and their current values, row by row, `specs.length` per row. */
  indexes?: { specs: IndexSpec[]; values: unknown[] };
  /**
   * A pass over many keyrings at once (reencrypt --all-tenants): each row's keyring, one per row,
   * naming an entry of the planner's rings. A row whose keyring is not among them is left alone.
   */
  rings?: string[];
}

/** One keyring's keys and the version its values must end up under. */
export interface Ring {
  keys: Map<string, Buffer>;
  target: string;
}

/** About how much room a value read takes (characters of text, bytes of binary, 8 else): for the caps in bytes on batches and on messages to the workers. */
export function valueSize(v: unknown): number {
  return typeof v === 'string' ? v.length : v instanceof Uint8Array ? v.byteLength : 8;
}

export interface BatchPlan {
  /** next[row * columns + column]: the new ciphertext (bytes for a binary column), or null where nothing is to be written. */
  next: Array<string | Uint8Array | null>;
  failures: Array<{ index: number; column: number; reason: string }>;
  planned: number;
  /** Of `planned`, plaintext values encrypted for the first time. */
  plaintext: number;
  /** Keys tried to find the version of Fernet tokens (one HMAC each). */
  keysTried: number;
  /** indexNext[row * indexes + index]: the new blind index value, or null where it stays. */
  indexNext: Array<string | null>;
  /** Blind index values to write. */
  indexesPlanned: number;
}

const codecs = new Map<string, FieldCodec>();
function codecFor(spec: FieldSpec): FieldCodec {
  const id = JSON.stringify(spec);
  let c = codecs.get(id);
  if (!c) {
    c = new FieldCodec(spec);
    codecs.set(id, c);
  }
  return c;
}

/** One blind index of the target, as the planner takes it (see BatchInput.indexes). */
export interface IndexSpec {
  /** The index column's name (for failures) and its source: an index into the encrypted columns. */
  column: string;
  source: number;
  normalize: NormalizeStep[];
}

const indexers = new Map<string, BlindIndexer>();
function indexerFor(table: string, source: string, normalize: NormalizeStep[]): BlindIndexer {
  const id = JSON.stringify([table, source, normalize]);
  let x = indexers.get(id);
  if (!x) {
    x = new BlindIndexer(table, source, normalize);
    indexers.set(id, x);
  }
  return x;
}

export function planBatch(input: BatchInput, keys: Map<string, Buffer>, target: string): BatchPlan {
  const targetKey = keys.get(target);
  if (!targetKey) throw new Error(`no key for the target version ${target}`);
  const ring = { keys, target, targetKey };
  return planRows(input, () => ring);
}

/** planBatch for a batch whose rows belong to different keyrings (BatchInput.rings). */
export function planBatchRings(input: BatchInput, rings: ReadonlyMap<string, Ring>): BatchPlan {
  const resolved = new Map<string, { keys: Map<string, Buffer>; target: string; targetKey: Buffer }>();
  for (const [id, r] of rings) {
    const targetKey = r.keys.get(r.target);
    if (!targetKey) throw new Error(`no key for the target version ${r.target} of keyring ${id}`);
    resolved.set(id, { ...r, targetKey });
  }
  const of = input.rings;
  if (!of) throw new Error('planBatchRings needs each row’s keyring (BatchInput.rings)');
  return planRows(input, (i) => resolved.get(of[i]!) ?? null);
}

function planRows(input: BatchInput, ringOf: (row: number) => { keys: Map<string, Buffer>; target: string; targetKey: Buffer } | null): BatchPlan {
  const field = codecFor(input.spec);
  const { values, columns } = input;
  const ctx = input.context;
  const idx = input.indexes;
  const width = idx?.specs.length ?? 0;
  /** The row's context, built only for a value that needs it. */
  const siteOf = (i: number, c: number): ValueSite | undefined => {
    if (!ctx) return undefined;
    const row: Record<string, unknown> = {};
    ctx.names.forEach((name, k) => {
      row[name] = ctx.values[i * ctx.names.length + k];
    });
    return { row, column: input.columnNames[c]! };
  };
  const rows = values.length / columns;
  const plan: BatchPlan = {
    next: new Array<string | Uint8Array | null>(values.length).fill(null),
    indexNext: new Array<string | null>(rows * width).fill(null),
    failures: [],
    planned: 0,
    plaintext: 0,
    keysTried: 0,
    indexesPlanned: 0,
  };
  const fail = (i: number, c: number, err: unknown): void => {
    if (err instanceof ContextValueError) plan.failures.push({ index: i, column: c, reason: `context-${err.problem}` });
    else if (err instanceof CiphertextError) plan.failures.push({ index: i, column: c, reason: err.reason });
    else throw err;
  };
  // Per row, what the blind indexes need of each column: its plaintext (when it was opened), or
  // that it failed.
  const opened = new Array<{ plaintext: string; timestamp?: number | undefined } | null | undefined>(columns);
  for (let i = 0; i < rows; i++) {
    const ring = ringOf(i);
    if (!ring) continue;
    const { keys, target, targetKey } = ring;
    opened.fill(undefined);
    for (let c = 0; c < columns; c++) {
      const at = i * columns + c;
      const value = values[at];
      if (value === null || value === undefined) continue;
      // A binary column's value (bytea, BLOB): keyctl's binary layout, or bytes being onboarded.
      // Blind indexes are not kept for binary sources.
      if (value instanceof Uint8Array) {
        opened[c] = null;
        if (field.isUnderBinary(value, target)) continue;
        try {
          const plain = field.isPlaintext(value) ? value : field.openBinary(value, keys).plaintext;
          plan.next[at] = field.sealBinary(plain, target, targetKey);
          plan.planned++;
          if (plain === value) plan.plaintext++;
        } catch (err) {
          fail(i, c, err);
        }
        continue;
      }
      if (typeof value !== 'string') {
        plan.failures.push({ index: i, column: c, reason: 'malformed' });
        opened[c] = null;
        continue;
      }
      if (field.isUnder(value, target, targetKey)) continue;
      try {
        if (field.isPlaintext(value)) {
          plan.next[at] = field.seal(value, target, targetKey, undefined, siteOf(i, c));
          plan.planned++;
          plan.plaintext++;
          opened[c] = { plaintext: value };
          continue;
        }
        const site = siteOf(i, c);
        const o = field.open(value, keys, site);
        plan.keysTried += o.tried;
        plan.next[at] = field.seal(o.plaintext, target, targetKey, o.timestamp, site);
        plan.planned++;
        opened[c] = { plaintext: o.plaintext, timestamp: o.timestamp };
      } catch (err) {
        fail(i, c, err);
        opened[c] = null;
      }
    }
    // Blind indexes: recomputed under the target wherever the index is not the target's already.
    // The source is written in the same compare-and-set (again under the target if it was there
    // already), and the index only where the source still holds what was read or what is written.
    for (let j = 0; j < width; j++) {
      const spec = idx!.specs[j]!;
      const c = spec.source;
      const at = i * columns + c;
      const value = values[at];
      if (value === null || value === undefined || opened[c] === null) continue;
      const current = idx!.values[i * width + j];
      let source = opened[c];
      if (source === undefined) {
        // The source is under the target already: an index under the target is taken as right
        // (verify checks it), any other is recomputed from the source's plaintext.
        if (blindIndexVersion(current) === target) continue;
        try {
          const site = siteOf(i, c);
          const o = field.open(value as string, keys, site);
          plan.keysTried += o.tried;
          source = { plaintext: o.plaintext, timestamp: o.timestamp };
          opened[c] = source;
        } catch (err) {
          fail(i, c, err);
          opened[c] = null;
          continue;
        }
      }
      const want = indexerFor(input.spec.table, input.columnNames[c]!, spec.normalize).value(source.plaintext, target, targetKey);
      if (want === current) continue;
      plan.indexNext[i * width + j] = want;
      plan.indexesPlanned++;
      if (plan.next[at] === null) {
        plan.next[at] = field.seal(source.plaintext, target, targetKey, source.timestamp, siteOf(i, c));
        plan.planned++;
      }
    }
  }
  return plan;
}
