#!/usr/bin/env node
// The re-encryption planner on one thread against the codec alone: what keyctl's crypto workers
// spend per row beyond the decrypt + encrypt the crypto ceiling of bench/reencrypt.mjs measures.
// Two columns of values of --size characters of plaintext, under v1, planned to v2 in messages of
// 250 rows (as the workers get them); five timed rounds each, medians reported.
// Usage: npm run bench:planner -- [--size N] [--rows N]
import { AesGcmV1Codec } from '../dist/crypto/codec.js';
import { generateKey } from '../dist/crypto/keys.js';
import { InlinePlanner } from '../dist/reencrypt/planner.js';

const args = process.argv.slice(2);
/**
 * The value after --NAME on the command line, else `def`.
 * @param {string} name
 * @param {number} def
 */
function option(name, def) {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} takes a whole number of at least 1, not ${args[i + 1]}`);
  return n;
}
const size = option('size', 200);
// About 40 MB of values per round by default.
const rows = option('rows', Math.max(200, Math.min(100_000, Math.floor(20_000_000 / size))));

const codec = new AesGcmV1Codec();
const keys = new Map([
  ['v1', generateKey()],
  ['v2', generateKey()],
]);
const v1 = /** @type {Buffer} */ (keys.get('v1'));
const v2 = /** @type {Buffer} */ (keys.get('v2'));
/** @type {string[]} */
const values = [];
for (let i = 0; i < rows * 2; i++) values.push(codec.encrypt(`${i} ${'x'.repeat(size)}`.slice(0, size), 'v1', v1));
const spec = { fernetVersions: [], fernetPrefix: '', plaintext: false, context: null, unboundVersions: [], table: 'bench' };
const planner = new InlinePlanner(keys, 'v2');
const CHUNK = 250;

/** @param {() => Promise<void> | void} round */
async function median(round) {
  await round();
  const rates = [];
  for (let k = 0; k < 5; k++) {
    const t0 = performance.now();
    await round();
    rates.push(rows / ((performance.now() - t0) / 1000));
  }
  rates.sort((a, b) => a - b);
  return /** @type {number} */ (rates[2]);
}

let sink = 0;
const ceiling = await median(() => {
  for (const v of values)
    sink += codec.encrypt(
      codec.decrypt(v, (ver) => keys.get(ver)),
      'v2',
      v2,
    ).length;
});
const planned = await median(async () => {
  for (let r = 0; r < rows; r += CHUNK) {
    const plan = await planner.plan({ values: values.slice(r * 2, (r + CHUNK) * 2), columns: 2, spec, columnNames: ['a', 'b'] });
    sink += plan.planned;
  }
});
if (sink === 0) throw new Error('unreachable');
const fmt = (/** @type {number} */ n) => Math.round(n).toLocaleString('en-US');
console.log(`size=${size} rows=${rows} codec ${fmt(ceiling)} rows/s, planner ${fmt(planned)} rows/s, planner/codec ${(planned / ceiling).toFixed(2)}`);
