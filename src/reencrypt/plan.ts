/**
 * Planning a batch: for every value not under the target version, decrypt it with its own
 * version's key and encrypt it under the target; where the target allows plaintext, a value that
 * does not claim to be ciphertext is encrypted as it is. Pure CPU work on plain data, so it runs the
 * same in the main thread or in a worker (crypto-worker.ts).
 *
 * Values travel flat (row-major, `columns` per row) and the plan answers with one flat array of
 * new values aligned with them: few objects to copy between threads and to collect afterwards.
 */
import { CiphertextError, claimsCiphertext, type Codec } from '../crypto/codec.js';

/** A batch as sent to a planner: the values of the target's columns, row by row. */
export interface BatchInput {
  /** values[row * columns + column] */
  values: unknown[];
  columns: number;
  /** The target says `plaintext: encrypt`: a value that does not claim to be ciphertext is encrypted as it is. */
  plaintext?: boolean;
}

export interface BatchPlan {
  /** next[row * columns + column]: the new ciphertext, or null where nothing is to be written. */
  next: Array<string | null>;
  failures: Array<{ index: number; column: number; reason: string }>;
  planned: number;
  /** Of `planned`, plaintext values encrypted for the first time. */
  plaintext: number;
}

export function planBatch(input: BatchInput, codec: Codec, keys: Map<string, Buffer>, target: string): BatchPlan {
  const targetKey = keys.get(target);
  if (!targetKey) throw new Error(`no key for the target version ${target}`);
  const keyFor = (v: string) => keys.get(v);
  const { values, columns } = input;
  const plan: BatchPlan = { next: new Array<string | null>(values.length).fill(null), failures: [], planned: 0, plaintext: 0 };
  const prefix = `${target}:`;
  for (let i = 0, at = 0; at < values.length; i++) {
    for (let c = 0; c < columns; c++, at++) {
      const value = values[at];
      if (value === null || value === undefined) continue;
      if (typeof value !== 'string') {
        plan.failures.push({ index: i, column: c, reason: 'malformed' });
        continue;
      }
      const claims = claimsCiphertext(value);
      // Already under the target; where plaintext is allowed, `v2: call back` is plaintext, not v2.
      if (value.startsWith(prefix) && (claims || !input.plaintext)) continue;
      if (input.plaintext && !claims) {
        plan.next[at] = codec.encrypt(value, target, targetKey);
        plan.planned++;
        plan.plaintext++;
        continue;
      }
      try {
        plan.next[at] = codec.encrypt(codec.decrypt(value, keyFor), target, targetKey);
        plan.planned++;
      } catch (err) {
        if (!(err instanceof CiphertextError)) throw err;
        plan.failures.push({ index: i, column: c, reason: err.reason });
      }
    }
  }
  return plan;
}
