/** Runs the built bin/keyctl.js as a child process, the way an operator or cron would. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import knexFactory from 'knex';
import { fileURLToPath } from 'node:url';

export const KEYCTL_BIN = fileURLToPath(new URL('../../bin/keyctl.js', import.meta.url));

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function keyctl(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; input?: string }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
    delete env.FORCE_COLOR;
    const child = spawn(process.execPath, [KEYCTL_BIN, ...args], { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
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
