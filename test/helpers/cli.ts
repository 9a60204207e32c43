/**
 * Runs keyctl for tests: `keyctl` starts the built bin/keyctl.js as a child process with node, the
 * way cron with node named by path would (signals, terminals, the launcher's JavaScript; the shell
 * line it runs first as a program has its own test in test/e2e/cli.test.ts); `keyctlInProcess`
 * calls main() from src/ with captured streams, for everything else (help, errors, exit codes, JSON
 * shapes), in a fraction of the time. Both record what keyctl printed and wrote for the suite's
 * secret grep (secret-capture.ts).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import knexFactory from 'knex';
import { fileURLToPath } from 'node:url';
import { main, type Signal } from '../../src/cli/main.js';
import { recordRun } from './secret-capture.js';

export { declareTestSecret } from './secret-capture.js';

/**
 * Without a terminal and without TERM (CI runners often have none) keyctl stamps every human line
 * with the time, as under cron. Tests read the lines as an operator sees them at a terminal unless
 * they set KEYCTL_LOG_TIMESTAMPS themselves (the cron tests do).
 */
const UNSTAMPED: NodeJS.ProcessEnv = process.env.KEYCTL_LOG_TIMESTAMPS === undefined ? { KEYCTL_LOG_TIMESTAMPS: '0' } : {};

export const KEYCTL_BIN = fileURLToPath(new URL('../../bin/keyctl.js', import.meta.url));

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function keyctl(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; input?: string }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...UNSTAMPED, ...opts.env };
    delete env.FORCE_COLOR;
    const startedMs = Date.now();
    const child = spawn(process.execPath, [KEYCTL_BIN, ...args], { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      recordRun({ how: 'child', args, cwd: opts.cwd, stdout, stderr, startedMs });
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

export interface InProcessOptions {
  cwd: string;
  /** Added to the test process's environment (as the child process gets it). */
  env?: NodeJS.ProcessEnv;
  /** What stdin holds. */
  input?: string;
  /** Let the command believe stdin is a terminal (it may then ask; `input` holds the answers). */
  stdinIsTTY?: boolean;
}

/** A keyctl running in this process: send it signals, read its stderr so far, await its result. */
export interface InProcessRun {
  signal(signal: Signal): void;
  readonly stdout: string;
  readonly stderr: string;
  /** The status it asked to exit with at once (a second Ctrl-C), if it did. */
  readonly exitedNow: number | undefined;
  readonly done: Promise<RunResult>;
}

function capture(): Writable & { text: string; isTTY: false } {
  const stream = Object.assign(
    new Writable({
      decodeStrings: false,
      write(chunk: string | Buffer, _encoding, callback) {
        stream.text += String(chunk);
        callback();
      },
    }),
    { text: '', isTTY: false as const },
  );
  return stream;
}

/** Start `keyctl ARGS` in this process, with its own stdout, stderr, stdin, signals and exit. */
export function startKeyctlInProcess(args: string[], opts: InProcessOptions): InProcessRun {
  const env: NodeJS.ProcessEnv = { ...process.env, ...UNSTAMPED, ...opts.env };
  delete env.FORCE_COLOR;
  const stdout = capture();
  const stderr = capture();
  const handlers = new Map<Signal, Set<(signal: Signal) => void>>();
  let exitedNow: number | undefined;
  const startedMs = Date.now();
  const done = main({
    argv: [process.execPath, KEYCTL_BIN, ...args],
    env,
    cwd: opts.cwd,
    stdout,
    stderr,
    stdin: Readable.from([opts.input ?? '']),
    stdinIsTTY: opts.stdinIsTTY ?? false,
    onSignal: (signal, handler) => {
      const set = handlers.get(signal) ?? new Set();
      handlers.set(signal, set.add(handler));
      return () => void set.delete(handler);
    },
    exitNow: (status) => {
      exitedNow ??= status;
    },
  }).then((status) => {
    recordRun({ how: 'in-process', args, cwd: opts.cwd, stdout: stdout.text, stderr: stderr.text, startedMs });
    return { code: exitedNow ?? status, stdout: stdout.text, stderr: stderr.text };
  });
  return {
    signal: (signal) => {
      for (const handler of handlers.get(signal) ?? []) handler(signal);
    },
    get stdout() {
      return stdout.text;
    },
    get stderr() {
      return stderr.text;
    },
    get exitedNow() {
      return exitedNow;
    },
    done,
  };
}

/** `keyctl ARGS` in this process; the same result as `keyctl` (the child process) gives. */
export function keyctlInProcess(args: string[], opts: InProcessOptions): Promise<RunResult> {
  return startKeyctlInProcess(args, opts).done;
}

/** Parse the single JSON object a --json command prints. */
export function json<T = Record<string, unknown>>(r: RunResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`stdout is not one JSON object (exit ${r.code}):\n${r.stdout}\n--- stderr:\n${r.stderr}`);
  }
}

/** Run `fn` against the project's SQLite file (keyctl.db in `dir`), as a DBA with the sqlite3 shell would. */
export async function withProjectSqlite<T>(dir: string, fn: (k: ReturnType<typeof knexFactory>) => Promise<T>): Promise<T> {
  const knex = knexFactory({ client: 'better-sqlite3', connection: { filename: path.join(dir, 'keyctl.db') }, useNullAsDefault: true });
  try {
    return await fn(knex);
  } finally {
    await knex.destroy();
  }
}
