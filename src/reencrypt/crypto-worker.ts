/**
 * Worker thread for re-encryption crypto: receives batches, answers with plans (plan.ts). Keys
 * arrive once in workerData; they stay in this process's memory and are never logged.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { planBatch, type BatchInput } from './plan.js';

interface Init {
  keys: Array<[string, Uint8Array]>;
  target: string;
}

const init = workerData as Init;
const keys = new Map(init.keys.map(([v, k]) => [v, Buffer.from(k)]));

parentPort!.on('message', (msg: { id: number; batch: BatchInput }) => {
  try {
    parentPort!.postMessage({ id: msg.id, plan: planBatch(msg.batch, keys, init.target) });
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
  }
});
