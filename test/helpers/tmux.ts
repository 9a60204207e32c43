/**
 * A real pseudo-terminal for interactive tests: a detached tmux session on a private socket,
 * driven with send-keys and read with capture-pane, as an operator's terminal would be.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { KEYCTL_BIN } from './cli.js';

export class Tmux {
  private readonly socket = `keyctl-test-${randomBytes(4).toString('hex')}`;
  private readonly session = 't';

  /** Start `keyctl ARGS` in a 120×50 terminal; the pane prints EXIT=<status> when it ends. */
  constructor(cwd: string, args: string[], env: Record<string, string>) {
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const vars = Object.entries(env).map(([k, v]) => `${k}=${quote(v)}`);
    // A person's terminal: no CI variable (set by CI runners; the spinner library turns itself off under it).
    const line = `env -u CI ${vars.join(' ')} ${quote(process.execPath)} ${quote(KEYCTL_BIN)} ${args.map(quote).join(' ')}; echo EXIT=$?; sleep 120`;
    this.tmux('-f', '/dev/null', 'new-session', '-d', '-s', this.session, '-x', '120', '-y', '50', '-c', cwd, line);
  }

  private tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.socket, ...args], { encoding: 'utf8' });
  }

  /** The whole scrollback, wrapped lines joined. */
  screen(): string {
    return this.tmux('capture-pane', '-p', '-J', '-S', '-2000', '-t', this.session);
  }

  /** Wait until the screen (after `from` characters of it) matches; returns the screen. */
  async waitFor(pattern: RegExp | string, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const screen = this.screen();
      if (typeof pattern === 'string' ? screen.includes(pattern) : pattern.test(screen)) return screen;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${String(pattern)}; screen:\n${screen}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Wait for inquirer to ask `text` (an open prompt starts with "?"; an answered one with "✔"). */
  async prompt(text: string, timeoutMs = 30_000): Promise<void> {
    await this.waitFor(`? ${text}`, timeoutMs);
  }

  keys(...keys: string[]): void {
    this.tmux('send-keys', '-t', this.session, ...keys);
  }

  type(text: string): void {
    this.tmux('send-keys', '-t', this.session, '-l', text);
    this.tmux('send-keys', '-t', this.session, 'Enter');
  }

  /** The exit status keyctl ended with. */
  async exit(timeoutMs = 60_000): Promise<number> {
    const screen = await this.waitFor(/EXIT=\d+/, timeoutMs);
    return Number(/EXIT=(\d+)/.exec(screen)![1]);
  }

  kill(): void {
    try {
      this.tmux('kill-server');
    } catch {
      // already gone
    }
  }
}

/** Answers to a runbook step's "what now?" menu (Run, Skip, Abort). */
export const RUN = ['Enter'];
export const SKIP = ['Down', 'Enter'];
export const ABORT = ['Down', 'Down', 'Enter'];

/** Wait for step `step`'s menu, choose with `keys`, and wait until inquirer took the answer. */
export async function answer(t: Tmux, step: string, keys: string[]): Promise<void> {
  await t.prompt(`${step}: what now?`);
  t.keys(...keys);
  await t.waitFor(`✔ ${step}: what now?`);
}
