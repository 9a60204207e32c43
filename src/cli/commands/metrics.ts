/**
 * `keyctl metrics`: the Prometheus text format on stdout, into a file for node_exporter's textfile
 * collector (`--out`, replaced atomically), or served on `/metrics` (`--listen`, from a cache so a
 * scrape storm cannot hammer the database). docs/monitoring.md.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { KeyctlError, UsageError } from '../../base/errors.js';
import { ExitCode } from '../../base/exit-codes.js';
import { collectAll, formatExposition } from '../../core/metrics.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { type CliRuntime, withCoreContext } from '../runtime.js';
import type { WorkerInput, WorkerReply, WorkerRequest } from './metrics-worker.js';
import type { MetricsOptions } from '../specs.js';

const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export async function run(cliRt: CliRuntime, flags: MetricsOptions): Promise<number> {
  const counts = flags.counts !== false;
  // --all-tenants: one exposition over every live tenant, from a context on the whole configuration.
  const all = cliRt.flags.tenancy?.all === true;
  const { tenancy: _, ...keyringFlags } = cliRt.flags;
  const rt = all ? { ...cliRt, flags: keyringFlags } : cliRt;
  const cacheSeconds = Number(flags.cacheSeconds ?? '30');
  if (!Number.isFinite(cacheSeconds) || cacheSeconds < 1 || cacheSeconds > 3600)
    throw new UsageError(`--cache-seconds ${flags.cacheSeconds}: give a number of seconds from 1 to 3600`, 'e.g. --cache-seconds 30');
  if (flags.listen !== undefined) {
    if (flags.out !== undefined)
      throw new UsageError('--listen and --out: give one of them', 'a file for the textfile collector: --out FILE; a scrape endpoint: --listen 127.0.0.1:9469');
    return listen(rt, flags.listen, { flags: rt.flags, env: rt.env, cwd: rt.cwd, counts, all }, cacheSeconds);
  }
  const file = flags.out !== undefined ? path.resolve(rt.cwd, flags.out) : null;
  if (file !== null && !file.endsWith('.prom'))
    throw new UsageError(
      `--out ${flags.out}: node_exporter's textfile collector reads only files ending in .prom`,
      'e.g. --out /var/lib/node_exporter/textfile/keyctl.prom',
    );
  const text = formatExposition(await withCoreContext(rt, (ctx) => collectAll(ctx, { counts, allTenants: all })));
  if (file !== null) {
    // Atomic (temp file and rename in the same directory): the collector never reads half a file.
    try {
      await writeFileAtomic(file, text, 0o644);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
        throw new UsageError(
          `--out ${flags.out}: cannot write into ${path.dirname(file)} (${code})`,
          "give a directory that exists and this user may write (node_exporter's --collector.textfile.directory)",
        );
      throw err;
    }
    rt.output.result({ out: file, bytes: Buffer.byteLength(text) }, () => '');
    return ExitCode.OK;
  }
  if (rt.output.json) rt.output.data({ metrics: text });
  else rt.output.text(text);
  return ExitCode.OK;
}

function parseAddress(spec: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:]+)):(\d{1,5})$/.exec(spec);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port < 0 || port > 65535)
    throw new UsageError(`--listen ${spec}: give HOST:PORT`, 'e.g. --listen 127.0.0.1:9469 (localhost only), or --listen 0.0.0.0:9469 behind a firewall');
  return { host: (m[1] ?? m[2])!, port };
}

/** The collections in a worker thread (metrics-worker.ts): one at a time, each a request and its reply. */
function collector(rt: CliRuntime, input: WorkerInput): { collect: () => Promise<string>; close: () => Promise<void> } {
  const worker = new Worker(new URL('./metrics-worker.js', import.meta.url), { workerData: input });
  const waiting = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();
  let next = 0;
  let dead: Error | null = null;
  worker.on('message', (m: WorkerReply) => {
    if (m.type === 'log') return m.level === 'warn' ? rt.output.warn(m.message) : rt.output.info(m.message);
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if (m.type === 'metrics') w?.resolve(m.text);
    else {
      const { kind, exitCode, message, hint } = m.error;
      w?.reject(kind && exitCode ? new KeyctlError(kind, exitCode, message, hint) : new Error(message));
    }
  });
  const fail = (err: Error) => {
    dead = err;
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  worker.on('error', fail);
  worker.on('exit', () => fail(dead ?? new Error('the metrics worker stopped')));
  return {
    collect: () =>
      new Promise<string>((resolve, reject) => {
        if (dead) return reject(dead);
        const id = next++;
        waiting.set(id, { resolve, reject });
        worker.postMessage({ type: 'collect', id } satisfies WorkerRequest);
      }),
    close: async () => {
      if (dead) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      worker.postMessage({ type: 'close' } satisfies WorkerRequest);
      // A collection still scanning a table is not waited for long.
      const timer = setTimeout(() => void worker.terminate(), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Serve GET /metrics until SIGINT/SIGTERM. Collections run in a worker thread, at most one at a
 * time, and at most one starts per cache lifetime: a scrape within the lifetime gets the cached
 * text; a scrape after it starts a collection in the background and still gets the cached text at
 * once (a collection of a huge table can take longer than Prometheus's scrape timeout;
 * keyctl_metrics_timestamp_seconds says how old the text is). A collection that fails drops the
 * cache: scrapes answer 503 with the reason until one works, and a new one is tried at most once
 * per cache lifetime.
 */
async function listen(rt: CliRuntime, spec: string, input: WorkerInput, cacheSeconds: number): Promise<number> {
  const { host, port } = parseAddress(spec);
  const worker = collector(rt, input);
  const ttl = cacheSeconds * 1000;
  let cached: { text: string; at: number } | null = null;
  let failed: { message: string; at: number } | null = null;
  let inFlight: Promise<string> | null = null;
  let lastError: string | null = null;
  const fresh = async (): Promise<string> => {
    const now = performance.now();
    if (failed && now - failed.at < ttl) throw new Error(failed.message);
    if (cached && now - cached.at < ttl) return cached.text;
    inFlight ??= worker
      .collect()
      .then(
        (text) => {
          cached = { text, at: performance.now() };
          failed = null;
          lastError = null;
          return text;
        },
        (err: unknown) => {
          cached = null;
          failed = { message: err instanceof Error ? err.message : String(err), at: performance.now() };
          throw err;
        },
      )
      .finally(() => {
        inFlight = null;
      });
    if (cached) {
      // Stale while the new collection runs: its failure shows on the next scrape.
      inFlight.catch(() => {});
      return cached.text;
    }
    return inFlight;
  };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('only GET\n');
      return;
    }
    if (url !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('keyctl serves /metrics\n');
      return;
    }
    fresh().then(
      (text) => {
        res.writeHead(200, { 'Content-Type': CONTENT_TYPE, 'Cache-Control': `max-age=${cacheSeconds}` }).end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        // The message names what failed (never a secret: keyctl's errors do not carry key material or passwords).
        const message = err instanceof Error ? err.message : String(err);
        if (message !== lastError) rt.output.warn(`metrics: collecting failed: ${message}`);
        lastError = message;
        res.writeHead(503, { 'Content-Type': 'text/plain' }).end(`keyctl could not collect the metrics: ${message}\n`);
      },
    );
  };
  // The first collection before listening: a configuration or database that does not work fails
  // the command now (with its exit code) instead of every scrape, and the first scrape is answered from the cache.
  try {
    await fresh();
  } catch (err) {
    await worker.close();
    throw err;
  }
  const server = createServer(handle);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
  } catch (err) {
    await worker.close();
    throw new UsageError(`--listen ${spec}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, 'pick a free port, or stop what listens there');
  }
  const bound = server.address();
  const where = bound && typeof bound === 'object' ? `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}` : spec;
  rt.output.info(`serving http://${where}/metrics (cached for ${cacheSeconds} s); Ctrl-C stops`);
  await new Promise<void>((resolve) => {
    const stops = [rt.onSignal('SIGINT', () => resolve()), rt.onSignal('SIGTERM', () => resolve())];
    server.once('close', () => {
      for (const s of stops) s();
    });
  });
  await new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await worker.close();
  return ExitCode.OK;
}
