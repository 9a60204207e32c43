/**
 * Where batch crypto runs. `ThreadPlanner` hands batches to worker threads, so the main thread
 * reads and writes the database while a worker encrypts (on SQLite, whose driver is synchronous,
 * this is the only way to overlap the two). `InlinePlanner` runs in the main thread.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { planBatch, planBatchRings, valueSize, type BatchInput, type BatchPlan, type Ring } from './plan.js';

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

/** At most this many rows, and about this many bytes of values, per message to a worker (see ThreadPlanner.plan). */
const CHUNK_ROWS = 250;
const CHUNK_BYTES = 256 * 1024;

/** Where the messages for rows [from, end) end: after CHUNK_ROWS rows, or the row that reaches CHUNK_BYTES. */
function messageEnds(batch: BatchInput, from: number, end: number): number[] {
  const ends: number[] = [];
  let start = from;
  let bytes = 0;
  for (let r = from; r < end; r++) {
    for (let c = r * batch.columns; c < (r + 1) * batch.columns; c++) bytes += valueSize(batch.values[c]);
    if (r + 1 - start >= CHUNK_ROWS || bytes >= CHUNK_BYTES) {
      ends.push(r + 1);
      start = r + 1;
      bytes = 0;
    }
  }
  if (start < end) ends.push(end);
  return ends;
}

/** Rows [from, to) of a batch, with their keyrings, blind indexes and context. */
function sliceBatch(batch: BatchInput, from: number, to: number): BatchInput {
  const part = <T>(values: T[], width: number): T[] => values.slice(from * width, to * width);
  return {
    ...batch,
    values: part(batch.values, batch.columns),
    ...(batch.rings ? { rings: part(batch.rings, 1) } : {}),
    ...(batch.indexes ? { indexes: { specs: batch.indexes.specs, values: part(batch.indexes.values, batch.indexes.specs.length) } } : {}),
    ...(batch.context ? { context: { names: batch.context.names, values: part(batch.context.values, batch.context.names.length) } } : {}),
  };
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
      // A 4 MiB young generation, for messages of at most 250 rows and about 256 KB: 10–14 MiB
      // less peak memory than 8 MiB with 500-row messages, no change in speed measurable on the
      // project machine; 8 MiB had saved about 130 MiB against 64 MiB (docs/performance.md).
      const w = new Worker(file, { workerData, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
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

  /**
   * Split the batch across all workers and merge their plans, so every worker is busy on every
   * batch. Each worker's share goes as messages of at most CHUNK_ROWS rows and about CHUNK_BYTES
   * of values (a table of large values gets fewer rows per message): a worker holds one message's
   * values at a time, which keeps its young generation small and its scavenges cheap
   * (docs/performance.md, "Memory").
   */
  async plan(batch: BatchInput): Promise<BatchPlan> {
    const n = this.workers.length;
    const rows = batch.values.length / batch.columns;
    const per = Math.ceil(rows / n);
    const offsets: number[] = [];
    const sends: Array<Promise<BatchPlan>> = [];
    this.workers.forEach((w, i) => {
      const end = Math.min(rows, (i + 1) * per);
      let from = i * per;
      for (const to of messageEnds(batch, from, end)) {
        offsets.push(from);
        sends.push(this.send(w, sliceBatch(batch, from, to)));
        from = to;
      }
    });
    const parts = await Promise.all(sends);
    if (parts.length === 1) return parts[0]!;
    const merged: BatchPlan = { next: [], indexNext: [], failures: [], planned: 0, plaintext: 0, keysTried: 0, indexesPlanned: 0 };
    parts.forEach((p, i) => {
      const offset = offsets[i]!;
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
