/**
 * Where batch crypto runs. `ThreadPlanner` hands batches to worker threads, so the main thread
 * reads and writes the database while a worker encrypts (on SQLite, whose driver is synchronous,
 * this is the only way to overlap the two). `InlinePlanner` runs in the main thread.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { planBatch, planBatchRings, type BatchInput, type BatchPlan, type Ring } from './plan.js';

export interface Planner {
  plan(batch: BatchInput): Promise<BatchPlan>;
  close(): Promise<void>;
}

export class InlinePlanner implements Planner {
  constructor(
    private readonly keys: Map<string, Buffer>,
    private readonly target: string,
    private readonly rings?: ReadonlyMap<string, Ring>,
  ) {}
  async plan(batch: BatchInput): Promise<BatchPlan> {
    return this.rings ? planBatchRings(batch, this.rings) : planBatch(batch, this.keys, this.target);
  }
  async close(): Promise<void> {}
}

/** The compiled worker; when running from TypeScript sources (tests), the built one in dist/. */
function workerFile(): string | null {
  const here = fileURLToPath(import.meta.url);
  const candidates = here.endsWith('.ts')
    ? [path.resolve(path.dirname(here), '../../dist/reencrypt/crypto-worker.js')]
    : [path.join(path.dirname(here), 'crypto-worker.js')];
  return candidates.find((f) => existsSync(f)) ?? null;
}

export class ThreadPlanner implements Planner {
  private readonly workers: Worker[];
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (p: BatchPlan) => void; reject: (e: Error) => void }>();

  private constructor(file: string, count: number, keys: Map<string, Buffer>, target: string, rings?: ReadonlyMap<string, Ring>) {
    const workerData = {
      keys: [...keys].map(([v, k]) => [v, new Uint8Array(k)]),
      target,
      ...(rings ? { rings: [...rings].map(([id, r]) => [id, [...r.keys].map(([v, k]) => [v, new Uint8Array(k)]), r.target]) } : {}),
    };
    this.workers = Array.from({ length: count }, () => {
      // A 16 MiB young generation: with two workers, 100 MiB less peak memory than 64 MiB for about
      // 2% fewer rows/s (docs/performance.md).
      const w = new Worker(file, { workerData, resourceLimits: { maxYoungGenerationSizeMb: 16 } });
      w.on('message', (m: { id: number; plan?: BatchPlan; error?: string }) => {
        const p = this.waiting.get(m.id);
        if (!p) return;
        this.waiting.delete(m.id);
        if (m.plan) p.resolve(m.plan);
        else p.reject(new Error(`crypto worker: ${m.error}`));
      });
      w.on('error', (err) => {
        for (const p of this.waiting.values()) p.reject(err);
        this.waiting.clear();
      });
      w.unref();
      return w;
    });
  }

  /** Worker threads when the compiled worker is available and `count` > 0, else inline. */
  static create(count: number, keys: Map<string, Buffer>, target: string, rings?: ReadonlyMap<string, Ring>): Planner {
    const file = workerFile();
    if (count < 1 || !file) return new InlinePlanner(keys, target, rings);
    return new ThreadPlanner(file, count, keys, target, rings);
  }

  /** Split the batch across all workers and merge their plans, so every worker is busy on every batch. */
  async plan(batch: BatchInput): Promise<BatchPlan> {
    const n = this.workers.length;
    const rows = batch.values.length / batch.columns;
    const per = Math.ceil(rows / n);
    const parts = await Promise.all(
      this.workers.map((w, i) =>
        i * per < rows
          ? this.send(w, {
              ...batch,
              values: batch.values.slice(i * per * batch.columns, (i + 1) * per * batch.columns),
              ...(batch.rings ? { rings: batch.rings.slice(i * per, (i + 1) * per) } : {}),
              ...(batch.indexes
                ? {
                    indexes: {
                      specs: batch.indexes.specs,
                      values: batch.indexes.values.slice(i * per * batch.indexes.specs.length, (i + 1) * per * batch.indexes.specs.length),
                    },
                  }
                : {}),
              ...(batch.context
                ? {
                    context: {
                      names: batch.context.names,
                      values: batch.context.values.slice(i * per * batch.context.names.length, (i + 1) * per * batch.context.names.length),
                    },
                  }
                : {}),
            })
          : null,
      ),
    );
    if (parts.length === 1 && parts[0]) return parts[0];
    const merged: BatchPlan = { next: [], indexNext: [], failures: [], planned: 0, plaintext: 0, keysTried: 0, indexesPlanned: 0 };
    parts.forEach((p, i) => {
      if (!p) return;
      const offset = i * per;
      for (const v of p.next) merged.next.push(v);
      for (const v of p.indexNext) merged.indexNext.push(v);
      merged.indexesPlanned += p.indexesPlanned;
      for (const f of p.failures) merged.failures.push({ ...f, index: f.index + offset });
      merged.planned += p.planned;
      merged.plaintext += p.plaintext;
      merged.keysTried += p.keysTried;
    });
    return merged;
  }

  private send(worker: Worker, batch: BatchInput): Promise<BatchPlan> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, batch });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
