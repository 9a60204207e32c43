#!/usr/bin/env node
// PostgreSQL: what the server spends taking a batch's arrays as array literals (text) or in the
// binary array format keyctl sends (src/db/dialects/pg.ts, pgBinaryArray). Runs
// `SELECT count(*) FROM unnest(CAST($1 AS bigint[]), CAST($2 AS text[]), …)` over a key array and
// four value arrays of --rows ciphertext-like values (two of ~70 and two of ~300 characters),
// --runs times per format, alternating, and prints the wall time and this process's CPU per batch
// (wall minus client CPU is about the server's share when it runs on this machine).
// Usage: npm run build && node bench/pg-arrays.mjs [--rows 2800] [--runs 30] [--rounds 2]
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pgArrayLiteral, pgBinaryArray } from '../dist/db/dialects/pg.js';

const { values: opts } = parseArgs({
  options: { rows: { type: 'string', default: '2800' }, runs: { type: 'string', default: '30' }, rounds: { type: 'string', default: '2' } },
});
const n = Number(opts.rows);
const runs = Number(opts.runs);
const client = new pg.Client(process.env.KEYCTL_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
await client.connect();
const ids = Array.from({ length: n }, (_, i) => String(1_000_000 + i));
/** @param {number} bytes */
const column = (bytes) => Array.from({ length: n }, () => `v2:${randomBytes(bytes).toString('base64')}`);
const columns = [column(50), column(50), column(220), column(220)];
const sql =
  'SELECT count(*) AS n FROM unnest(CAST($1 AS bigint[]), CAST($2 AS text[]), CAST($3 AS text[]), CAST($4 AS text[]), CAST($5 AS text[])) AS v(pk, a, b, c, d)';
/** @type {Record<string, () => unknown[]>} */
const formats = {
  literals: () => [pgArrayLiteral(n, (i) => ids[i]), ...columns.map((c) => pgArrayLiteral(n, (i) => c[i]))],
  binary: () => [pgArrayLiteral(n, (i) => ids[i]), ...columns.map((c) => pgBinaryArray(25, n, (i) => c[i]))],
};
for (let round = 0; round < Number(opts.rounds); round++) {
  for (const [name, params] of Object.entries(formats)) {
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    for (let k = 0; k < runs; k++) {
      const r = await client.query(sql, params());
      if (Number(r.rows[0].n) !== n) throw new Error(`${name}: ${r.rows[0].n} rows, not ${n}`);
    }
    const cpu = process.cpuUsage(cpu0);
    console.log(
      `${name.padEnd(8)} ${((performance.now() - t0) / runs).toFixed(1)} ms per batch of ${n} rows, client CPU ${((cpu.user + cpu.system) / 1000 / runs).toFixed(1)} ms`,
    );
  }
}
await client.end();
