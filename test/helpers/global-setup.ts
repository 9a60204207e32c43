/**
 * Runs once before the suite: checks that PostgreSQL and MariaDB/MySQL answer. Locally a
 * missing server skips its dialect with a loud warning; under CI=true it fails the run,
 * because a green run that silently tested only SQLite would be a lie.
 */
import knexFactory from 'knex';
import type { TestProject } from 'vitest/node';
import { MYSQL_ADMIN_URL, PG_ADMIN_URL, type TestDialect } from './env.js';

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

export default async function setup(project: TestProject): Promise<void> {
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
  if (problems.length > 0) {
    const banner = `\n${'!'.repeat(78)}\n  DATABASE SERVERS UNREACHABLE — their integration and e2e tests ${process.env.CI ? 'FAIL THE RUN (CI=true)' : 'ARE SKIPPED'}:\n${problems.map((p) => `  - ${p}`).join('\n')}\n  Start them (see README, "Running the tests") or set KEYCTL_TEST_PG_URL / KEYCTL_TEST_MYSQL_URL.\n${'!'.repeat(78)}\n`;
    process.stderr.write(banner);
    if (process.env.CI === 'true' || process.env.CI === '1') {
      throw new Error(`CI=true and database servers are unreachable: ${problems.join('; ')}`);
    }
  }
  project.provide('available', available);
}
