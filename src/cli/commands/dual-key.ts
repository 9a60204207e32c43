/**
 * `keyctl dual-key`: parse flags → core step → render. With --wait, the propagation delay
 * (policy.minPropagationSeconds since generate published the key) is waited out with a countdown
 * instead of refused; Ctrl-C during the wait changes nothing and returns INTERRUPTED.
 */
import { ExitCode } from '../../base/exit-codes.js';
import { dualKey, dualKeyWaitMs } from '../../core/rotation/steps.js';
import { formatDuration } from '../../runbook/engine.js';
import { startProgress } from '../../ui/progress.js';
import { done } from './phase-output.js';
import { withCoreContext, type CliRuntime } from '../runtime.js';
import type { DualKeyOptions } from '../specs.js';

/** A 1-second tick that ends early when the signal aborts. */
function tick(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

export async function run(rt: CliRuntime, f: Partial<DualKeyOptions> = {}): Promise<number> {
  return withCoreContext(rt, async (ctx) => {
    if (f.wait) {
      const { ms, version } = await dualKeyWaitMs(ctx);
      if (ms > 0) {
        const stop = new AbortController();
        const off = [rt.onSignal('SIGINT', () => stop.abort()), rt.onSignal('SIGTERM', () => stop.abort())];
        const end = Date.now() + ms;
        const text = (left: number) =>
          `dual-key: waiting ${formatDuration(Math.ceil(left / 1000))} for ${version} to propagate (policy.minPropagationSeconds = ${ctx.config.policy.minPropagationSeconds}; Ctrl-C stops, nothing changes)`;
        const progress = await startProgress(rt.output, text(ms));
        try {
          for (let left = end - Date.now(); left > 0 && !stop.signal.aborted; left = end - Date.now()) {
            progress.update(text(left));
            await tick(Math.min(1000, left), stop.signal);
          }
        } finally {
          progress.stop();
          for (const o of off) o();
        }
        if (stop.signal.aborted) {
          rt.output.info(`keyctl: dual-key stopped while waiting; nothing changed. Run \`keyctl dual-key --wait\` again to go on.`);
          return ExitCode.INTERRUPTED;
        }
      }
    }
    const r = await dualKey(ctx);
    return done(rt, r, `${r.newVersion} is now primary; ${r.oldVersion} stays published for decryption`);
  });
}
