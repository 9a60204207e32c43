/**
 * Output rules, in one place:
 * - The result goes to stdout: human text, or with --json exactly one JSON object.
 * - Progress, notes and warnings go to stderr, so `--json | jq` and `| tee` stay clean.
 * - Errors are `keyctl: error: …` followed by `keyctl: hint: …` lines saying what to try;
 *   with --json the error is also the JSON object on stdout.
 * - No colour when the stream is not a TTY, with --no-color, or when NO_COLOR is set.
 * - Under cron (neither stdout nor stderr a terminal, and no TERM), with --log-timestamps, or with
 *   KEYCTL_LOG_TIMESTAMPS=1, every human line — on stderr and the result on stdout — starts with
 *   the UTC time (`2026-12-03 14:48:04Z `), for cron mail and log files. KEYCTL_LOG_TIMESTAMPS=0
 *   turns that off. The --json object and documents printed as they are (a completion script,
 *   `--format json|markdown`) never get one.
 * - Nothing here prints key material; callers pass only fingerprints and counts.
 */
import { Chalk, type ChalkInstance } from 'chalk';
import { ExitCode } from '../base/exit-codes.js';
import { KeyctlError, ConfigError } from '../base/errors.js';
import type { Logger } from '../core/context.js';
import { redactText } from '../db/redact.js';
import { formatTime } from './format.js';

export interface Stream {
  write(chunk: string): boolean;
  isTTY?: boolean;
}

/** A stream as the process has it (process.stdout, process.stderr): a terminal says so and reports its width. */
export type TextStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

/** stderr when it is a terminal: where a live progress line (a spinner) may redraw itself. */
export interface Terminal {
  stream: NodeJS.WritableStream;
  /** Its width now, in columns; 0 when it reports none. */
  columns(): number;
}

export interface OutputOptions {
  json: boolean;
  /** false when --no-color was given */
  color: boolean;
  /** The environment keyctl runs in (NO_COLOR, TERM, KEYCTL_DEBUG). */
  env: NodeJS.ProcessEnv;
  stdout: Stream;
  stderr: Stream;
  /** stderr as a terminal, when it is one. */
  terminal?: Terminal;
  /** --log-timestamps: start each stderr line with the UTC time (also KEYCTL_LOG_TIMESTAMPS=1 in `env`). */
  timestamps?: boolean;
  /** The clock for timestamps (tests). */
  now?: () => Date;
}

/** Under cron (no terminal, no TERM), a variable that is not set was most likely never given to the job. */
const CRON_HINT =
  'under cron the environment is almost empty: set the variable in the crontab (NAME=value lines above the job) or in a file the job sources, e.g. `. /etc/keyctl.env && keyctl backup`';

/** Under cron, a job that finds no keyctl.yaml most likely forgot to change into its directory. */
const CRON_CONFIG_HINT =
  'under cron a job starts in the home directory: `cd /etc/keyctl && keyctl …` in the crontab line, or --config /etc/keyctl/keyctl.yaml (or KEYCTL_CONFIG=… above the job)';

export class Output implements Logger {
  readonly json: boolean;
  /** Colours for stdout / stderr (level 0 when not wanted). */
  readonly out: ChalkInstance;
  readonly err: ChalkInstance;
  readonly interactive: boolean;
  /** stderr as a terminal, when it is one (for a live progress line). */
  readonly terminal: Terminal | undefined;
  private readonly stdout: Stream;
  private readonly stderr: Stream;
  private readonly debug: boolean;

  constructor(opts: OutputOptions) {
    this.json = opts.json;
    this.stdout = opts.stdout;
    this.stderr = opts.stderr;
    const noColor = !opts.color || (opts.env.NO_COLOR !== undefined && opts.env.NO_COLOR !== '') || opts.env.TERM === 'dumb';
    this.out = new Chalk({ level: !noColor && opts.stdout.isTTY ? 1 : 0 });
    this.err = new Chalk({ level: !noColor && opts.stderr.isTTY ? 1 : 0 });
    this.interactive = Boolean(opts.stderr.isTTY) && !opts.json;
    this.terminal = opts.terminal;
    this.debug = Boolean(opts.env.KEYCTL_DEBUG);
    this.cron = !opts.stderr.isTTY && !opts.env.TERM;
    const env = opts.env.KEYCTL_LOG_TIMESTAMPS;
    const unattended = this.cron && !opts.stdout.isTTY;
    this.timestamps = Boolean(opts.timestamps) || (env !== undefined && env !== '' ? env !== '0' : unattended);
    this.now = opts.now ?? (() => new Date());
  }

  private readonly timestamps: boolean;
  private readonly now: () => Date;
  /** No terminal and no TERM: probably cron (or systemd), whose environment is nearly empty. */
  private readonly cron: boolean;

  /** Whole lines with the time in front of each when timestamps are on. */
  private stamped(text: string): string {
    return this.timestamps ? text.replace(/^(?=.)/gm, `${formatTime(this.now())} `) : text;
  }

  /** Write whole lines to stderr (stamped when timestamps are on). */
  private log(text: string): void {
    this.stderr.write(this.stamped(text));
  }

  info(message: string): void {
    this.log(`${message}\n`);
  }

  warn(message: string): void {
    this.log(`${this.err.yellow('keyctl: warning:')} ${message}\n`);
  }

  /** Print the command's result: `human()` text, or `data` as one JSON object with --json. */
  result(data: object, human: () => string): void {
    if (this.json) this.stdout.write(`${JSON.stringify({ ok: true, ...data }, null, 2)}\n`);
    else {
      const text = human();
      if (text) this.stdout.write(this.stamped(text.endsWith('\n') ? text : `${text}\n`));
    }
  }

  /** Print `text` on stdout as it is (a completion script, names for a shell), whatever the mode. */
  text(text: string): void {
    if (text) this.stdout.write(text);
  }

  /** Print a JSON document on stdout whatever the mode (e.g. `--format json`). */
  data(data: object): void {
    this.stdout.write(`${JSON.stringify({ ok: true, ...data }, null, 2)}\n`);
  }

  /** Report a failure; returns the exit status to use. */
  error(err: unknown): number {
    if (err instanceof KeyctlError) {
      const lines = [`${this.err.red('keyctl: error:')} ${err.message}`];
      if (err instanceof ConfigError) for (const p of err.problems) lines.push(`  ${p}`);
      const problems = err instanceof ConfigError ? err.problems : [];
      // Under cron, what cron itself most likely got wrong (an empty environment, the home directory).
      const cronHints = this.cron
        ? [
            ...([err.message, ...problems].some((t) => /\bis not set\b/.test(t)) ? [CRON_HINT] : []),
            ...(/^no keyctl configuration found in /.test(err.message) ? [CRON_CONFIG_HINT] : []),
          ]
        : [];
      const hint = [err.hint, ...cronHints].filter(Boolean).join('\n') || undefined;
      if (hint) for (const h of hint.split('\n')) lines.push(`${this.err.cyan('keyctl: hint:')} ${h}`);
      this.log(`${lines.join('\n')}\n`);
      if (this.json) {
        this.stdout.write(
          `${JSON.stringify({ ok: false, error: { kind: err.kind, exitCode: err.exitStatus, message: err.message, problems: err instanceof ConfigError ? err.problems : undefined, hint } }, null, 2)}\n`,
        );
      }
      return err.exitStatus;
    }
    // An unexpected error may quote anything, a connection string included.
    const message = redactText(err instanceof Error ? err.message : String(err));
    this.log(
      `${this.err.red('keyctl: error:')} unexpected internal error: ${message}\n` +
        `${this.err.cyan('keyctl: hint:')} this is a bug in keyctl; run again with KEYCTL_DEBUG=1 for a stack trace and report it\n`,
    );
    if (this.debug && err instanceof Error && err.stack) this.log(`${redactText(err.stack)}\n`);
    if (this.json) this.stdout.write(`${JSON.stringify({ ok: false, error: { kind: 'internal', exitCode: ExitCode.INTERNAL, message } })}\n`);
    return ExitCode.INTERNAL;
  }
}
