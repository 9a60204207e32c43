/**
 * Worker thread for re-encryption crypto: receives batches, answers with plans (plan.ts). Keys
 * arrive once in workerData; they stay in this process's memory and are never logged.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { planBatch, planBatchRings, type BatchInput, type Ring } from './plan.js';

interface Init {
  keys: Array<[string, Uint8Array]>;
  target: string;
  /** A pass over many keyrings: each one's keys and target. */
  rings?: Array<[string, Array<[string, Uint8Array]>, string]>;
}

const init = workerData as Init;
const keys = new Map(init.keys.map(([v, k]) => [v, Buffer.from(k)]));
const rings: Map<string, Ring> | null = init.rings
  ? new Map(init.rings.map(([id, ks, target]) => [id, { keys: new Map(ks.map(([v, k]) => [v, Buffer.from(k)])), target }]))
  : null;

parentPort!.on('message', (msg: { id: number; batch: BatchInput }) => {
  try {
    parentPort!.postMessage({ id: msg.id, plan: rings ? planBatchRings(msg.batch, rings) : planBatch(msg.batch, keys, init.target) });
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
  }
});
