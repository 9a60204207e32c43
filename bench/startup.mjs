#!/usr/bin/env node
// Start-up time of the built CLI: median and worst of N runs of `keyctl --version` and
// `keyctl --help` (commands that must not load Knex, drivers or crypto).
// Usage: node bench/startup.mjs [runs]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/keyctl.js', import.meta.url));
const runs = Number(process.argv[2] ?? 20);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`runs must be a whole number of at least 1, not ${process.argv[2]}`);
for (const args of [['--version'], ['--help']]) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 0) throw new Error(`keyctl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  }
  times.sort((a, b) => a - b);
  // runs >= 1, so both indexes are inside the array.
  const median = /** @type {number} */ (times[Math.floor(runs / 2)]);
  const max = /** @type {number} */ (times[runs - 1]);
  console.log(`keyctl ${args.join(' ').padEnd(10)} runs=${runs} median=${median.toFixed(0)} ms  max=${max.toFixed(0)} ms`);
}
