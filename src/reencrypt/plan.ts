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
}

export interface BatchPlan {
  /** next[row * columns + column]: the new ciphertext, or null where nothing is to be written. */
  next: Array<string | null>;
  failures: Array<{ index: number; column: number; reason: string }>;
  planned: number;
  /** Of `planned`, plaintext values encrypted for the first time. */
  plaintext: number;
  /** Keys tried to find the version of Fernet tokens (one HMAC each). */
  keysTried: number;
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

export function planBatch(input: BatchInput, keys: Map<string, Buffer>, target: string): BatchPlan {
  const targetKey = keys.get(target);
  if (!targetKey) throw new Error(`no key for the target version ${target}`);
  const field = codecFor(input.spec);
  const { values, columns } = input;
  const ctx = input.context;
  /** The row's context, built only for a value that needs it. */
  const siteOf = (i: number, c: number): ValueSite | undefined => {
    if (!ctx) return undefined;
    const row: Record<string, unknown> = {};
    ctx.names.forEach((name, k) => {
      row[name] = ctx.values[i * ctx.names.length + k];
    });
    return { row, column: input.columnNames[c]! };
  };
  const plan: BatchPlan = { next: new Array<string | null>(values.length).fill(null), failures: [], planned: 0, plaintext: 0, keysTried: 0 };
  for (let i = 0, at = 0; at < values.length; i++) {
    for (let c = 0; c < columns; c++, at++) {
      const value = values[at];
      if (value === null || value === undefined) continue;
      if (typeof value !== 'string') {
        plan.failures.push({ index: i, column: c, reason: 'malformed' });
        continue;
      }
      if (field.isUnder(value, target, targetKey)) continue;
      try {
        if (field.kind(value) === 'plaintext') {
          plan.next[at] = field.seal(value, target, targetKey, undefined, siteOf(i, c));
          plan.planned++;
          plan.plaintext++;
          continue;
        }
        const site = siteOf(i, c);
        const opened = field.open(value, keys, site);
        plan.keysTried += opened.tried;
        plan.next[at] = field.seal(opened.plaintext, target, targetKey, opened.timestamp, site);
        plan.planned++;
      } catch (err) {
        if (err instanceof ContextValueError) plan.failures.push({ index: i, column: c, reason: `context-${err.problem}` });
        else if (err instanceof CiphertextError) plan.failures.push({ index: i, column: c, reason: err.reason });
        else throw err;
      }
    }
  }
  return plan;
}
