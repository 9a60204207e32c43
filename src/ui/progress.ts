/**
 * Progress for long commands, on stderr: a spinner line in a terminal, a plain line every few
 * seconds otherwise (tmux logs, `| tee`, cron mail).
 */
import type { Output } from './output.js';

export interface ProgressLine {
  update(text: string): void;
  /** Print a line that stays (the spinner continues below it). */
  log(text: string): void;
  stop(): void;
}

export async function startProgress(output: Output, first: string, intervalMs = 5000): Promise<ProgressLine> {
  if (output.interactive) {
    const { default: ora } = await import('ora');
    const spinner = ora({ text: first, stream: process.stderr, discardStdin: false }).start();
    return {
      update: (t) => void (spinner.text = t),
      log: (t) => {
        spinner.clear();
        output.info(t);
        spinner.render();
      },
      stop: () => void spinner.stop(),
    };
  }
  let last = 0;
  let pending: string | null = null;
  output.info(first);
  return {
    update: (t) => {
      pending = t;
      const now = Date.now();
      if (now - last >= intervalMs) {
        output.info(t);
        last = now;
        pending = null;
      }
    },
    log: (t) => output.info(t),
    stop: () => {
      if (pending) output.info(pending);
      pending = null;
    },
  };
}
