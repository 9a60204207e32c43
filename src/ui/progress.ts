/**
 * Progress for long commands, on stderr: a spinner line in a terminal, a plain line every few
 * seconds otherwise (tmux logs, `| tee`, cron mail). The terminal (stream and width) comes from
 * the Output, which main builds from the streams it was given.
 */
import type { Output } from './output.js';

export interface ProgressLine {
  update(text: string): void;
  /** Print a line that stays (the spinner continues below it). */
  log(text: string): void;
  /** A new state (e.g. a throttle starting): the live line shows it at once; without a terminal, a line printed now. */
  news(text: string): void;
  stop(): void;
}

export async function startProgress(output: Output, first: string, intervalMs = 5000): Promise<ProgressLine> {
  // A terminal that reports no width (e.g. a pty without a window size) cannot host a one-line
  // spinner: ora would keep clearing lines it thinks the text wrapped onto. Use plain lines there.
  const terminal = output.terminal;
  const reported = terminal?.columns() ?? 0;
  if (output.interactive && terminal && reported > 0) {
    const { default: ora } = await import('ora');
    // ora counts the text's lines against its stream's width (80 when the stream does not say),
    // with two columns on each side for the spinner: a text it counts as two lines makes every
    // redraw climb one line up the screen, wiping what was printed above it.
    const columns = Math.min(reported, (terminal.stream as { columns?: number }).columns ?? 80) - 2;
    // Keep the text on one line so the spinner redraws in place.
    const fit = (t: string) => (t.length > columns - 3 ? `${t.slice(0, Math.max(0, columns - 4))}…` : t);
    const spinner = ora({ text: fit(first), stream: terminal.stream, discardStdin: false }).start();
    return {
      update: (t) => {
        spinner.text = fit(t);
      },
      log: (t) => {
        spinner.clear();
        output.info(t);
        spinner.render();
      },
      // The live line shows it at once; a copy above it would only go stale (a terminal's
      // scrollback is not a log: without one, news is printed as a line of its own).
      news: (t) => {
        spinner.text = fit(t);
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
    news: (t) => {
      output.info(t);
      last = Date.now();
      pending = null;
    },
    stop: () => {
      if (pending) output.info(pending);
      pending = null;
    },
  };
}
