/**
 * Runs once before the suite: checks that PostgreSQL and MariaDB/MySQL answer. Locally a
 * missing server skips its dialect with a loud warning; under CI=true it fails the run,
 * because a green run that silently tested only SQLite would be a lie.
 *
 * It also starts the suite-wide secret grep (secret-capture.ts): a capture directory for every
 * keyctl run of this test run, and, where PostgreSQL ignores passwords (trust authentication), a
 * distinctive one in its URL, so every test against it hands keyctl a password to keep quiet
 * about. The teardown fails the run when any output or written file holds a secret.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import knexFactory from 'knex';
import type { TestProject } from 'vitest/node';
import { MYSQL_ADMIN_URL, PG_ADMIN_URL, type TestDialect } from './env.js';
import { CAPTURE_ENV, findLeaks } from './secret-capture.js';

async function reachable(client: 'pg' | 'mysql2', url: string): Promise<string | null> {
  const u = new URL(url);
  const knex = knexFactory({
    client,
    connection:
      client === 'pg'
        ? { connectionString: url, connectionTimeoutMillis: 5000 }
        : {
            host: u.hostname,
            port: Number(u.port || 3306),
            user: decodeURIComponent(u.username),
            password: decodeURIComponent(u.password),
            database: u.pathname.slice(1),
            connectTimeout: 5000,
          },
    pool: { min: 0, max: 1 },
    acquireConnectionTimeout: 7000,
    log: { warn() {}, error() {}, debug() {}, deprecate() {} },
  });
  try {
    await knex.raw('select 1');
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await knex.destroy();
  }
}

/**
 * The PostgreSQL URL the workers use (env.ts reads KEYCTL_TEST_PG_URL when they start): the
 * configured one, with a distinctive password added when the server accepts it (it ignores
 * passwords under trust authentication) and the URL has none.
 */
async function pgUrlWithPassword(): Promise<void> {
  if (process.env.KEYCTL_TEST_PG_URL) return;
  const u = new URL(PG_ADMIN_URL);
  if (u.password) return;
  u.password = `pgLeakCheck${randomBytes(6).toString('hex')}`;
  if ((await reachable('pg', u.toString())) === null) process.env.KEYCTL_TEST_PG_URL = u.toString();
}

let captureOwner = false;

function startCapture(): void {
  if (process.env[CAPTURE_ENV]) return; // the other project's setup already made it
  process.env[CAPTURE_ENV] = mkdtempSync(path.join(os.tmpdir(), 'keyctl-capture-'));
  captureOwner = true;
}

/** The secret grep over every capture of the run; fails the run (exit status 1) listing each leak. */
export function checkCaptures(): void {
  const dir = process.env[CAPTURE_ENV];
  if (!dir || !captureOwner) return;
  const { runs, secrets, leaks } = findLeaks(dir);
  if (leaks.length > 0) {
    const lines = leaks.slice(0, 50).map((l) => `  - ${l.secret} (${l.form}) in ${l.where}`);
    // Vitest reports a teardown error without failing the run: fail it here.
    process.exitCode = 1;
    throw new Error(
      `secret grep: ${leaks.length} secret(s) found in keyctl's output or files (${runs} runs, ${secrets} secrets checked; captures kept in ${dir}):\n${lines.join('\n')}`,
    );
  }
  process.stderr.write(`secret grep: no database password or key material in the output of ${runs} keyctl runs (${secrets} secrets checked)\n`);
  rmSync(dir, { recursive: true, force: true });
}

export default async function setup(project: TestProject): Promise<() => void> {
  startCapture();
  const available: Record<TestDialect, boolean> = { sqlite: true, pg: true, mysql: true };
  const problems: string[] = [];
  const checks: Array<[TestDialect, 'pg' | 'mysql2', string]> = [
    ['pg', 'pg', PG_ADMIN_URL],
    ['mysql', 'mysql2', MYSQL_ADMIN_URL],
  ];
  for (const [dialect, client, url] of checks) {
    const err = await reachable(client, url);
    if (err) {
      available[dialect] = false;
      problems.push(`${dialect} at ${url}: ${err}`);
    }
  }
  if (available.pg) await pgUrlWithPassword();
  if (problems.length > 0) {
    const banner = `\n${'!'.repeat(78)}\n  DATABASE SERVERS UNREACHABLE — their integration and e2e tests ${process.env.CI ? 'FAIL THE RUN (CI=true)' : 'ARE SKIPPED'}:\n${problems.map((p) => `  - ${p}`).join('\n')}\n  Start them (see README, "Running the tests") or set KEYCTL_TEST_PG_URL / KEYCTL_TEST_MYSQL_URL.\n${'!'.repeat(78)}\n`;
    process.stderr.write(banner);
    if (process.env.CI === 'true' || process.env.CI === '1') {
      throw new Error(`CI=true and database servers are unreachable: ${problems.join('; ')}`);
    }
  }
  project.provide('available', available);
  return checkCaptures;
}
