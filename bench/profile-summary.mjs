#!/usr/bin/env node
// Self time per function from a V8 .cpuprofile (e.g. written by `npm run bench -- --profile DIR`).
// Usage: node bench/profile-summary.mjs FILE.cpuprofile [top]
import { readFileSync } from 'node:fs';

/** @typedef {{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }} ProfileNode */

const [file, top = '25'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/profile-summary.mjs FILE.cpuprofile [top]');
  process.exit(2);
}
/** @type {{ nodes: ProfileNode[], samples: number[], timeDeltas: number[] }} */
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
let total = 0;
p.samples.forEach((id, i) => {
  const dt = p.timeDeltas[i] ?? 0;
  total += dt;
  // Every sample names a node of the same profile.
  const f = /** @type {ProfileNode} */ (byId.get(id)).callFrame;
  const key = `${f.functionName || '(anonymous)'} ${(f.url || '').split('/').slice(-2).join('/')}:${f.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + dt);
});
console.log(`total ${(total / 1000).toFixed(0)} ms`);
for (const [k, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) console.log(`${(t / 1000).toFixed(0).padStart(7)} ms  ${k}`);
