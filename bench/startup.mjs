#!/usr/bin/env node
// Start-up time of the built CLI: median and worst of N runs of `keyctl --version` and
// `keyctl --help` (commands that must not load Knex, drivers or crypto), and of two commands that
// open the database: `keyctl status --json` and a `keyctl reencrypt --json` with nothing left to
// do, in a SQLite demo project of 100 rows (so the time is start-up, not work).
// Usage: node bench/startup.mjs [runs]
// keyctl runs as a program, as an operator runs it (the launcher's shell line, then node on itself).
// KEYCTL_BENCH_BIN: another build's bin/keyctl.js (an older commit's worktree), to compare two builds.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertStarted, programEnv } from './program.mjs';

const bin = process.env.KEYCTL_BENCH_BIN ? path.resolve(process.env.KEYCTL_BENCH_BIN) : fileURLToPath(new URL('../bin/keyctl.js', import.meta.url));
const runs = Number(process.argv[2] ?? 20);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`runs must be a whole number of at least 1, not ${process.argv[2]}`);

/**
 * keyctl with `args` in `cwd`; throws unless it exits 0.
 * @param {string[]} args
 * @param {string} cwd
 */
function keyctl(args, cwd) {
  const r = spawnSync(bin, args, { cwd, env: programEnv, encoding: 'utf8' });
  assertStarted(r, `keyctl ${args.join(' ')}`);
  if (r.status !== 0) throw new Error(`keyctl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'keyctl-startup-'));
try {
  keyctl(['init', '--demo', '--rows', '100'], dir);
  keyctl(['generate', '--json'], dir);
  keyctl(['dual-key', '--json'], dir);
  keyctl(['reencrypt', '--json'], dir);
  for (const args of [['--version'], ['--help'], ['status', '--json'], ['reencrypt', '--json']]) {
    const times = [];
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint();
      keyctl(args, dir);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    // runs >= 1, so both indexes are inside the array.
    const median = /** @type {number} */ (times[Math.floor(runs / 2)]);
    const max = /** @type {number} */ (times[runs - 1]);
    console.log(`keyctl ${args.join(' ').padEnd(16)} runs=${runs} median=${median.toFixed(0)} ms  max=${max.toFixed(0)} ms`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
