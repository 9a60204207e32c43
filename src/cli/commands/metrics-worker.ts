/**
 * The collections of `keyctl metrics --listen`, in a worker thread: a count of a huge table (a
 * synchronous scan with SQLite) then never stops the listener's thread from answering scrapes from
 * its cache. The worker keeps one core context open; each `collect` message gets the exposition
 * text or the error (kind, exit code, message and hint, so the listener exits as the command would).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ErrorKind } from '../../base/errors.js';
import type { ExitCodeName } from '../../base/exit-codes.js';
import { collectAll, formatExposition } from '../../core/metrics.js';
import { type ContextRuntime, openCoreContext } from '../runtime.js';

export interface WorkerInput {
  flags: ContextRuntime['flags'];
  env: NodeJS.ProcessEnv;
  cwd: string;
  counts: boolean;
  all: boolean;
}

export type WorkerReply =
  | { type: 'log'; level: 'info' | 'warn'; message: string }
  | { type: 'metrics'; id: number; text: string }
  | { type: 'error'; id: number; error: { kind?: ErrorKind; exitCode?: ExitCodeName; message: string; hint?: string } };

export type WorkerRequest = { type: 'collect'; id: number } | { type: 'close' };

const port = parentPort;
if (!port) throw new Error('metrics-worker runs as a worker thread');
const input = workerData as WorkerInput;
const post = (m: WorkerReply) => port.postMessage(m);
const rt: ContextRuntime = {
  flags: input.flags,
  env: input.env,
  cwd: input.cwd,
  now: () => new Date(),
  output: {
    info: (message) => post({ type: 'log', level: 'info', message }),
    warn: (message) => post({ type: 'log', level: 'warn', message }),
  },
};

let ctx: Awaited<ReturnType<typeof openCoreContext>> | null = null;
port.on('message', async (req: WorkerRequest) => {
  if (req.type === 'close') {
    await ctx?.close().catch(() => undefined);
    port.close();
    return;
  }
  try {
    ctx ??= await openCoreContext(rt);
    post({ type: 'metrics', id: req.id, text: formatExposition(await collectAll(ctx, { counts: input.counts, allTenants: input.all })) });
  } catch (err) {
    const e = err as { kind?: ErrorKind; exitCode?: ExitCodeName; hint?: string; message?: string };
    post({
      type: 'error',
      id: req.id,
      error: {
        message: e.message ?? String(err),
        ...(typeof e.kind === 'string' ? { kind: e.kind } : {}),
        ...(typeof e.exitCode === 'string' ? { exitCode: e.exitCode } : {}),
        ...(typeof e.hint === 'string' ? { hint: e.hint } : {}),
      },
    });
  }
});
