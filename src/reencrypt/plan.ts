/**
 * Planning a batch: for every value not under the target version, decrypt it with its own
 * version's key and encrypt it under the target. Pure CPU work on plain data, so it runs the
 * same in the main thread or in a worker (crypto-worker.ts).
 */
import { CiphertextError, type Codec } from '../crypto/codec.js';

/** A batch as sent to a planner: per row, the values of the target's columns (values[row][column]). */
export interface BatchInput {
  values: unknown[][];
}

export interface BatchPlan {
  /** Per row that needs a write: its index in the batch and [column index, new value] pairs (the old value is the one sent). */
  rows: Array<{ index: number; changes: Array<[number, string]> }>;
  failures: Array<{ index: number; column: number; reason: string }>;
  planned: number;
}

export function planBatch(input: BatchInput, codec: Codec, keys: Map<string, Buffer>, target: string): BatchPlan {
  const targetKey = keys.get(target);
  if (!targetKey) throw new Error(`no key for the target version ${target}`);
  const keyFor = (v: string) => keys.get(v);
  const plan: BatchPlan = { rows: [], failures: [], planned: 0 };
  const prefix = `${target}:`;
  for (let i = 0; i < input.values.length; i++) {
    const row = input.values[i]!;
    let changes: Array<[number, string]> | undefined;
    for (let c = 0; c < row.length; c++) {
      const value = row[c];
      if (value === null || value === undefined) continue;
      if (typeof value !== 'string') {
        plan.failures.push({ index: i, column: c, reason: 'malformed' });
        continue;
      }
      if (value.startsWith(prefix)) continue;
      try {
        const next = codec.encrypt(codec.decrypt(value, keyFor), target, targetKey);
        (changes ??= []).push([c, next]);
      } catch (err) {
        if (!(err instanceof CiphertextError)) throw err;
        plan.failures.push({ index: i, column: c, reason: err.reason });
      }
    }
    if (changes) {
      plan.rows.push({ index: i, changes });
      plan.planned += changes.length;
    }
  }
  return plan;
}
