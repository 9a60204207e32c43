#!/usr/bin/env node
// Start-up time of the built CLI: median and worst of N runs of `keyctl --version` and
// `keyctl --help` (commands that must not load Knex, drivers or crypto).
// Usage: node bench/startup.mjs [runs]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/keyctl.js', import.meta.url));
const runs = Number(process.argv[2] ?? 20);
for (const args of [['--version'], ['--help']]) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 0) throw new Error(`keyctl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  }
  times.sort((a, b) => a - b);
  console.log(`keyctl ${args.join(' ').padEnd(10)} runs=${runs} median=${times[Math.floor(runs / 2)].toFixed(0)} ms  max=${times[runs - 1].toFixed(0)} ms`);
}
