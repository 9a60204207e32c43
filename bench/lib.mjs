// Shared by the benchmarks that drive the keyctl binary against a fresh project.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import knexFactory from 'knex';
import { assertStarted, programEnv } from './program.mjs';

export const PG = process.env.KEYCTL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MY = process.env.KEYCTL_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
export const bin = fileURLToPath(new URL('../bin/keyctl.js', import.meta.url));

/**
 * A fresh project directory and, for pg/mysql, a fresh database; returns its directory, the
 * database URL to pass to `init --database`, and a cleanup.
 * @param {string} dbKind sqlite | pg | mysql
 * @param {string} prefix temporary directory name prefix
 */
export async function benchProject(dbKind, prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  if (dbKind === 'sqlite') return { dir, url: './bench.db', drop: async () => rmSync(dir, { recursive: true, force: true }) };
  const name = `keyctl_bench_${randomBytes(4).toString('hex')}`;
  const admin = knexFactory(dbKind === 'pg' ? { client: 'pg', connection: PG } : { client: 'mysql2', connection: MY });
  await admin.raw(dbKind === 'pg' ? `CREATE DATABASE "${name}"` : `CREATE DATABASE \`${name}\``);
  const u = new URL(dbKind === 'pg' ? PG : MY);
  u.pathname = `/${name}`;
  return {
    dir,
    url: u.toString(),
    drop: async () => {
      await admin.raw(dbKind === 'pg' ? `DROP DATABASE "${name}" WITH (FORCE)` : `DROP DATABASE \`${name}\``);
      await admin.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Run keyctl in `dir` as a program (bench/program.mjs); returns seconds; throws on a non-zero exit.
 * @param {string} dir
 * @param {...string} a
 */
export function runKeyctl(dir, ...a) {
  const t0 = performance.now();
  const r = spawnSync(bin, a, { cwd: dir, env: programEnv, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const secs = (performance.now() - t0) / 1000;
  assertStarted(r, `keyctl ${a.join(' ')}`);
  if (r.status !== 0) throw new Error(`keyctl ${a.join(' ')} exited ${r.status}:\n${r.stderr.slice(-2000)}`);
  return secs;
}
