#!/usr/bin/env node
// Per-tenant keyrings at scale (docs/tenants.md, docs/performance.md), two measurements:
//   pass    `keyctl reencrypt --all-tenants` (one keyset pass, each row under its own tenant's new
//           key) on --rows rows spread over --tenants tenants, against `keyctl reencrypt` of a
//           single keyring on the same number of rows of the same demo table; rows/s and the ratio.
//   scale   --scale N tenants (and --scale-rows rows): wall time of `tenant list`,
//           `tenant list --no-counts` and `status --all-tenants`.
// Every keyctl command runs as a child process, as a program (the real command path; bench/lib.mjs). The demo data is the
// same in both projects (`keyctl init --demo`, three encrypted columns per row).
// Usage: npm run bench:tenants -- [--db sqlite|pg|mysql] [--rows 200000] [--tenants 1000] [--scale 10000] [--scale-rows 100000] [--skip-pass]
import { benchProject, runKeyctl as keyctl } from './lib.mjs';

const args = process.argv.slice(2);
/** @param {string} name @param {string} [def] */
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const dbKind = opt('db', 'sqlite') ?? 'sqlite';
const rows = Number(opt('rows', '200000'));
const tenants = Number(opt('tenants', '1000'));
const scale = Number(opt('scale', '0'));
const scaleRows = Number(opt('scale-rows', '100000'));

/** @param {number} n */
const fmt = (n) => Math.round(n).toLocaleString('en-US');

async function pass() {
  console.log(`# ${dbKind}: ${fmt(rows)} rows, one keyring vs ${fmt(tenants)} tenants`);
  const single = await benchProject(dbKind, 'keyctl-bench-tenants-');
  let singleRate = 0;
  try {
    const setup = keyctl(single.dir, 'init', '--demo', '--rows', String(rows), '--database', single.url);
    keyctl(single.dir, 'generate');
    keyctl(single.dir, 'dual-key');
    const secs = keyctl(single.dir, 'reencrypt');
    console.log(`one keyring:   setup ${setup.toFixed(1)} s; reencrypt ${secs.toFixed(2)} s = ${fmt(rows / secs)} rows/s`);
    singleRate = rows / secs;
  } finally {
    await single.drop();
  }
  const many = await benchProject(dbKind, 'keyctl-bench-tenants-');
  try {
    const setup = keyctl(many.dir, 'init', '--demo', '--tenants', String(tenants), '--rows', String(rows), '--database', many.url);
    const gen = keyctl(many.dir, 'generate', '--all-tenants');
    const dual = keyctl(many.dir, 'dual-key', '--all-tenants');
    const secs = keyctl(many.dir, 'reencrypt', '--all-tenants');
    const rate = rows / secs;
    console.log(
      `${fmt(tenants)} tenants: setup ${setup.toFixed(1)} s, generate --all-tenants ${gen.toFixed(1)} s, dual-key --all-tenants ${dual.toFixed(1)} s; reencrypt --all-tenants ${secs.toFixed(2)} s = ${fmt(rate)} rows/s`,
    );
    console.log(`ratio: the all-tenants pass takes ${(singleRate / rate).toFixed(2)}× the single keyring's time (goal: at most 1.5×)`);
  } finally {
    await many.drop();
  }
}

async function scaleRun() {
  console.log(`# ${dbKind}: ${fmt(scale)} tenants, ${fmt(scaleRows)} rows`);
  const p = await benchProject(dbKind, 'keyctl-bench-tenants-');
  try {
    const setup = keyctl(p.dir, 'init', '--demo', '--tenants', String(scale), '--rows', String(scaleRows), '--database', p.url);
    console.log(`init --demo --tenants ${scale}: ${setup.toFixed(1)} s (${((setup * 1000) / scale).toFixed(1)} ms per tenant)`);
    for (const cmd of [
      ['tenant', 'list'],
      ['tenant', 'list', '--no-counts'],
      ['status', '--all-tenants'],
      ['status', '--all-tenants', '--check', '--json'],
    ]) {
      const best = Math.min(...[0, 1, 2].map(() => keyctl(p.dir, ...cmd)));
      console.log(`keyctl ${cmd.join(' ')}: ${best.toFixed(2)} s (best of 3)`);
    }
    // The tenant in the middle, named as init --demo names them (t001, …: at least three digits).
    const middle = `t${String(Math.ceil(scale / 2)).padStart(Math.max(3, String(scale).length), '0')}`;
    const one = Math.min(...[0, 1, 2].map(() => keyctl(p.dir, 'status', '--tenant', middle)));
    console.log(`keyctl status --tenant (one of ${fmt(scale)}): ${one.toFixed(2)} s (best of 3)`);
  } finally {
    await p.drop();
  }
}

if (!args.includes('--skip-pass')) await pass();
if (scale > 0) await scaleRun();
