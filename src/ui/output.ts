/**
 * Output rules, in one place:
 * - The result goes to stdout: human text, or with --json exactly one JSON object.
 * - Progress, notes and warnings go to stderr, so `--json | jq` and `| tee` stay clean.
 * - Errors are `keyctl: error: …` followed by `keyctl: hint: …` lines saying what to try;
 *   with --json the error is also the JSON object on stdout.
 * - No colour when the stream is not a TTY, with --no-color, or when NO_COLOR is set.
 * - Nothing here prints key material; callers pass only fingerprints and counts.
 */
import { Chalk, type ChalkInstance } from 'chalk';
import { ExitCode } from '../base/exit-codes.js';
import { KeyctlError, ConfigError } from '../base/errors.js';
import type { Logger } from '../core/context.js';
import { redactText } from '../db/redact.js';

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
}

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
  }

  info(message: string): void {
    this.stderr.write(`${message}\n`);
  }

  warn(message: string): void {
    this.stderr.write(`${this.err.yellow('keyctl: warning:')} ${message}\n`);
  }

  /** Print the command's result: `human()` text, or `data` as one JSON object with --json. */
  result(data: object, human: () => string): void {
    if (this.json) this.stdout.write(`${JSON.stringify({ ok: true, ...data }, null, 2)}\n`);
    else {
      const text = human();
      if (text) this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
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
      if (err.hint) for (const h of err.hint.split('\n')) lines.push(`${this.err.cyan('keyctl: hint:')} ${h}`);
      this.stderr.write(`${lines.join('\n')}\n`);
      if (this.json) {
        this.stdout.write(
          `${JSON.stringify({ ok: false, error: { kind: err.kind, exitCode: err.exitStatus, message: err.message, problems: err instanceof ConfigError ? err.problems : undefined, hint: err.hint } }, null, 2)}\n`,
        );
      }
      return err.exitStatus;
    }
    // An unexpected error may quote anything, a connection string included.
    const message = redactText(err instanceof Error ? err.message : String(err));
    this.stderr.write(
      `${this.err.red('keyctl: error:')} unexpected internal error: ${message}\n` +
        `${this.err.cyan('keyctl: hint:')} this is a bug in keyctl; run again with KEYCTL_DEBUG=1 for a stack trace and report it\n`,
    );
    if (this.debug && err instanceof Error && err.stack) this.stderr.write(`${redactText(err.stack)}\n`);
    if (this.json) this.stdout.write(`${JSON.stringify({ ok: false, error: { kind: 'internal', exitCode: ExitCode.INTERNAL, message } })}\n`);
    return ExitCode.INTERNAL;
  }
}
